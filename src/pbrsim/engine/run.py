"""The discrete-event engine: SimPy is the calendar, numpy arrays hold the caseload.

One replication runs months 0..T-1 of client dynamics and a run-off to T + max lag for late
settlements. Each month's steps, in order (docs/model.md, "One month"):

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
from .behaviour import Review, make_policy
from ..model.contract import Contract, Rule, compile_contract
from .ledger import KINDS, LENDER, STAFF_AND_SUPPLIERS, Ledger, Vocabulary, cash_curve
from ..model.organisation import Allocation, Organisation, compile_allocation, compile_organisations
from ..model.pathway import FULL, MINIMAL, Pathway, compile_pathway, step
from .referrals import draw_counts
from ..model.money import pence_exact, to_pence
from ..scenario.schema import EXTRA_ITEMS, Scenario

SETTLE_PHASE = 0.5
COST_PHASE = 0.6
MONTH_END_PHASE = 0.9
DELIVERY_ITEMS = ("delivery_full", "delivery_minimal")
FFS_ITEMS = ("ffs_start", "ffs_month")
K = {k: i for i, k in enumerate(KINDS)}


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
        + ((fin.investor,) if fin else ()),
        items=("service_fee",) + tuple(r.name for r in contract.rules) + DELIVERY_ITEMS + ("overhead", "interest") + FFS_ITEMS
        + tuple(c.name for c in contract.cohorts) + EXTRA_ITEMS,
        segments=pw.segments,
    )
    finance = None
    if fin is not None:
        org = next(o.index for o in orgs if o.name == (fin.organisation or orgs[0].name))
        finance = Financing(
            investor=fin.investor, organisation=org, commitment=to_pence(fin.commitment), upfront=fin.drawdown == "upfront",
            floor=to_pence(fin.cash_floor), monthly_return=(1.0 + fin.annual_return) ** (1 / 12) - 1.0, share=fin.repayment_share,
        )
    return Model(scenario=sc, pathway=pw, contract=contract, organisations=orgs,
                 allocation=compile_allocation(sc, orgs), vocab=vocab, finance=finance)


@dataclass(frozen=True)
class Financing:
    """Investor finance compiled to pence (scenario ``finance``)."""

    investor: str
    organisation: int  # index into Model.organisations
    commitment: int
    upfront: bool
    floor: int
    monthly_return: float
    share: float


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
    ledger: Ledger
    cash: np.ndarray  # month-end cash [H, O]
    caseload: np.ndarray  # clients by organisation and state at month end [H, O, S]
    level_counts: np.ndarray  # client-months at full / minimal [H, O, 2]
    referred: np.ndarray  # clients referred per month [H, O]
    claims: list = field(default_factory=list)
    settlements: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # (organisation, month, clients affected, action)
    failure_months: np.ndarray | None = None  # [O], -1 when the organisation did not fail
    client_months: int = 0

    @property
    def failure_month(self) -> int:
        """Month the prime (the contract holder) failed, or -1."""
        return int(self.failure_months[0])


class _Run:
    """State and SimPy processes for one replication of a contract and its supply chain."""

    def __init__(self, model: Model, seed: int, replication: int):
        self.m = model
        self.seed = seed
        self.rep = replication
        self.pw = model.pathway
        self.c = model.contract
        self.orgs = model.organisations
        self.policies = [make_policy(o.policy, model, o) for o in self.orgs]
        T, H, S = model.months, model.horizon, self.pw.n_states
        G, O = len(self.pw.segments), len(self.orgs)
        counts = draw_counts(model.scenario, seed, replication)  # [T, G]
        per_month = counts.sum(axis=1)
        n = int(per_month.sum())
        order_rng = rng.stream(seed, replication, rng.TIE_BREAKS)
        seg = np.empty(n, dtype=np.int16)
        self.month_start = np.concatenate([[0], np.cumsum(per_month)]).astype(np.int64)
        for t in range(T):
            lo, hi = self.month_start[t], self.month_start[t + 1]
            if hi > lo:
                seg[lo:hi] = order_rng.permutation(np.repeat(np.arange(G, dtype=np.int16), counts[t]))
        self.seg = seg
        self.ref_month = np.repeat(np.arange(T, dtype=np.int16), per_month)
        self.org = np.zeros(n, dtype=np.int16)
        self.first_org = np.zeros(n, dtype=np.int16)
        self.paused_until = np.full(n, -1, dtype=np.int16)
        self.state = np.full(n, -1, dtype=np.int16)
        self.first_month = np.full((n, S), -1, dtype=np.int16)
        self.months_full = np.zeros(n, dtype=np.int16)
        self.months_minimal = np.zeros(n, dtype=np.int16)
        self.months_no_service = np.zeros(n, dtype=np.int16)
        self.end_month = np.full(n, -1, dtype=np.int16)
        self.sust_rules = self.c.sustainment_rules
        self.sust_count = np.zeros((n, len(self.sust_rules)), dtype=np.int16)
        # lines that another line `requires`: when each client's claim on them was accepted (2 * month + phase), -1 if not
        required = sorted({r.requires for r in self.c.rules if r.requires >= 0})
        self.required_col = {ri: j for j, ri in enumerate(required)}
        self.accepted_at = np.full((n, len(required)), -1, dtype=np.int32)
        self.admitted = 0  # clients 0..admitted-1 are on the caseload
        v = model.vocab
        self.P_COMM = v.party(self.c.commissioner)
        self.P_ORG = [v.party(o.name) for o in self.orgs]
        self.P_STAFF, self.P_LENDER = v.party(STAFF_AND_SUPPLIERS), v.party(LENDER)
        self.I_FEE, self.I_FULL, self.I_MIN = v.item("service_fee"), v.item("delivery_full"), v.item("delivery_minimal")
        self.I_OVER, self.I_INT = v.item("overhead"), v.item("interest")
        self.I_FFS_START, self.I_FFS_MONTH = v.item("ffs_start"), v.item("ffs_month")
        self.rule_item = [v.item(r.name) for r in self.c.rules]
        self.ledger = Ledger(v, {self.P_ORG[o.index]: o.opening_cash for o in self.orgs})
        self.shares = model.allocation.shares.copy()
        self.cash = np.zeros((H, O), dtype=np.int64)
        self.caseload = np.zeros((H, O, S), dtype=np.int64)
        self.level_counts = np.zeros((H, O, 2), dtype=np.int64)
        self.referred = np.zeros((H, O), dtype=np.int64)
        self.month_levels = np.zeros((O, G, 2), dtype=np.int64)  # this month's client-months
        self.paid_total = 0
        self.failed = np.full(O, -1, dtype=np.int64)
        self.contract_over = False  # the prime failed
        self.claims: list[tuple] = []
        self.settlements: list[tuple] = []
        self.failures: list[tuple] = []
        self.scheduled_transfers = 0  # pence the prime has committed to pass on or pay as fees
        self.client_months = 0
        self.person_paid = np.zeros(n, dtype=np.int64) if self.c.per_person_cap is not None else None
        self.clawed = 0  # pence the prime has repaid the commissioner (volume reconciliation)
        self.clawback_due = 0  # pence the reconciliations took off what the commissioner owes
        self.withheld = 0  # pence owed beyond the cap and not paid (net of clawbacks set against it)
        self.I_RECON = v.item("volume_reconciliation")
        self.income_cum = np.zeros(O, dtype=np.int64)  # contract income received so far, per organisation
        self.fin = model.finance
        if self.fin is not None:
            self.P_INV = v.party(self.fin.investor)
            self.I_INVEST, self.I_REPAY = v.item("investment"), v.item("repayment")
            self.fin_drawn = 0
            self.fin_owed = 0  # capital plus return due, pence
            self.fin_repaid = 0
            self.fin_income_seen = 0

    def alive(self, o: int) -> bool:
        return self.failed[o] < 0

    # -- SimPy processes -----------------------------------------------------------------------
    def run(self) -> Replication:
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
        self._check_invariants()
        a = self.admitted
        return Replication(
            replication=self.rep,
            segment=self.seg[:a],
            ref_month=self.ref_month[:a],
            org=self.org[:a],
            first_org=self.first_org[:a],
            state=self.state[:a],
            first_month=self.first_month[:a],
            months_full=self.months_full[:a],
            months_minimal=self.months_minimal[:a],
            months_no_service=self.months_no_service[:a],
            end_month=self.end_month[:a],
            ledger=self.ledger,
            cash=self.cash,
            caseload=self.caseload,
            level_counts=self.level_counts,
            referred=self.referred,
            claims=self.claims,
            settlements=self.settlements,
            failures=self.failures,
            failure_months=self.failed.copy(),
            client_months=self.client_months,
        )

    def _monthly_cycle(self):
        for t in range(self.m.months):
            if not self.contract_over:
                self._refer(t)
                active = np.flatnonzero(~self.pw.absorbing[self.state[: self.admitted]])
                level = self._review(t, active)
                self._transition(t, active, level)
            yield self.env.timeout(COST_PHASE)
            if not self.contract_over:
                self._costs(t)
            yield self.env.timeout(1 - COST_PHASE)

    def _month_end(self):
        yield self.env.timeout(MONTH_END_PHASE)
        S = self.pw.n_states
        for t in range(self.m.horizon):
            if self.fin is not None:
                self._finance(t)
            for o in range(len(self.orgs)):
                self._interest(t, o)
            for o in range(len(self.orgs)):
                if self.alive(o) and self._insolvent(o):
                    self._fail(t, o)
            self.cash[t] = self.ledger.balance[self.P_ORG]
            a = self.admitted
            if a:
                flat = np.bincount(self.org[:a].astype(np.int64) * S + self.state[:a], minlength=len(self.orgs) * S)
                self.caseload[t] = flat.reshape(len(self.orgs), S)
            yield self.env.timeout(1)

    def _later(self, month: int, sub: int, kind: int, item: int, segment: int | None, amount: int):
        """The prime pays subcontractor ``sub`` at ``month`` (its settlement phase, or now if that has passed)."""
        yield self.env.timeout(max(0.0, month + SETTLE_PHASE - self.env.now))
        self.ledger.post(month, self.P_ORG[0], self.P_ORG[sub], kind, amount, item, segment)
        self.income_cum[sub] += amount

    def _transfer(self, month: int, sub: int, kind: int, item: int, segment: int | None, amount: int):
        """The prime pays a subcontractor (pass-through or fee for service) at ``month``."""
        if amount <= 0:
            return
        self.scheduled_transfers += amount
        self.env.process(self._later(month, sub, kind, item, segment, amount))

    def _settle(self, due: int, rule: Rule, amounts: np.ndarray):
        """Commissioner settles accepted claims (amounts[org, segment]) with the prime, who passes on the subs' share."""
        yield self.env.timeout(due + SETTLE_PHASE - self.env.now)
        for o, g in zip(*np.nonzero(amounts)):
            paid = self._pay(due, K[rule.kind], self.rule_item[rule.index], int(g), int(amounts[o, g]), int(o))
            if o > 0:
                sub = self.orgs[o]
                self._transfer(due + sub.extra_lag, int(o), K[rule.kind], self.rule_item[rule.index], int(g), sub.passed(rule.kind, paid))

    def _fee_instalment(self, t: int):
        due = t + self.c.fee_lag
        yield self.env.timeout(due + SETTLE_PHASE)
        if not self.alive(0) and t > self.failed[0]:
            return  # contract terminated: no fee for months after the prime failed
        paid = self._pay(due, K["service_fee"], self.I_FEE, None, int(self.c.fee_due[t]), 0)
        for sub in self.orgs[1:]:
            if self.alive(sub.index) or t <= self.failed[sub.index]:
                self._transfer(due + sub.extra_lag, sub.index, K["service_fee"], self.I_FEE, None, sub.passed("service_fee", paid))

    # -- steps ----------------------------------------------------------------------------------
    def _pay(self, month: int, kind: int, item: int, segment: int | None, amount: int, org: int) -> int:
        """Commissioner pays the prime a settled claim, up to what is left under the cap."""
        paid = amount
        if self.c.cap is not None:
            paid = max(0, min(amount, self.c.cap - self.paid_total))
        self.paid_total += paid
        self.withheld += amount - paid
        self.income_cum[0] += paid
        self.ledger.post(month, self.P_COMM, self.P_ORG[0], kind, paid, item, segment)
        seg_code = len(self.pw.segments) if segment is None else segment
        self.settlements.append((month, item, seg_code, org, amount, paid, amount - paid))
        return paid

    def _current_shares(self) -> np.ndarray:
        """Allocation shares with failed organisations' shares moved to where their clients go."""
        shares = self.shares.copy()
        for o in range(len(self.orgs) - 1, 0, -1):
            if not self.alive(o):
                target = self.orgs[o].transfer_to if self.orgs[o].on_failure == "transfer" else 0
                if not self.alive(target):
                    target = 0
                shares[:, target] += shares[:, o]
                shares[:, o] = 0.0
        return shares

    def _refer(self, t: int):
        lo, hi = int(self.month_start[t]), int(self.month_start[t + 1])
        self.admitted = hi
        if hi == lo:
            return
        idx = np.arange(lo, hi)
        O = len(self.orgs)
        if O > 1:
            if self.m.allocation.performance and t > 0 and t % self.m.allocation.review_every == 0:
                self._shift_shares(lo)
            cum = np.cumsum(self._current_shares(), axis=1)
            cum[:, -1] = 1.0
            u = rng.uniforms_at(self.seed, self.rep, rng.ALLOCATION, t, idx)
            assigned = (cum[self.seg[idx]] <= u[:, None]).sum(axis=1).astype(np.int16)
            self._guarantee(assigned)
            self.org[lo:hi] = assigned
            self.first_org[lo:hi] = assigned
        self.referred[t] = np.bincount(self.org[lo:hi], minlength=O)
        for sub in self.orgs[1:]:
            if sub.ffs_start and self.referred[t, sub.index]:
                self._transfer(t + sub.extra_lag, sub.index, K["fee_for_service"], self.I_FFS_START, None,
                               int(self.referred[t, sub.index]) * sub.ffs_start)
        init = self.pw.initial
        self.state[lo:hi] = init
        self.first_month[lo:hi, init] = t
        for rule in self.c.rules:
            if not rule.is_sustainment and rule.state == init:
                self._claim(t, rule, idx, phase=0)
        for k, rule in enumerate(self.sust_rules):
            if rule.pays_at_referral and rule.in_states[init]:  # first entry into a set that holds the start
                self.sust_count[idx, k] = 1
                self._claim(t, rule, idx, phase=0)

    def _guarantee(self, assigned: np.ndarray):
        """Top up subcontractors with a guaranteed minimum from the prime's share of this month's referrals."""
        for sub in self.orgs[1:]:
            if not sub.guaranteed or not self.alive(sub.index):
                continue
            short = sub.guaranteed - int((assigned == sub.index).sum())
            if short > 0:
                from_prime = np.flatnonzero(assigned == 0)[::-1][:short]  # the prime's latest referrals
                assigned[from_prime] = sub.index

    def _shift_shares(self, a: int):
        """Quarterly (or as set) performance review: shares move towards organisations with better outcome
        rates among the clients referred before this month (clients 0..a-1)."""
        target_state = self.c.primary_outcome if self.c.primary_outcome >= 0 else self.c.milestone
        if target_state < 0 or a == 0:
            return
        O = len(self.orgs)
        n = np.bincount(self.first_org[:a], minlength=O).astype(float)
        hits = np.bincount(self.first_org[:a], weights=(self.first_month[:a, target_state] >= 0), minlength=O)
        alive = self.failed < 0
        rate = np.where((n > 0) & alive, hits / np.maximum(n, 1), 0.0)
        if rate.sum() == 0:
            return
        target = rate / rate.sum()
        step = self.m.allocation.step
        self.shares = (1 - step) * self.shares + step * target[None, :]

    def _review(self, t: int, active: np.ndarray) -> np.ndarray:
        """Service level of each active client this month, from each organisation's allocation policy."""
        level = np.full(len(active), MINIMAL, dtype=np.int8)
        G = len(self.pw.segments)
        st = self.state[active]
        in_service = self.pw.service[st]
        paused = in_service & (self.paused_until[active] >= t)
        self.months_no_service[active[paused]] += 1
        in_service &= ~paused
        pos = np.flatnonzero(in_service)  # positions in `active` of clients in service this month
        cand_all = active[pos]
        O = len(self.orgs)
        if O == 1:
            groups = [np.arange(len(cand_all))]
        else:  # stable sort keeps first-come-first-served order within each organisation
            org_c = self.org[cand_all]
            order = np.argsort(org_c, kind="stable")
            bounds = np.searchsorted(org_c[order], np.arange(O + 1))
            groups = [order[bounds[o]:bounds[o + 1]] for o in range(O)]
        self.month_levels[:] = 0
        for o, org in enumerate(self.orgs):
            sel = groups[o]
            if len(sel) == 0:
                continue
            cand = cand_all[sel]
            review = Review(
                month=t,
                candidates=cand,
                segment=self.seg[cand],
                state=self.state[cand],
                ref_month=self.ref_month[cand],
                capacity=org.capacity,
                cash=int(self.ledger.balance[self.P_ORG[o]]),
            )
            full = np.asarray(self.policies[o](review), dtype=bool)
            if org.capacity is not None and full.sum() > org.capacity:
                raise InvariantError(f"policy {org.policy.name!r} gave {full.sum()} full places, capacity {org.capacity}")
            level[pos[sel[full]]] = FULL
            self.months_full[cand[full]] += 1
            self.months_minimal[cand[~full]] += 1
            self.month_levels[o, :, FULL] = np.bincount(self.seg[cand[full]], minlength=G)
            self.month_levels[o, :, MINIMAL] = np.bincount(self.seg[cand[~full]], minlength=G)
        self.level_counts[t] = self.month_levels.sum(axis=1)
        self.client_months += len(active)
        return level

    def _transition(self, t: int, active: np.ndarray, level: np.ndarray):
        if len(active) == 0:
            return
        u = rng.uniforms_at(self.seed, self.rep, rng.TRANSITIONS, t, active)
        old = self.state[active]
        seg = self.seg[active]
        new = step(self.pw, seg, old, level, u)
        if self.pw.max_months is not None:
            age = t - self.ref_month[active] + 1
            forced = (age >= self.pw.max_months) & self.pw.exit_applies[new]
            new[forced] = self.pw.exit_state
        entered = new != old
        S = self.pw.n_states
        flat_first = self.first_month.reshape(-1)
        pos = active.astype(np.int64) * S + new
        first = entered & (flat_first[pos] < 0)
        flat_first[pos[first]] = t
        absorbed = entered & self.pw.absorbing[new]
        self.end_month[active[absorbed]] = t
        self.state[active] = new
        for rule in self.c.rules:
            if rule.is_sustainment:
                continue
            hit = first & (new == rule.state)
            if rule.requires >= 0:
                hit &= self._eligible(rule, active, t, phase=1)
            if hit.any():
                self._claim(t, rule, active[hit], phase=1)
        for k, rule in enumerate(self.sust_rules):
            ok = rule.in_states[new] & (self.sust_count[active, k] < rule.max_months)
            if rule.requires >= 0 and rule.kind == "sustainment":
                ok &= self._eligible(rule, active, t, phase=1)  # a month counts only once the requirement is met
            if ok.any():
                idx = active[ok]
                self.sust_count[idx, k] += 1
                if rule.requires >= 0 and rule.kind != "sustainment":  # first entry into a set: used up even if not paid
                    idx = idx[self._eligible(rule, idx, t, phase=1)]
                if len(idx):
                    self._claim(t, rule, idx, phase=1)

    def _eligible(self, rule: Rule, idx: np.ndarray, t: int, phase: int) -> np.ndarray:
        """Clients ``idx`` whose claim on the line ``rule`` requires was accepted before this claim: in an earlier
        month, or at referral when this claim follows a transition (docs/model.md §7)."""
        at = self.accepted_at[idx, self.required_col[rule.requires]]
        return (at >= 0) & (at < 2 * t + phase)

    def _claim(self, t: int, rule: Rule, idx: np.ndarray, phase: int):
        """Claims for clients ``idx`` under ``rule``; accepted ones settle ``rule.lag`` months later."""
        G, O = len(self.pw.segments), len(self.orgs)
        seg = self.seg[idx]
        cell = self.org[idx].astype(np.int64) * G + seg
        if rule.rejection > 0:
            u = rng.uniforms_at(self.seed, self.rep, rng.REJECTIONS, t, idx, rule.key, phase)
            rejected = u < rule.rejection
        else:
            rejected = np.zeros(len(idx), dtype=bool)
        col = self.required_col.get(rule.index)
        if col is not None:
            self.accepted_at[idx[~rejected], col] = 2 * t + phase
        amount = rule.amounts(seg, t, self.ref_month[idx].astype(np.int64))
        if self.person_paid is not None:  # per-person cap: each client's accepted claims stop at the cap
            amount = np.minimum(amount, np.maximum(self.c.per_person_cap - self.person_paid[idx], 0))
            self.person_paid[idx[~rejected]] += amount[~rejected]
        n_claimed = np.bincount(cell, minlength=O * G).reshape(O, G)
        n_rejected = np.bincount(cell[rejected], minlength=O * G).reshape(O, G)
        a_claimed = _sum_by(cell, amount, O * G).reshape(O, G)
        a_rejected = _sum_by(cell[rejected], amount[rejected], O * G).reshape(O, G)
        accepted = a_claimed - a_rejected
        for o, g in zip(*np.nonzero(n_claimed)):
            self.claims.append(
                (t, self.rule_item[rule.index], int(g), int(o), int(n_claimed[o, g]), int(n_rejected[o, g]),
                 int(a_claimed[o, g]), int(a_rejected[o, g]))
            )
        if accepted.any():
            self.env.process(self._settle(t + rule.lag, rule, accepted))

    def _cohort_payments(self, cr):
        """Measure each cohort when its last member's window closes; pay if the reduction passes the threshold.
        With the last cohort, all cohorts combined are measured against ``threshold_all``."""
        item = self.m.vocab.item(cr.name)
        paid_so_far = 0
        events_all = n_all = 0
        order = sorted(range(len(cr.cohorts)), key=cr.measure_month)
        for j, k in enumerate(order):
            t = cr.measure_month(k)
            yield self.env.timeout(max(0.0, t + SETTLE_PHASE - self.env.now))
            if self.contract_over:
                return
            start, end = cr.cohorts[k]
            lo, hi = int(self.month_start[start]), int(self.month_start[end])
            first = self.first_month[lo:hi, cr.event_state].astype(np.int64)
            within = (first >= 0) & (first <= self.ref_month[lo:hi].astype(np.int64) + cr.window - 1)
            n, events = hi - lo, int(within.sum())
            n_all += n
            events_all += events
            due = 0
            if n and 1.0 - events / n / cr.baseline >= cr.threshold - 1e-12:
                due = int(round(cr.price * (cr.baseline * n - events)))
            if j == len(order) - 1 and cr.threshold_all is not None and n_all:
                if 1.0 - events_all / n_all / cr.baseline >= cr.threshold_all - 1e-12:
                    due = max(due, int(round(cr.price * (cr.baseline * n_all - events_all))) - paid_so_far)
            if due > 0:
                paid_so_far += due
                G = len(self.pw.segments)
                self.claims.append((t, item, G, 0, n, 0, due, 0))
                self.env.process(self._pay_later(t + cr.lag, K["outcome"], item, due))

    def _pay_later(self, month: int, kind: int, item: int, amount: int):
        yield self.env.timeout(max(0.0, month + SETTLE_PHASE - self.env.now))
        self._pay(month, kind, item, None, amount, 0)

    def _reconcile_volumes(self, y: int):
        """Year-end volume reconciliation of the fee for service: top up above the band, claw back below it."""
        vb = self.c.volume_band
        T = self.m.months
        last = min(12 * y + 11, T - 1)
        yield self.env.timeout(last + vb.lag + SETTLE_PHASE)
        if not self.alive(0) and self.failed[0] < last:
            return  # the contract ended before the year did (failing at the year's last month end still completes it)
        months = last - 12 * y + 1
        expected = vb.expected[y] * months / 12.0
        actual = int(self.referred[12 * y: last + 1].sum())
        if vb.counted is not None:  # the paid volume: referrals of the counted segments only
            lo, hi = int(self.month_start[12 * y]), min(int(self.month_start[last + 1]), self.admitted)
            actual = int(vb.counted[self.seg[lo:hi]].sum())
        hi, lo = expected * (1 + vb.band), expected * (1 - vb.band)
        month = last + vb.lag
        if actual > hi:
            due = int(round(vb.unit_price[y] * (actual - hi)))
            if due > 0:
                self.claims.append((last, self.I_RECON, len(self.pw.segments), 0, actual, 0, due, 0))
                self._pay(month, K["service_fee"], self.I_RECON, None, due, 0)
        elif actual < lo:
            back = int(round(vb.unit_price[y] * (lo - actual)))
            if back > 0:
                # The clawback lowers what the commissioner owes. Money the cap already withheld was never
                # paid, so it is set against that first; only the rest is repaid (docs/model.md, the cap).
                absorbed = min(back, self.withheld)
                self.withheld -= absorbed
                cash = back - absorbed
                self.clawback_due += back
                self.clawed += cash
                self.paid_total -= cash
                self.settlements.append((month, self.I_RECON, len(self.pw.segments), 0, -back, -cash, -absorbed))
                self.ledger.post(month, self.P_ORG[0], self.P_COMM, K["clawback"], cash, self.I_RECON)

    def _finance(self, t: int):
        """Month end: the investor tops the organisation up (drawdown), then is repaid out of contract income."""
        f = self.fin
        P = self.P_ORG[f.organisation]
        post = self.ledger.post
        self.fin_owed += int(round(self.fin_owed * f.monthly_return))
        can_draw = self.alive(f.organisation) and t < self.m.months and not self.contract_over
        draw = 0
        if can_draw and f.upfront and t == 0:
            draw = f.commitment
        elif can_draw and not f.upfront:
            short = f.floor - int(self.ledger.balance[P])
            draw = max(0, min(short, f.commitment - self.fin_drawn))
        if draw:
            post(t, self.P_INV, P, K["investment"], draw, self.I_INVEST)
            self.fin_drawn += draw
            self.fin_owed += draw
        income = int(self.income_cum[f.organisation]) - self.fin_income_seen
        self.fin_income_seen += income
        floor = f.floor if not f.upfront else 0
        repay = min(self.fin_owed, int(round(income * f.share)), max(0, int(self.ledger.balance[P]) - floor))
        if repay > 0:
            post(t, P, self.P_INV, K["repayment"], repay, self.I_REPAY)
            self.fin_owed -= repay
            self.fin_repaid += repay

    def _costs(self, t: int):
        post = self.ledger.post
        for o, org in enumerate(self.orgs):
            if not self.alive(o):
                continue
            P = self.P_ORG[o]
            for g in range(len(self.pw.segments)):
                post(t, P, self.P_STAFF, K["delivery"], int(self.month_levels[o, g, FULL]) * org.cost_full, self.I_FULL, g)
                post(t, P, self.P_STAFF, K["delivery"], int(self.month_levels[o, g, MINIMAL]) * org.cost_minimal, self.I_MIN, g)
            post(t, P, self.P_STAFF, K["overhead"], org.overhead, self.I_OVER)
            if o > 0 and org.ffs_month:
                months = int(self.month_levels[o].sum())
                self._transfer(t + org.extra_lag, o, K["fee_for_service"], self.I_FFS_MONTH, None, months * org.ffs_month)
        self.month_levels[:] = 0

    def _interest(self, t: int, o: int):
        bal = int(self.ledger.balance[self.P_ORG[o]])
        rate = self.orgs[o].monthly_interest
        if bal < 0 and rate > 0:
            self.ledger.post(t, self.P_ORG[o], self.P_LENDER, K["interest"], int(round(-bal * rate)), self.I_INT)

    def _insolvent(self, o: int) -> bool:
        limit = self.orgs[o].credit_limit
        return limit is not None and self.ledger.balance[self.P_ORG[o]] < -limit

    def _fail(self, t: int, o: int):
        """Insolvency of organisation ``o`` at month end ``t``: the prime ends the contract; a sub's clients move or drop."""
        self.failed[o] = t
        a = self.admitted
        active = np.flatnonzero(~self.pw.absorbing[self.state[:a]])
        org = self.orgs[o]
        if t >= self.m.months:  # in the run-off after the contract end: recorded, but no client is served any more
            self.failures.append((o, t, 0, "after the contract end"))
            return
        if o == 0:
            self.contract_over = True
            mine, action = active, "contract_ended"
        else:
            mine = active[self.org[active] == o]
            target = org.transfer_to if org.transfer_to != o else 0
            action = org.on_failure if self.alive(target) else "drop"
        if action == "transfer":
            self.org[mine] = target
            self.paused_until[mine] = t + org.gap_months
            if org.restart_state is not None:
                restart = self.pw.index(org.restart_state)
                self.state[mine] = restart
                # not an entry (nothing is paid), but from now on the client has been in that state
                never = mine[self.first_month[mine, restart] < 0]
                self.first_month[never, restart] = t
                for k, rule in enumerate(self.sust_rules):  # first-entry lines over several states: not a first entry later
                    if rule.kind != "sustainment" and rule.in_states[restart]:
                        self.sust_count[mine, k] = rule.max_months
            action = f"transfer to {self.orgs[target].name}"
        else:
            dropped = self.pw.dropped
            self.state[mine] = dropped
            self.first_month[mine, dropped] = t
            self.end_month[mine] = t
        self.failures.append((o, t, len(mine), action))

    # -- invariants -------------------------------------------------------------------------------
    def _money(self, pence: int) -> str:
        return pence_exact(pence, self.m.scenario.currency)

    def _same(self, what: str, a_label: str, a: int, b_label: str, b: int):
        """Raise unless two money figures agree, showing both sides to the penny and the difference."""
        if a != b:
            raise InvariantError(f"replication {self.rep}: {what}: {a_label} {self._money(a)}, {b_label} {self._money(b)} "
                                 f"(difference {self._money(a - b)})")

    def _within(self, what: str, label: str, amount: int, limit_label: str, limit: int):
        """Raise if a money figure exceeds its limit, showing both to the penny and the excess."""
        if amount > limit:
            raise InvariantError(f"replication {self.rep}: {what}: {label} {self._money(amount)} exceeds {limit_label} "
                                 f"{self._money(limit)} (difference {self._money(amount - limit)})")

    def _check_invariants(self):
        """docs/model.md section 11: money and clients are conserved and every total agrees with the ledger."""
        led = self.ledger.arrays()
        amt, payer, payee = led["amount"], led["payer"], led["payee"]
        for o, org in enumerate(self.orgs):
            derived = cash_curve(led, self.P_ORG[o], org.opening_cash, self.m.horizon)
            if not np.array_equal(derived, self.cash[:, o]):
                bad = int(np.flatnonzero(derived != self.cash[:, o])[0])
                self._same(f"cash of {org.name} from the ledger differs from the engine's at month {bad}",
                           "from the ledger", int(derived[bad]), "engine", int(self.cash[bad, o]))
        n_parties = len(self.m.vocab.parties)
        net = np.bincount(payee, weights=amt, minlength=n_parties) - np.bincount(payer, weights=amt, minlength=n_parties)
        for p, name in enumerate(self.m.vocab.parties):
            self._same(f"balance of {name}", "opening plus ledger rows", int(self.ledger.opening[p]) + int(round(net[p])),
                       "running balance", int(self.ledger.balance[p]))
        self._same("money is not conserved across all parties", "balances", int(self.ledger.balance.sum()),
                   "opening balances", int(self.ledger.opening.sum()))
        n = self.admitted
        st = self.state[:n]
        if n and (st.min() < 0 or st.max() >= self.pw.n_states):
            raise InvariantError(f"replication {self.rep}: a referred client has no valid final state")
        if self.caseload[-1].sum() != n or self.referred.sum() != n:
            raise InvariantError(f"replication {self.rep}: {n} clients admitted, {int(self.caseload[-1].sum())} counted by state at "
                                 f"the end and {int(self.referred.sum())} counted as referred")
        ended = self.end_month[:n] >= 0
        if not np.array_equal(ended, self.pw.absorbing[st]):
            bad = int(np.flatnonzero(ended != self.pw.absorbing[st])[0])
            raise InvariantError(f"replication {self.rep}: end months disagree with final states (client {bad}: end month "
                                 f"{int(self.end_month[bad])}, final state {self.pw.states[st[bad]]})")
        claims = np.array(self.claims, dtype=np.int64).reshape(-1, 8)
        sett = np.array(self.settlements, dtype=np.int64).reshape(-1, 7)
        fee = int(self.c.fee_due[: self._fee_months()].sum())
        accepted = int((claims[:, 6] - claims[:, 7]).sum())
        due, paid = int(sett[:, 4].sum()), int(sett[:, 5].sum())
        self._same("claims are not all settled", "accepted claims plus service fee less clawbacks",
                   accepted + fee - self.clawback_due, "due in the settlements", due)
        if not np.array_equal(sett[:, 5] + sett[:, 6], sett[:, 4]):
            bad = int(np.flatnonzero(sett[:, 5] + sett[:, 6] != sett[:, 4])[0])
            self._same(f"settlement {bad} does not add up", "paid plus capped", int(sett[bad, 5] + sett[bad, 6]), "due", int(sett[bad, 4]))
        from_commissioner = int(amt[payer == self.P_COMM].sum())
        prime = self.P_ORG[0]
        clawed = int(amt[(payer == prime) & (payee == self.P_COMM)].sum())
        self._same("clawbacks", "in the ledger", clawed, "in the engine", self.clawed)
        self._same("commissioner payments", "paid in the settlements", paid,
                   "paid in the ledger net of clawbacks", from_commissioner - clawed)
        if self.c.cap is not None:
            self._within("the cap", "net paid", paid, "the cap", self.c.cap)
            self._same("the cap", "net paid", paid, "the lesser of the cap and what was due", min(self.c.cap, due))
        else:
            self._same("no cap, yet money was withheld", "net paid", paid, "due", due)
        # the chain: what the commissioner pays is what the prime keeps plus what it passed down
        to_subs = int(amt[(payer == prime) & np.isin(payee, self.P_ORG[1:])].sum())
        self._same("payments down the chain", "prime paid subcontractors", to_subs, "prime owed them", self.scheduled_transfers)
        if self.person_paid is not None:
            worst = int(self.person_paid.max(initial=0))
            self._within("the per-person cap", "most paid for one client", worst, "the per-person cap", self.c.per_person_cap)
            lines = np.isin(claims[:, 1], self.rule_item)
            self._same("per-person totals", "clients' accepted payments", int(self.person_paid.sum()),
                       "accepted claims on payment lines", int((claims[lines, 6] - claims[lines, 7]).sum()))
        if self.fin is not None:
            inv = self.P_INV
            drawn = int(amt[payer == inv].sum())
            repaid = int(amt[payee == inv].sum())
            self._same("investor drawdowns", "in the ledger", drawn, "in the engine", self.fin_drawn)
            self._same("investor repayments", "in the ledger", repaid, "in the engine", self.fin_repaid)
            self._within("investor drawdowns", "drawn", drawn, "the commitment", self.fin.commitment)
        into_prime = int(amt[(payee == prime) & (payer == self.P_COMM)].sum())
        self._same("commissioner payments did not all reach the prime", "reached the prime", into_prime,
                   "paid by the commissioner", from_commissioner)

    def _fee_months(self) -> int:
        return self.m.months if self.alive(0) else int(self.failed[0]) + 1


def _sum_by(cell: np.ndarray, amount: np.ndarray, size: int) -> np.ndarray:
    """Sum of integer pence ``amount`` per ``cell``. A weighted bincount sums in float64, which is exact for
    integers below 2**53 pence (£90 trillion), so rounding back to int64 loses nothing."""
    return np.rint(np.bincount(cell, weights=amount, minlength=size)).astype(np.int64)


def run_replication(model: Model, seed: int, replication: int) -> Replication:
    """Simulate one replication; conservation checks run before it returns."""
    return _Run(model, seed, replication).run()


