"""The discrete-event engine: SimPy is the calendar, numpy arrays hold the caseload of a batch of replications.

A batch runs R replications of one model in one set of arrays (``caseload.py``: clients of every
replication, with a replication index; cash, failures, caps, volume bands and investor state as
``[R, organisations]`` arrays). One SimPy calendar serves the whole batch, with one process per kind of
real event (the monthly cycle, the month end, each service-fee instalment, each settlement of a month's
accepted claims, each payment owed down the chain, cohort measurements, volume reconciliations); each
acts on every replication at once. Every replication sees its events in the order a calendar of its
own would give them, and draws the same random numbers, so its results do not depend on the batch it
ran in. Months 0..T-1 of client dynamics and a run-off to T + max lag for late settlements. Each
month's steps, in order (docs/model.md, "One month"):

  t+0.0  referrals -> monthly review (allocation) -> transitions -> claims
  t+0.5  settlements due this month (SimPy processes started by earlier claims)
  t+0.6  costs: delivery per client-month by service level, overhead
  t+0.9  month end: interest on overdraft, insolvency check, records
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import simpy

from . import rng
from .behaviour import make_policy
from .caseload import Caseload, PolicyError
from ..model.contract import Contract, Rule, compile_contract
from .ledger import KINDS, LENDER, STAFF_AND_SUPPLIERS, Ledger, LedgerRows, Rows, Vocabulary
from ..model.organisation import Allocation, Organisation, compile_allocation, compile_organisations
from ..model.pathway import FULL, MINIMAL, Pathway, compile_pathway
from ..model.finance import Financing, compile_financing
from ..model.money import pence_exact
from .investors import Investors
from ..scenario.schema import EXTRA_ITEMS, Scenario

SETTLE_PHASE = 0.5
COST_PHASE = 0.6
MONTH_END_PHASE = 0.9
DELIVERY_ITEMS = ("delivery_full", "delivery_minimal")
FFS_ITEMS = ("ffs_start", "ffs_month")
K = {k: i for i, k in enumerate(KINDS)}
CLAIM_COLUMNS = ["month", "item", "segment", "organisation", "claims", "rejected", "amount_claimed", "amount_rejected"]
SETTLEMENT_COLUMNS = ["month", "item", "segment", "organisation", "amount_due", "amount_paid", "amount_capped"]
# memory of one batch's arrays, whatever the number of replications: about 50 bytes a client, plus the
# monthly arrays and ledger rows of each replication (a million clients of a small contract)
MAX_BATCH_BYTES = 80 << 20


class InvariantError(RuntimeError):
    """A conservation check failed: a bug, never a user error."""


@dataclass(frozen=True)
class Model:
    """A scenario compiled for the engine."""

    scenario: Scenario
    pathway: Pathway
    contract: Contract
    organisations: tuple[Organisation, ...]  # the prime first
    allocation: Allocation
    vocab: Vocabulary
    finance: "Financing | None" = None

    @property
    def provider(self) -> Organisation:
        """The contract holder (the only organisation in a single-provider scenario)."""
        return self.organisations[0]

    @property
    def months(self) -> int:
        return self.scenario.months

    @property
    def horizon(self) -> int:
        """Months recorded: the contract plus the longest payment lag and pass-through lag (late settlements)."""
        return self.months + self.contract.max_lag + max(o.extra_lag for o in self.organisations)


def compile_model(sc: Scenario) -> Model:
    pw = compile_pathway(sc)
    contract = compile_contract(sc, pw)
    orgs = compile_organisations(sc)
    fin = sc.finance
    vocab = Vocabulary(
        parties=(contract.commissioner,) + tuple(o.name for o in orgs) + (STAFF_AND_SUPPLIERS, LENDER)
        + (tuple(fin.parties) if fin else ()),
        items=("service_fee",) + tuple(r.name for r in contract.rules) + DELIVERY_ITEMS + ("overhead", "interest") + FFS_ITEMS
        + tuple(c.name for c in contract.cohorts) + EXTRA_ITEMS,
        segments=pw.segments,
    )
    return Model(scenario=sc, pathway=pw, contract=contract, organisations=orgs,
                 allocation=compile_allocation(sc, orgs), vocab=vocab, finance=compile_financing(sc, [o.name for o in orgs]))


@dataclass
class Replication:
    """Raw arrays and rows from one replication; ``records`` turns them into tidy tables."""

    replication: int
    segment: np.ndarray
    ref_month: np.ndarray
    org: np.ndarray  # organisation serving each client at the end
    first_org: np.ndarray  # organisation each client was referred to
    state: np.ndarray
    first_month: np.ndarray
    months_full: np.ndarray
    months_minimal: np.ndarray
    months_no_service: np.ndarray
    end_month: np.ndarray
    ledger: LedgerRows
    cash: np.ndarray  # month-end cash [H, O]
    caseload: np.ndarray  # clients by organisation and state at month end [H, O, S]
    level_counts: np.ndarray  # client-months at full / minimal [H, O, 2]
    referred: np.ndarray  # clients referred per month [H, O]
    claims: np.ndarray | None = None  # [n, 8] int64, CLAIM_COLUMNS
    settlements: np.ndarray | None = None  # [n, 7] int64, SETTLEMENT_COLUMNS
    failures: list = field(default_factory=list)  # (organisation, month, clients affected, action)
    failure_months: np.ndarray | None = None  # [O], -1 when the organisation did not fail
    client_months: int = 0
    sustainment_payments: np.ndarray | None = None  # [clients, sustainment lines]: accepted claims at a price above zero
    latent_class: np.ndarray | None = None  # class of each client within its segment (scenarios with latent classes)

    @property
    def failure_month(self) -> int:
        """Month the prime (the contract holder) failed, or -1."""
        return int(self.failure_months[0])


@dataclass
class Batch:
    """Raw arrays from a batch of replications: clients of every replication (``offset[b]`` is where
    replication ``b``'s clients start, ``admitted[b]`` how many were admitted), tables' rows grouped by
    replication (``rep``: position in the batch), and ``[R, ...]`` arrays by month."""

    replications: np.ndarray  # replication numbers, by batch position
    offset: np.ndarray  # [R + 1]
    admitted: np.ndarray  # [R]
    clients: dict  # record arrays over all referred clients: segment, ref_month, org, first_org, state, ...
    ledger: dict  # ledger columns (rep + LEDGER_COLUMNS)
    cash: np.ndarray  # [R, H, O]
    caseload: np.ndarray  # [R, H, O, S]
    level_counts: np.ndarray  # [R, H, O, 2]
    referred: np.ndarray  # [R, H, O]
    claims: dict  # rep + CLAIM_COLUMNS
    settlements: dict  # rep + SETTLEMENT_COLUMNS
    failures: list  # (batch position, organisation, month, clients affected, action)
    failure_months: np.ndarray  # [R, O]
    client_months: np.ndarray  # [R]
    vocab: Vocabulary

    def __len__(self) -> int:
        return len(self.replications)

    def admitted_mask(self) -> np.ndarray:
        """Over all referred clients: admitted (on the caseload) or not."""
        return admitted_mask(self.offset, self.admitted)

    def replication(self, b: int) -> Replication:
        """Replication at batch position ``b``."""
        lo = int(self.offset[b])
        hi = lo + int(self.admitted[b])
        c = self.clients

        def rows(cols: dict, names: list[str]) -> np.ndarray:
            sel = cols["rep"] == b
            return np.stack([cols[n][sel] for n in names], axis=1)

        led = {k: v[self.ledger["rep"] == b] for k, v in self.ledger.items()}
        return Replication(
            replication=int(self.replications[b]),
            segment=c["segment"][lo:hi], ref_month=c["ref_month"][lo:hi], org=c["org"][lo:hi], first_org=c["first_org"][lo:hi],
            state=c["state"][lo:hi], first_month=c["first_month"][lo:hi], months_full=c["months_full"][lo:hi],
            months_minimal=c["months_minimal"][lo:hi], months_no_service=c["months_no_service"][lo:hi], end_month=c["end_month"][lo:hi],
            ledger=LedgerRows(self.vocab, led), cash=self.cash[b], caseload=self.caseload[b], level_counts=self.level_counts[b],
            referred=self.referred[b], claims=rows(self.claims, CLAIM_COLUMNS), settlements=rows(self.settlements, SETTLEMENT_COLUMNS),
            failures=[f[1:] for f in self.failures if f[0] == b], failure_months=self.failure_months[b].copy(),
            client_months=int(self.client_months[b]), sustainment_payments=c["sustainment_payments"][lo:hi],
            latent_class=c["latent_class"][lo:hi] if "latent_class" in c else None,
        )


def batch_of(r: Replication, vocab: Vocabulary) -> Batch:
    """One replication's results as a batch of one (so that one set of table builders serves both)."""
    n = len(r.segment)

    def rows(a: np.ndarray, names: list[str]) -> dict:
        a = np.asarray(a, dtype=np.int64).reshape(-1, len(names))
        return {"rep": np.zeros(len(a), dtype=np.int64), **{c: a[:, i] for i, c in enumerate(names)}}

    led = r.ledger.arrays()
    return Batch(
        replications=np.array([r.replication]), offset=np.array([0, n]), admitted=np.array([n]),
        clients={"segment": r.segment, "ref_month": r.ref_month, "org": r.org, "first_org": r.first_org, "state": r.state,
                 "first_month": r.first_month, "months_full": r.months_full, "months_minimal": r.months_minimal,
                 "months_no_service": r.months_no_service, "end_month": r.end_month,
                 "sustainment_payments": r.sustainment_payments if r.sustainment_payments is not None
                 else np.zeros((n, 0), dtype=np.int16),
                 **({"latent_class": r.latent_class} if r.latent_class is not None else {})},
        ledger={"rep": np.zeros(len(led["amount"]), dtype=np.int64), **led}, cash=r.cash[None], caseload=r.caseload[None],
        level_counts=r.level_counts[None], referred=r.referred[None], claims=rows(r.claims, CLAIM_COLUMNS),
        settlements=rows(r.settlements, SETTLEMENT_COLUMNS), failures=[(0,) + tuple(f) for f in r.failures],
        failure_months=r.failure_months[None], client_months=np.array([r.client_months]), vocab=vocab,
    )


def admitted_mask(offset: np.ndarray, admitted: np.ndarray) -> np.ndarray:
    """Over all referred clients of a batch (replication b's from ``offset[b]``): admitted or not."""
    n = offset[1:] - offset[:-1]
    if np.array_equal(n, admitted):  # every referral admitted (no prime failed)
        return np.ones(int(offset[-1]), dtype=bool)
    local = np.arange(int(offset[-1])) - np.repeat(offset[:-1], n)
    return local < np.repeat(admitted, n)


class _Run:
    """State and SimPy processes for a batch of replications of a contract and its supply chain."""

    def __init__(self, model: Model, seed: int, replication: int | None = None, replications=None):
        if replications is None:
            replications = [0 if replication is None else replication]
        reps = [int(r) for r in replications]
        self.m = model
        self.seed = seed
        self.reps = np.asarray(reps, dtype=np.int64)
        self.pw = model.pathway
        self.c = model.contract
        self.orgs = model.organisations
        self.policies = [make_policy(o.policy, model, o) for o in self.orgs]
        T, H, S = model.months, model.horizon, self.pw.n_states
        G, O = len(self.pw.segments), len(self.orgs)
        R = self.R = len(reps)
        self.sust_rules = self.c.sustainment_rules
        self.cl = Caseload(model, seed, reps, len(self.sust_rules))
        # accepted claims at a price above zero, per client, on each line of kind sustainment (the clients table)
        self.sust_lines = {r.index: j for j, r in enumerate(r for r in self.c.rules if r.kind == "sustainment")}
        self.sust_paid = np.zeros((self.cl.N, len(self.sust_lines)), dtype=np.int16)
        init = self.pw.initial
        self.first_states = sorted({r.state for r in self.c.rules if not r.is_sustainment and r.state != init})
        sust_states = np.zeros(S, dtype=bool)
        for r in self.sust_rules:
            sust_states |= r.in_states
        self.sust_any = sust_states if sust_states.any() else None
        self.rej_keys = self._rejection_keys(seed, T)
        v = model.vocab
        self.P_COMM = v.party(self.c.commissioner)
        self.P_ORG = [v.party(o.name) for o in self.orgs]
        self.P_STAFF, self.P_LENDER = v.party(STAFF_AND_SUPPLIERS), v.party(LENDER)
        self.I_FEE, self.I_FULL, self.I_MIN = v.item("service_fee"), v.item("delivery_full"), v.item("delivery_minimal")
        self.I_OVER, self.I_INT = v.item("overhead"), v.item("interest")
        self.I_FFS_START, self.I_FFS_MONTH = v.item("ffs_start"), v.item("ffs_month")
        self.rule_item = [v.item(r.name) for r in self.c.rules]
        self.ledger = Ledger(v, {self.P_ORG[o.index]: o.opening_cash for o in self.orgs}, R)
        self.shares = np.tile(model.allocation.shares, (R, 1, 1))  # [R, G, O]
        self.cash = np.zeros((R, H, O), dtype=np.int64)
        self.caseload = np.zeros((R, H, O, S), dtype=np.int64)
        self.level_counts = np.zeros((R, H, O, 2), dtype=np.int64)
        self.referred = np.zeros((R, H, O), dtype=np.int64)
        self.month_levels = np.zeros((R, O, G, 2), dtype=np.int64)  # this month's client-months
        self.paid_total = np.zeros(R, dtype=np.int64)
        self.failed = np.full((R, O), -1, dtype=np.int64)
        self.contract_over = np.zeros(R, dtype=bool)  # the prime failed
        self.claims = Rows(CLAIM_COLUMNS)
        self.settlements = Rows(SETTLEMENT_COLUMNS)
        self.failures: list[tuple] = []  # (batch position, organisation, month, clients affected, action)
        self.scheduled_transfers = np.zeros(R, dtype=np.int64)  # pence the prime has committed to pass on or pay as fees
        self.person_paid = np.zeros(self.cl.N, dtype=np.int64) if self.c.per_person_cap is not None else None
        self.clawed = np.zeros(R, dtype=np.int64)  # pence the prime has repaid the commissioner (volume reconciliation)
        self.clawback_due = np.zeros(R, dtype=np.int64)  # pence the reconciliations took off what the commissioner owes
        self.withheld = np.zeros(R, dtype=np.int64)  # pence owed beyond the cap and not paid (net of clawbacks set against it)
        # lines that another line `requires`: when each client's claim on them was accepted (2 * month + phase), -1 if not
        required = sorted({r.requires for r in self.c.rules if r.requires >= 0})
        self.required_col = {ri: j for j, ri in enumerate(required)}
        self.accepted_at = np.full((self.cl.N, len(required)), -1, dtype=np.int32) if required else None
        self.I_RECON = v.item("volume_reconciliation")
        self.income_cum = np.zeros((R, O), dtype=np.int64)  # contract income received so far, per organisation
        self.target_state = self.c.primary_outcome if self.c.primary_outcome >= 0 else self.c.milestone
        self.perf = model.allocation.performance and O > 1
        self.n_first_org = np.zeros((R, O), dtype=np.int64)  # clients admitted, by first organisation
        self.hits = np.zeros((R, O), dtype=np.int64)  # of those, clients who have entered the target state
        self.fin = model.finance
        self.investors = Investors(self.fin, v, R, T, H) if self.fin is not None else None

    def _rejection_keys(self, seed: int, T: int) -> dict:
        """Keys of the rejection draws of every (line, phase) that can be claimed, for every replication and month."""
        init = self.pw.initial
        wanted = []
        for r in self.c.rules:
            if r.rejection <= 0:
                continue
            at_referral = (not r.is_sustainment and r.state == init) or (r.is_sustainment and r.pays_at_referral and r.in_states[init])
            if at_referral:
                wanted.append((r.index, 0))
            if r.is_sustainment or r.state != init:
                wanted.append((r.index, 1))
        if not wanted or not self.R:
            return {}
        R = self.R
        rows = []
        for index, phase in wanted:
            rk = self.c.rules[index].key
            rows.append(np.stack([np.repeat(self.reps, T), np.full(R * T, rng.REJECTIONS), np.tile(np.arange(T), R),
                                  np.full(R * T, rk), np.full(R * T, phase)], axis=1))
        keys = rng.keys(seed, np.concatenate(rows)).reshape(len(wanted), R, T)
        return {w: keys[i] for i, w in enumerate(wanted)}

    def alive(self, o: int) -> np.ndarray:
        return self.failed[:, o] < 0

    # -- SimPy processes -----------------------------------------------------------------------
    def run(self) -> Batch:
        env = simpy.Environment()
        self.env = env
        for t in np.flatnonzero(self.c.fee_due):
            env.process(self._fee_instalment(int(t)))
        env.process(self._monthly_cycle())
        env.process(self._month_end())
        for cr in self.c.cohorts:
            env.process(self._cohort_payments(cr))
        if self.c.volume_band is not None:
            for y in range(len(self.c.volume_band.expected)):
                env.process(self._reconcile_volumes(y))
        env.run(until=self.m.horizon)
        self.cl.finish()
        self._check_invariants()
        cl = self.cl
        return Batch(
            replications=self.reps, offset=cl.offset, admitted=cl.admitted.copy(),
            clients={"segment": cl.seg, "ref_month": cl.ref_month, "org": cl.org, "first_org": cl.first_org, "state": cl.state,
                     "first_month": cl.first_month, "months_full": cl.months_full, "months_minimal": cl.months_minimal,
                     "months_no_service": cl.months_no_service, "end_month": cl.end_month,
                     "sustainment_payments": self.sust_paid,
                     **({"latent_class": cl.cls} if cl.cls is not None else {})},
            ledger=self._ledger_arrays, cash=self.cash, caseload=self.caseload, level_counts=self.level_counts,
            referred=self.referred, claims=self._claim_arrays, settlements=self._settlement_arrays,
            failures=self.failures, failure_months=self.failed.copy(), client_months=cl.client_months.copy(), vocab=self.m.vocab,
        )

    def _monthly_cycle(self):
        for t in range(self.m.months):
            live = ~self.contract_over
            if live.any():
                self._due = {}
                self._refer(t, live)
                slow = self._review(t, live)
                self._transition(t, slow)
                for due, accepted in self._due.items():
                    self.env.process(self._settle(due, accepted))
            yield self.env.timeout(COST_PHASE)
            if (~self.contract_over).any():
                self._costs(t)
            yield self.env.timeout(1 - COST_PHASE)

    def _month_end(self):
        yield self.env.timeout(MONTH_END_PHASE)
        R, O, S = self.R, len(self.orgs), self.pw.n_states
        for t in range(self.m.horizon):
            if self.investors is not None:
                self.investors.month_end(self, t)
            for o in range(O):
                self._interest(t, o)
            for o in range(O):
                for b in np.flatnonzero(self.alive(o) & self._insolvent(o)):
                    self._fail(t, o, int(b))
            self.cash[:, t] = self.ledger.balance[:, self.P_ORG]
            self.caseload[:, t] = self.cl.counts_rogs().sum(axis=2)
            yield self.env.timeout(1)

    def _later(self, month: int, sub, kind: int, item: int, segment, reps: np.ndarray, amounts: np.ndarray):
        """The prime pays subcontractor(s) ``sub`` at ``month`` (its settlement phase, or now if that has passed);
        ``sub`` and ``segment`` are one value or one per row."""
        yield self.env.timeout(max(0.0, month + SETTLE_PHASE - self.env.now))
        if not isinstance(sub, np.ndarray) and not isinstance(segment, np.ndarray):
            self.ledger.post(reps, month, self.P_ORG[0], self.P_ORG[sub], kind, amounts, item, segment)
            self.income_cum[reps, sub] += amounts
        else:
            self.ledger.post_rows(reps, month, self.P_ORG[0], np.asarray(self.P_ORG)[sub], kind, amounts, item, segment)
            np.add.at(self.income_cum, (reps, sub), amounts)

    def _transfer(self, month: int, sub, kind: int, item: int, segment, reps: np.ndarray, amounts: np.ndarray):
        """The prime pays a subcontractor (pass-through or fee for service) at ``month``; with ``sub`` and
        ``segment`` given per row, several payments that fall due together, each replication's in row order."""
        pos = amounts > 0
        if not pos.any():
            return
        if not pos.all():
            reps, amounts = reps[pos], amounts[pos]
            sub = sub[pos] if isinstance(sub, np.ndarray) else sub
            segment = segment[pos] if isinstance(segment, np.ndarray) else segment
        np.add.at(self.scheduled_transfers, reps, amounts)
        self.env.process(self._later(month, sub, kind, item, segment, reps, amounts))

    def _settle(self, due: int, accepted: list[tuple[Rule, np.ndarray]]):
        """Commissioner settles a month's accepted claims that fall due in month ``due`` (one ``amounts[rep, org,
        segment]`` per payment line, in the order claimed) with the prime, who passes on the subs' share."""
        yield self.env.timeout(due + SETTLE_PHASE - self.env.now)
        for rule, amounts in accepted:
            self._settle_line(due, rule, amounts)

    def _settle_line(self, due: int, rule: Rule, amounts: np.ndarray):
        """Within a replication, cells are paid in (organisation, segment) order, each up to what the cap leaves."""
        R, O, G = amounts.shape
        a = amounts.reshape(R, O * G)
        reps = np.flatnonzero(a.any(axis=1))
        a = a[reps]
        kind, item = K[rule.kind], self.rule_item[rule.index]
        paid = self._pay_cells(due, kind, item, a, reps)
        if O == 1:
            return
        # what the prime owes each subcontractor: payments falling due in the same month go in one process
        by_month: dict[int, list] = {}
        for cell in range(G, O * G):  # cells of subcontractors' clients, in order
            o, g = divmod(cell, G)
            sub = self.orgs[o]
            rows = np.flatnonzero(a[:, cell])
            if len(rows):
                by_month.setdefault(due + sub.extra_lag, []).append((o, g, rows, _passed(sub, rule.kind, paid[rows, cell])))
        for month, parts in by_month.items():
            self._transfer(month, np.concatenate([np.full(len(p[2]), p[0]) for p in parts]), kind, item,
                           np.concatenate([np.full(len(p[2]), p[1]) for p in parts]),
                           reps[np.concatenate([p[2] for p in parts])], np.concatenate([p[3] for p in parts]))

    def _fee_instalment(self, t: int):
        due = t + self.c.fee_lag
        yield self.env.timeout(due + SETTLE_PHASE)
        # contract terminated: no fee for months after the prime failed
        reps = np.flatnonzero(self.alive(0) | (t <= self.failed[:, 0]))
        if not len(reps):
            return
        paid = self._pay(due, K["service_fee"], self.I_FEE, None, np.full(len(reps), int(self.c.fee_due[t])), 0, reps)
        for sub in self.orgs[1:]:
            ok = self.alive(sub.index)[reps] | (t <= self.failed[reps, sub.index])
            self._transfer(due + sub.extra_lag, sub.index, K["service_fee"], self.I_FEE, None, reps[ok],
                           _passed(sub, "service_fee", paid[ok]))

    # -- steps ----------------------------------------------------------------------------------
    def _pay(self, month: int, kind: int, item: int, segment: int | None, amount: np.ndarray, org: int, reps: np.ndarray) -> np.ndarray:
        """Commissioner pays the prime settled claims (one per replication in ``reps``), up to what is left under the cap."""
        amount = np.asarray(amount, dtype=np.int64)
        paid = amount
        if self.c.cap is not None:
            paid = np.maximum(0, np.minimum(amount, self.c.cap - self.paid_total[reps]))
        self.paid_total[reps] += paid
        self.withheld[reps] += amount - paid
        self.income_cum[reps, 0] += paid
        self.ledger.post(reps, month, self.P_COMM, self.P_ORG[0], kind, paid, item, segment)
        if self.investors is not None:
            self.investors.top_up(self.ledger, reps, month, kind, paid, self.P_COMM)
        seg_code = len(self.pw.segments) if segment is None else segment
        self.settlements.add(reps, month=month, item=item, segment=seg_code, organisation=org, amount_due=amount,
                             amount_paid=paid, amount_capped=amount - paid)
        return paid

    def _pay_cells(self, month: int, kind: int, item: int, amounts: np.ndarray, reps: np.ndarray) -> np.ndarray:
        """``_pay`` for the cells (organisation * G + segment) of ``amounts[i]``, replication ``reps[i]`` at a
        time, in cell order: paid so far after k cells is min(paid before + their amounts, cap), never less
        than before."""
        G = len(self.pw.segments)
        paid = amounts
        if self.c.cap is not None:
            before = self.paid_total[reps][:, None]
            after = np.maximum(before, np.minimum(before + np.cumsum(amounts, axis=1), self.c.cap))
            paid = np.diff(after, axis=1, prepend=before)
            self.withheld[reps] += (amounts - paid).sum(axis=1)
        total = paid.sum(axis=1)
        self.paid_total[reps] += total
        self.income_cum[reps, 0] += total
        rows, cells = np.nonzero(amounts)  # each replication's cells in order
        r = reps[rows]
        due, p = amounts[rows, cells], paid[rows, cells]
        self.ledger.post_rows(r, month, self.P_COMM, self.P_ORG[0], kind, p, item, cells % G)
        if self.investors is not None:
            self.investors.top_up(self.ledger, r, month, kind, p, self.P_COMM)
        self.settlements.add(r, month=month, item=item, segment=cells % G, organisation=cells // G, amount_due=due,
                             amount_paid=p, amount_capped=due - p)
        return paid

    def _current_shares(self) -> np.ndarray:
        """Allocation shares [R, G, O] with failed organisations' shares moved to where their clients go."""
        shares = self.shares.copy()
        for b in np.flatnonzero((self.failed[:, 1:] >= 0).any(axis=1)):
            for o in range(len(self.orgs) - 1, 0, -1):
                if self.failed[b, o] >= 0:
                    target = self.orgs[o].transfer_to if self.orgs[o].on_failure == "transfer" else 0
                    if self.failed[b, target] >= 0:
                        target = 0
                    shares[b, :, target] += shares[b, :, o]
                    shares[b, :, o] = 0.0
        return shares

    def _refer(self, t: int, live: np.ndarray):
        cl = self.cl
        O = len(self.orgs)
        has_new = live & (cl.month_start[:, t + 1] > cl.month_start[:, t])
        g, rb = cl.new_clients(t, live)
        org = None
        if O > 1 and len(g):
            if self.perf and t > 0 and t % self.m.allocation.review_every == 0:
                for b in np.flatnonzero(has_new):
                    self._shift_shares(int(b))
            cum = np.cumsum(self._current_shares(), axis=2)
            cum[:, :, -1] = 1.0
            u = rng.uniforms_from_keys(cl.alloc_keys[rb, t], rng.counters(cl.local(g, rb)))
            assigned = (cum[rb, cl.seg[g]] <= u[:, None]).sum(axis=1).astype(np.int16)
            self._guarantee(assigned, rb, has_new)
            org = assigned
        if len(g):
            self.referred[:, t] = np.bincount(rb * O + (org if org is not None else 0), minlength=self.R * O).reshape(self.R, O)
            if self.perf:
                self.n_first_org += self.referred[:, t]
        for sub in self.orgs[1:]:
            if sub.ffs_start:
                reps = np.flatnonzero(self.referred[:, t, sub.index])
                self._transfer(t + sub.extra_lag, sub.index, K["fee_for_service"], self.I_FFS_START, None, reps,
                               self.referred[reps, t, sub.index] * sub.ffs_start)
        cl.admit(t, g, rb, org)
        init = self.pw.initial
        if self.perf and self.target_state == init and len(g):
            self.hits += self.referred[:, t]
        if not len(g):
            return
        for rule in self.c.rules:
            if not rule.is_sustainment and rule.state == init:
                self._claim(t, rule, g, rb, phase=0)
        for k, rule in enumerate(self.sust_rules):
            if rule.pays_at_referral and rule.in_states[init]:  # first entry into a set that holds the start
                cl.sust_count[g, k] = 1
                self._claim(t, rule, g, rb, phase=0)

    def _guarantee(self, assigned: np.ndarray, rb: np.ndarray, has_new: np.ndarray):
        """Top up subcontractors with a guaranteed minimum from the prime's share of this month's referrals."""
        subs = [s for s in self.orgs[1:] if s.guaranteed]
        if not subs:
            return
        starts = np.searchsorted(rb, np.arange(self.R + 1))
        for b in np.flatnonzero(has_new):
            a = assigned[starts[b]:starts[b + 1]]  # a view: this replication's new clients
            for sub in subs:
                if self.failed[b, sub.index] >= 0:
                    continue
                short = sub.guaranteed - int((a == sub.index).sum())
                if short > 0:
                    from_prime = np.flatnonzero(a == 0)[::-1][:short]  # the prime's latest referrals
                    a[from_prime] = sub.index

    def _shift_shares(self, b: int):
        """Quarterly (or as set) performance review of replication ``b``: shares move towards organisations
        with better outcome rates among the clients referred before this month."""
        n = self.n_first_org[b].astype(float)  # clients admitted before this month, by first organisation
        if self.target_state < 0 or n.sum() == 0:
            return
        hits = self.hits[b].astype(float)
        alive = self.failed[b] < 0
        rate = np.where((n > 0) & alive, hits / np.maximum(n, 1), 0.0)
        if rate.sum() == 0:
            return
        target = rate / rate.sum()
        step = self.m.allocation.step
        self.shares[b] = (1 - step) * self.shares[b] + step * target[None, :]

    def _review(self, t: int, live: np.ndarray) -> np.ndarray:
        """Service level of each active client this month, from each organisation's allocation policy."""
        cash = self.ledger.balance[:, self.P_ORG]
        try:
            slow, levels = self.cl.review(t, self.orgs, self.policies, cash, live)
        except PolicyError as e:
            raise InvariantError(str(e)) from None
        self.month_levels = levels
        self.level_counts[:, t] = levels.sum(axis=2)
        return slow

    def _transition(self, t: int, slow: np.ndarray):
        cl = self.cl
        moves = cl.transition(t, slow, self.sust_any, self.first_states, self.target_state if self.perf else -1,
                              self.hits if self.perf else None)
        entries = {s: (g, rb) for s, g, rb in moves.first_entries}
        for rule in self.c.rules:
            if rule.is_sustainment or rule.state == self.pw.initial:
                continue
            g, rb = entries[rule.state]
            if rule.requires >= 0 and len(g):
                ok = self._eligible(rule, g, t, phase=1)
                g, rb = g[ok], rb[ok]
            if len(g):
                self._claim(t, rule, g, rb, phase=1)
        if self.sust_any is None or not len(moves.in_states):
            return
        g_all, rb_all, st = moves.in_states, moves.in_states_rb, moves.in_states_state
        for k, rule in enumerate(self.sust_rules):
            ok = rule.in_states[st] & (cl.sust_count[g_all, k] < rule.max_months)
            if rule.requires >= 0 and rule.kind == "sustainment":
                ok &= self._eligible(rule, g_all, t, phase=1)  # a month counts only once the requirement is met
            if ok.any():
                g, rb = g_all[ok], rb_all[ok]
                cl.sust_count[g, k] += 1
                if rule.requires >= 0 and rule.kind != "sustainment":  # first entry into a set: used up even if not paid
                    paid = self._eligible(rule, g, t, phase=1)
                    g, rb = g[paid], rb[paid]
                if len(g):
                    self._claim(t, rule, g, rb, phase=1)

    def _eligible(self, rule: Rule, g: np.ndarray, t: int, phase: int) -> np.ndarray:
        """Clients ``g`` whose claim on the line ``rule`` requires was accepted before this claim: in an earlier
        month, or at referral when this claim follows a transition (docs/model.md §7)."""
        at = self.accepted_at[g, self.required_col[rule.requires]]
        return (at >= 0) & (at < 2 * t + phase)

    def _claim(self, t: int, rule: Rule, g: np.ndarray, rb: np.ndarray, phase: int):
        """Claims for clients ``g`` (batch positions ``rb``) under ``rule``; accepted ones settle ``rule.lag`` months later."""
        cl = self.cl
        R, G, O = self.R, len(self.pw.segments), len(self.orgs)
        seg = cl.seg[g]
        cell = (rb * O + cl.org[g]) * G + seg
        if rule.rejection > 0:
            u = rng.uniforms_from_keys(self.rej_keys[(rule.index, phase)][rb, t], rng.counters(cl.local(g, rb)))
            rejected = u < rule.rejection
        else:
            rejected = np.zeros(len(g), dtype=bool)
        col = self.required_col.get(rule.index)
        if col is not None:
            self.accepted_at[g[~rejected], col] = 2 * t + phase
        if rule.class_tariff is not None:  # prices by latent class
            amount = rule.class_tariff[seg.astype(np.int64) * cl.K + cl.cls[g]]
        else:
            amount = rule.tariff[seg] if rule.tariff_years is None else rule.amounts(seg, t, cl.ref_month[g].astype(np.int64))
        priced = amount > 0  # a claim at a zero price (a segment the line does not pay for) is not a claim
        if self.person_paid is not None:  # per-person cap: each client's accepted claims stop at the cap
            amount = np.minimum(amount, np.maximum(self.c.per_person_cap - self.person_paid[g], 0))
            self.person_paid[g[~rejected]] += amount[~rejected]
        j = self.sust_lines.get(rule.index)
        if j is not None:
            self.sust_paid[g[~rejected & (amount > 0)], j] += 1
        if not priced.all():  # (one the per-person cap leaves unpaid is still a claim: an outcome reached)
            cell, rejected, amount = cell[priced], rejected[priced], amount[priced]
        size = R * O * G
        key = cell * 2 + rejected  # counts and sums of accepted (even) and rejected (odd) claims per cell
        n = np.bincount(key, minlength=2 * size).reshape(size, 2)
        a = _sum_by(key, amount, 2 * size).reshape(size, 2)
        n_claimed, n_rejected = n.sum(axis=1), n[:, 1]
        a_claimed, a_rejected = a.sum(axis=1), a[:, 1]
        nz = np.flatnonzero(n_claimed)
        self.claims.add(nz // (O * G), month=t, item=self.rule_item[rule.index], segment=nz % G, organisation=nz // G % O,
                        claims=n_claimed[nz], rejected=n_rejected[nz], amount_claimed=a_claimed[nz], amount_rejected=a_rejected[nz])
        accepted = (a_claimed - a_rejected).reshape(R, O, G)
        if accepted.any():  # settled by one process per due month, started when the month's claims are all made
            self._due.setdefault(t + rule.lag, []).append((rule, accepted))

    def _cohort_payments(self, cr):
        """Measure each cohort when its last member's window closes; pay if the reduction passes the threshold.
        With the last cohort, all cohorts combined are measured against ``threshold_all``."""
        item = self.m.vocab.item(cr.name)
        R = self.R
        paid_so_far = np.zeros(R, dtype=np.int64)
        events_all = np.zeros(R, dtype=np.int64)
        n_all = np.zeros(R, dtype=np.int64)
        order = sorted(range(len(cr.cohorts)), key=cr.measure_month)
        cl = self.cl
        for j, k in enumerate(order):
            t = cr.measure_month(k)
            yield self.env.timeout(max(0.0, t + SETTLE_PHASE - self.env.now))
            start, end = cr.cohorts[k]
            reps, dues = [], []
            for b in np.flatnonzero(~self.contract_over):
                base = int(cl.offset[b])
                lo, hi = base + int(cl.month_start[b, start]), base + int(cl.month_start[b, end])
                first = cl.first_month[lo:hi, cr.event_state].astype(np.int64)
                within = (first >= 0) & (first <= cl.ref_month[lo:hi].astype(np.int64) + cr.window - 1)
                n, events = hi - lo, int(within.sum())
                n_all[b] += n
                events_all[b] += events
                due = 0
                if n and 1.0 - events / n / cr.baseline >= cr.threshold - 1e-12:
                    due = int(round(cr.price * (cr.baseline * n - events)))
                if j == len(order) - 1 and cr.threshold_all is not None and n_all[b]:
                    if 1.0 - int(events_all[b]) / int(n_all[b]) / cr.baseline >= cr.threshold_all - 1e-12:
                        due = max(due, int(round(cr.price * (cr.baseline * int(n_all[b]) - int(events_all[b])))) - int(paid_so_far[b]))
                if due > 0:
                    paid_so_far[b] += due
                    G = len(self.pw.segments)
                    self.claims.add(np.array([b]), month=t, item=item, segment=G, organisation=0, claims=n, rejected=0,
                                    amount_claimed=due, amount_rejected=0)
                    reps.append(b)
                    dues.append(due)
            if reps:
                self.env.process(self._pay_later(t + cr.lag, K["outcome"], item, np.array(reps), np.array(dues, dtype=np.int64)))
            if self.contract_over.all():
                return

    def _pay_later(self, month: int, kind: int, item: int, reps: np.ndarray, amounts: np.ndarray):
        yield self.env.timeout(max(0.0, month + SETTLE_PHASE - self.env.now))
        self._pay(month, kind, item, None, amounts, 0, reps)

    def _reconcile_volumes(self, y: int):
        """Year-end volume reconciliation of the fee for service: top up above the band, claw back below it."""
        vb = self.c.volume_band
        T = self.m.months
        last = min(12 * y + 11, T - 1)
        yield self.env.timeout(last + vb.lag + SETTLE_PHASE)
        months = last - 12 * y + 1
        expected = vb.expected[y] * months / 12.0
        hi, lo = expected * (1 + vb.band), expected * (1 - vb.band)
        month = last + vb.lag
        up, up_due, down, down_back = [], [], [], []
        for b in range(self.R):
            if self.failed[b, 0] >= 0 and self.failed[b, 0] < last:
                continue  # the contract ended before the year did (failing at the year's last month end still completes it)
            actual = int(self.referred[b, 12 * y: last + 1].sum())
            if vb.counted is not None:  # the paid volume: referrals of the counted segments only
                cl = self.cl
                first = int(cl.offset[b] + cl.month_start[b, 12 * y])
                end = int(cl.offset[b] + min(cl.month_start[b, last + 1], cl.admitted[b]))
                actual = int(vb.counted[cl.seg[first:end]].sum())
            if actual > hi:
                due = int(round(vb.unit_price[y] * (actual - hi)))
                if due > 0:
                    self.claims.add(np.array([b]), month=last, item=self.I_RECON, segment=len(self.pw.segments), organisation=0,
                                    claims=actual, rejected=0, amount_claimed=due, amount_rejected=0)
                    up.append(b)
                    up_due.append(due)
            elif actual < lo:
                back = int(round(vb.unit_price[y] * (lo - actual)))
                if back > 0:
                    down.append(b)
                    down_back.append(back)
        if up:
            self._pay(month, K["service_fee"], self.I_RECON, None, np.array(up_due, dtype=np.int64), 0, np.array(up))
        if down:
            # The clawback lowers what the commissioner owes. Money the cap already withheld was never
            # paid, so it is set against that first; only the rest is repaid (docs/model.md, the cap).
            reps, back = np.array(down), np.array(down_back, dtype=np.int64)
            absorbed = np.minimum(back, self.withheld[reps])
            self.withheld[reps] -= absorbed
            cash = back - absorbed
            self.clawback_due[reps] += back
            self.clawed[reps] += cash
            self.paid_total[reps] -= cash
            self.settlements.add(reps, month=month, item=self.I_RECON, segment=len(self.pw.segments), organisation=0,
                                 amount_due=-back, amount_paid=-cash, amount_capped=-absorbed)
            self.ledger.post(reps, month, self.P_ORG[0], self.P_COMM, K["clawback"], cash, self.I_RECON)

    def _costs(self, t: int):
        G = len(self.pw.segments)
        # each organisation's rows: per segment full then minimal delivery, then the overhead
        kinds = np.array([K["delivery"]] * (2 * G) + [K["overhead"]])
        items = np.array([self.I_FULL, self.I_MIN] * G + [self.I_OVER])
        segs = np.array(list(np.repeat(np.arange(G), 2)) + [self.ledger.no_segment])
        for o, org in enumerate(self.orgs):
            reps = np.flatnonzero(self.alive(o) & ~self.contract_over)
            if not len(reps):
                continue
            lv = self.month_levels[reps, o]  # [n, G, 2]
            amounts = np.empty((len(reps), 2 * G + 1), dtype=np.int64)
            amounts[:, 0:2 * G:2] = lv[:, :, FULL] * org.cost_full
            amounts[:, 1:2 * G:2] = lv[:, :, MINIMAL] * org.cost_minimal
            amounts[:, -1] = org.overhead
            n = 2 * G + 1
            self.ledger.post_rows(np.repeat(reps, n), t, self.P_ORG[o], self.P_STAFF, np.tile(kinds, len(reps)), amounts.reshape(-1),
                                  np.tile(items, len(reps)), np.tile(segs, len(reps)))
            if o > 0 and org.ffs_month:
                months = lv.sum(axis=(1, 2))
                self._transfer(t + org.extra_lag, o, K["fee_for_service"], self.I_FFS_MONTH, None, reps, months * org.ffs_month)
        self.month_levels = np.zeros_like(self.month_levels)

    def _interest(self, t: int, o: int):
        bal = self.ledger.balance[:, self.P_ORG[o]]
        rate = self.orgs[o].monthly_interest
        if rate > 0:
            reps = np.flatnonzero(bal < 0)
            if len(reps):
                self.ledger.post(reps, t, self.P_ORG[o], self.P_LENDER, K["interest"], np.rint(-bal[reps] * rate).astype(np.int64), self.I_INT)

    def _insolvent(self, o: int) -> np.ndarray:
        limit = self.orgs[o].credit_limit
        if limit is None:
            return np.zeros(self.R, dtype=bool)
        return self.ledger.balance[:, self.P_ORG[o]] < -limit

    def _fail(self, t: int, o: int, b: int):
        """Insolvency of organisation ``o`` at month end ``t`` in replication ``b``: the prime ends the contract;
        a sub's clients move or drop."""
        self.failed[b, o] = t
        org = self.orgs[o]
        if t >= self.m.months:  # in the run-off after the contract end: recorded, but no client is served any more
            self.failures.append((b, o, t, 0, "after the contract end"))
            return
        cl = self.cl
        if o == 0:
            self.contract_over[b] = True
            mine, action = cl.active_of(b, None), "contract_ended"
        else:
            mine = cl.active_of(b, o)
            target = org.transfer_to if org.transfer_to != o else 0
            action = org.on_failure if self.failed[b, target] < 0 else "drop"
        n = len(mine)
        if action == "transfer":
            restart = self.pw.index(org.restart_state) if org.restart_state is not None else None
            cl.transfer(t, mine, target, org.gap_months, restart)
            if restart is not None and n:
                # not an entry (nothing is paid), but from now on the client has been in that state
                g = cl.w_g[mine]
                never = g[cl.first_month[g, restart] < 0]
                cl.first_month[never, restart] = t
                for k, rule in enumerate(self.sust_rules):  # first-entry lines over several states: not a first entry later
                    if rule.kind != "sustainment" and rule.in_states[restart]:
                        cl.sust_count[g, k] = rule.max_months
            action = f"transfer to {self.orgs[target].name}"
        else:
            cl.drop(t, mine)
        self.failures.append((b, o, t, n, action))

    # -- invariants -------------------------------------------------------------------------------
    def _money(self, pence: int) -> str:
        return pence_exact(pence, self.m.scenario.currency)

    def _fault(self, bad: np.ndarray, message):
        """Raise for the first replication where ``bad`` holds, naming it."""
        if np.any(bad):
            b = int(np.flatnonzero(bad)[0])
            raise InvariantError(f"replication {self.reps[b]}: {message(b)}")

    def _same(self, what: str, a_label: str, a: np.ndarray, b_label: str, b: np.ndarray):
        """Raise unless two money figures ([R]) agree, showing both sides to the penny and the difference."""
        a, b = np.broadcast_to(a, (self.R,)), np.broadcast_to(b, (self.R,))
        self._fault(a != b, lambda r: f"{what}: {a_label} {self._money(a[r])}, {b_label} {self._money(b[r])} "
                                      f"(difference {self._money(int(a[r]) - int(b[r]))})")

    def _within(self, what: str, label: str, amount: np.ndarray, limit_label: str, limit: int):
        """Raise if a money figure ([R]) exceeds its limit, showing both to the penny and the excess."""
        amount = np.broadcast_to(amount, (self.R,))
        self._fault(amount > limit, lambda r: f"{what}: {label} {self._money(amount[r])} exceeds {limit_label} "
                                              f"{self._money(limit)} (difference {self._money(int(amount[r]) - limit)})")

    def _check_invariants(self):
        """docs/model.md §11, for every replication of the batch: money and clients are conserved and every total
        agrees with the ledger; a failure names the first replication it finds."""
        led = self._ledger_arrays = self.ledger.arrays()
        R, H = self.R, self.m.horizon
        check, same, within = self._fault, self._same, self._within

        def by_rep(col: str, rows: dict, sel=None) -> np.ndarray:
            if sel is not None:
                return np.rint(np.bincount(rows["rep"][sel], weights=rows[col][sel], minlength=R)).astype(np.int64)
            return np.rint(np.bincount(rows["rep"], weights=rows[col], minlength=R)).astype(np.int64)

        # money by (replication, payer, payee), and into / out of each party by month, from the ledger rows
        NP = len(self.m.vocab.parties)
        pence = led["amount"].astype(np.float64)  # float sums of integer pence are exact below 2**53

        def total(key: np.ndarray, size: int) -> np.ndarray:
            return np.rint(np.bincount(key, weights=pence, minlength=size)).astype(np.int64)

        pair = total((led["rep"] * NP + led["payer"]) * NP + led["payee"], R * NP * NP).reshape(R, NP, NP)
        into = total((led["rep"] * NP + led["payee"]) * H + led["month"], R * NP * H).reshape(R, NP, H)
        out_of = total((led["rep"] * NP + led["payer"]) * H + led["month"], R * NP * H).reshape(R, NP, H)
        for o, org in enumerate(self.orgs):
            P = self.P_ORG[o]
            derived = org.opening_cash + np.cumsum(into[:, P] - out_of[:, P], axis=1)
            differs = derived != self.cash[:, :, o]
            if differs.any():
                b = int(np.flatnonzero(differs.any(axis=1))[0])
                m = int(np.flatnonzero(differs[b])[0])
                rows = np.arange(R) == b
                same(f"cash of {org.name} from the ledger differs from the engine's at month {m}",
                     "from the ledger", np.where(rows, derived[:, m], 0), "engine", np.where(rows, self.cash[:, m, o], 0))
        net = pair.sum(axis=1) - pair.sum(axis=2)  # [R, parties]: received less paid
        for p, name in enumerate(self.m.vocab.parties):
            same(f"balance of {name}", "opening plus ledger rows", self.ledger.opening[p] + net[:, p],
                 "running balance", self.ledger.balance[:, p])
        same("money is not conserved across all parties", "balances", self.ledger.balance.sum(axis=1),
             "opening balances", np.full(R, int(self.ledger.opening.sum())))
        cl = self.cl
        adm = np.repeat(np.arange(R), cl.offset[1:] - cl.offset[:-1])
        admitted = admitted_mask(cl.offset, cl.admitted)
        st, adm_rb = cl.state[admitted], adm[admitted]
        n = cl.admitted
        check(np.bincount(adm_rb, weights=(st < 0) | (st >= self.pw.n_states), minlength=R) > 0,
              lambda b: "a referred client has no valid final state")
        final = self.caseload[:, -1].sum(axis=(1, 2))
        referred = self.referred.sum(axis=(1, 2))
        check((final != n) | (referred != n),
              lambda b: f"{n[b]} clients admitted, {int(final[b])} counted by state at the end and {int(referred[b])} counted as referred")
        ended = cl.end_month[admitted] >= 0
        wrong = ended != self.pw.absorbing[np.clip(st, 0, None)]

        def end_months(b: int) -> str:
            g = int(np.flatnonzero(admitted)[np.flatnonzero(wrong & (adm_rb == b))[0]])
            return (f"end months disagree with final states (client {g - int(cl.offset[b])}: end month "
                    f"{int(cl.end_month[g])}, final state {self.pw.states[int(cl.state[g])]})")

        check(np.bincount(adm_rb, weights=wrong, minlength=R) > 0, end_months)
        cm = self._claim_arrays = self.claims.arrays()
        sm = self._settlement_arrays = self.settlements.arrays()
        fee_cum = np.concatenate([[0], np.cumsum(self.c.fee_due)])
        fee_months = np.minimum(np.where(self.alive(0), self.m.months, self.failed[:, 0] + 1), self.m.months)
        accepted = by_rep("amount_claimed", cm) - by_rep("amount_rejected", cm)
        due, paid = by_rep("amount_due", sm), by_rep("amount_paid", sm)
        same("claims are not all settled", "accepted claims plus service fee less clawbacks",
             accepted + fee_cum[fee_months] - self.clawback_due, "due in the settlements", due)
        adds_up = sm["amount_paid"] + sm["amount_capped"] == sm["amount_due"]
        if not adds_up.all():
            i = int(np.flatnonzero(~adds_up)[0])
            b = int(sm["rep"][i])
            k = i - int(np.searchsorted(sm["rep"], b))  # the row's place among its replication's settlements
            rows = np.arange(R) == b
            same(f"settlement {k} does not add up", "paid plus capped", np.where(rows, sm["amount_paid"][i] + sm["amount_capped"][i], 0),
                 "due", np.where(rows, sm["amount_due"][i], 0))
        from_commissioner = pair[:, self.P_COMM].sum(axis=1)
        prime = self.P_ORG[0]
        clawed = pair[:, prime, self.P_COMM]
        same("clawbacks", "in the ledger", clawed, "in the engine", self.clawed)
        same("commissioner payments", "paid in the settlements", paid, "paid in the ledger net of clawbacks", from_commissioner - clawed)
        if self.c.cap is not None:
            within("the cap", "net paid", paid, "the cap", self.c.cap)
            same("the cap", "net paid", paid, "the lesser of the cap and what was due", np.minimum(self.c.cap, due))
        else:
            same("no cap, yet money was withheld", "net paid", paid, "due", due)
        # the chain: what the commissioner pays is what the prime keeps plus what it passed down
        to_subs = pair[:, prime, self.P_ORG[1:]].sum(axis=1)
        same("payments down the chain", "prime paid subcontractors", to_subs, "prime owed them", self.scheduled_transfers)
        if self.person_paid is not None:
            worst = np.zeros(R, dtype=np.int64)
            np.maximum.at(worst, adm, self.person_paid)
            within("the per-person cap", "most paid for one client", worst, "the per-person cap", self.c.per_person_cap)
            lines = np.isin(cm["item"], self.rule_item)
            same("per-person totals", "clients' accepted payments", _sum_by(adm, self.person_paid, R),
                 "accepted claims on payment lines", by_rep("amount_claimed", cm, lines) - by_rep("amount_rejected", cm, lines))
        if self.investors is not None:
            self.investors.check(self, led, pair, self.P_ORG[self.fin.organisation], self.P_COMM)
        into_prime = pair[:, self.P_COMM, prime]
        same("commissioner payments did not all reach the prime", "reached the prime", into_prime,
             "paid by the commissioner", from_commissioner)


def _passed(sub: Organisation, kind: str, paid: np.ndarray) -> np.ndarray:
    """Pence the prime passes on of each payment ``paid`` of ``kind`` received for ``sub``'s clients (truncated)."""
    share = sub.pass_through.get(kind, 0.0) * (1 - sub.management_fee)
    return (paid.astype(np.float64) * share).astype(np.int64)


def _sum_by(cell: np.ndarray, amount: np.ndarray, size: int) -> np.ndarray:
    """Sum of integer pence ``amount`` per ``cell``. A weighted bincount sums in float64, which is exact for
    integers below 2**53 pence (£90 trillion), so rounding back to int64 loses nothing."""
    return np.rint(np.bincount(cell, weights=amount, minlength=size)).astype(np.int64)


def batch_size(model: Model) -> int:
    """Replications per batch: as many as keep a batch's arrays within ``MAX_BATCH_BYTES`` (expected clients,
    monthly arrays by organisation and state, ledger rows of a month's costs and payments)."""
    from .referrals import expected_counts

    H, O, S, G = model.horizon, len(model.organisations), model.pathway.n_states, len(model.pathway.segments)
    per_rep = 50 * float(expected_counts(model.scenario).sum()) + 8 * H * O * (S + 4) + 56 * H * O * (2 * G + 4)
    return max(1, int(MAX_BATCH_BYTES // per_rep))


def run_batch(model: Model, seed: int, replications) -> Batch:
    """Simulate replications ``replications`` of ``model`` together; conservation checks run before it returns.
    Each replication's results are the same as when it runs alone."""
    return _Run(model, seed, replications=list(replications)).run()


def run_replication(model: Model, seed: int, replication: int) -> Replication:
    """Simulate one replication; conservation checks run before it returns."""
    return run_batch(model, seed, [replication]).replication(0)
