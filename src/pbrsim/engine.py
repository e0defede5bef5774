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
import pandas as pd
import simpy

from . import rng
from .behaviour import Review, get_policy
from .contract import Contract, Rule, compile_contract
from .ledger import KINDS, LENDER, STAFF_AND_SUPPLIERS, Ledger, Vocabulary, cash_curve, flows
from .organisation import Organisation, compile_provider
from .pathway import FULL, MINIMAL, Pathway, compile_pathway, step
from .referrals import draw_counts
from .scenario import Scenario

SETTLE_PHASE = 0.5
COST_PHASE = 0.6
MONTH_END_PHASE = 0.9
PAYMENT_KINDS = ("service_fee", "attachment", "milestone", "outcome", "sustainment")
COST_KINDS = ("delivery", "overhead", "interest")
DELIVERY_ITEMS = ("delivery_full", "delivery_minimal")
K = {k: i for i, k in enumerate(KINDS)}


class InvariantError(RuntimeError):
    """A conservation check failed: a bug, never a user error."""


@dataclass(frozen=True)
class Model:
    """A scenario compiled for the engine."""

    scenario: Scenario
    pathway: Pathway
    contract: Contract
    provider: Organisation
    vocab: Vocabulary

    @property
    def months(self) -> int:
        return self.scenario.months

    @property
    def horizon(self) -> int:
        """Months recorded: the contract plus the longest payment lag (late settlements)."""
        return self.months + self.contract.max_lag


def compile_model(sc: Scenario) -> Model:
    pw = compile_pathway(sc)
    contract = compile_contract(sc, pw)
    provider = compile_provider(sc)
    vocab = Vocabulary(
        parties=(contract.commissioner, provider.name, STAFF_AND_SUPPLIERS, LENDER),
        items=("service_fee",) + tuple(r.name for r in contract.rules) + DELIVERY_ITEMS + ("overhead", "interest"),
        segments=pw.segments,
    )
    return Model(scenario=sc, pathway=pw, contract=contract, provider=provider, vocab=vocab)


@dataclass
class Replication:
    """Raw arrays and rows from one replication; ``to_frames`` turns them into tidy tables."""

    replication: int
    segment: np.ndarray
    ref_month: np.ndarray
    state: np.ndarray
    first_month: np.ndarray
    months_full: np.ndarray
    months_minimal: np.ndarray
    end_month: np.ndarray
    ledger: Ledger
    cash: np.ndarray  # month-end cash of the provider [H]
    caseload: np.ndarray  # clients by state at month end [H, S]
    level_counts: np.ndarray  # client-months at full / minimal [H, 2]
    referred: np.ndarray  # clients admitted per month [H]
    claims: list = field(default_factory=list)
    settlements: list = field(default_factory=list)
    failure_month: int = -1
    client_months: int = 0


class _Run:
    """State and SimPy processes for one replication of one organisation's contract."""

    def __init__(self, model: Model, seed: int, replication: int):
        self.m = model
        self.seed = seed
        self.rep = replication
        self.pw = model.pathway
        self.c = model.contract
        self.org = model.provider
        self.policy = get_policy(self.org.policy)
        T, H, S = model.months, model.horizon, self.pw.n_states
        G = len(self.pw.segments)
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
        self.state = np.full(n, -1, dtype=np.int16)
        self.first_month = np.full((n, S), -1, dtype=np.int16)
        self.months_full = np.zeros(n, dtype=np.int16)
        self.months_minimal = np.zeros(n, dtype=np.int16)
        self.end_month = np.full(n, -1, dtype=np.int16)
        self.sust_rules = self.c.sustainment_rules
        self.sust_count = np.zeros((n, len(self.sust_rules)), dtype=np.int16)
        self.admitted = 0  # clients 0..admitted-1 are on the caseload
        v = model.vocab
        self.P_COMM, self.P_ORG = v.party(self.c.commissioner), v.party(self.org.name)
        self.P_STAFF, self.P_LENDER = v.party(STAFF_AND_SUPPLIERS), v.party(LENDER)
        self.I_FEE, self.I_FULL, self.I_MIN = v.item("service_fee"), v.item("delivery_full"), v.item("delivery_minimal")
        self.I_OVER, self.I_INT = v.item("overhead"), v.item("interest")
        self.rule_item = [v.item(r.name) for r in self.c.rules]
        self.ledger = Ledger(v, {self.P_ORG: self.org.opening_cash})
        self.cash = np.zeros(H, dtype=np.int64)
        self.caseload = np.zeros((H, S), dtype=np.int64)
        self.level_counts = np.zeros((H, 2), dtype=np.int64)
        self.referred = np.zeros(H, dtype=np.int64)
        self.month_levels = np.zeros((G, 2), dtype=np.int64)  # this month's client-months by segment × level
        self.paid_total = 0
        self.failure_month = -1
        self.claims: list[tuple] = []
        self.settlements: list[tuple] = []
        self.client_months = 0

    # -- SimPy processes -----------------------------------------------------------------------
    def run(self) -> Replication:
        env = simpy.Environment()
        self.env = env
        for t in np.flatnonzero(self.c.fee_due):
            env.process(self._fee_instalment(int(t)))
        env.process(self._monthly_cycle())
        env.process(self._month_end())
        env.run(until=self.m.horizon)
        self._check_invariants()
        return Replication(
            replication=self.rep,
            segment=self.seg[: self.admitted],
            ref_month=self.ref_month[: self.admitted],
            state=self.state[: self.admitted],
            first_month=self.first_month[: self.admitted],
            months_full=self.months_full[: self.admitted],
            months_minimal=self.months_minimal[: self.admitted],
            end_month=self.end_month[: self.admitted],
            ledger=self.ledger,
            cash=self.cash,
            caseload=self.caseload,
            level_counts=self.level_counts,
            referred=self.referred,
            claims=self.claims,
            settlements=self.settlements,
            failure_month=self.failure_month,
            client_months=self.client_months,
        )

    def _monthly_cycle(self):
        for t in range(self.m.months):
            if self.failure_month < 0:
                self._refer(t)
                active = np.flatnonzero(~self.pw.absorbing[self.state[: self.admitted]])
                level = self._review(t, active)
                self._transition(t, active, level)
            yield self.env.timeout(COST_PHASE)
            if self.failure_month < 0:
                self._costs(t)
            yield self.env.timeout(1 - COST_PHASE)

    def _month_end(self):
        yield self.env.timeout(MONTH_END_PHASE)
        for t in range(self.m.horizon):
            self._interest(t)
            if self.failure_month < 0 and self._insolvent():
                self._fail(t)
            self.cash[t] = self.ledger.balance[self.P_ORG]
            if self.admitted:
                self.caseload[t] = np.bincount(self.state[: self.admitted], minlength=self.pw.n_states)
            yield self.env.timeout(1)

    def _settle(self, due: int, rule: Rule, amounts: np.ndarray):
        yield self.env.timeout(due + SETTLE_PHASE - self.env.now)
        for g in np.flatnonzero(amounts):
            self._pay(due, K[rule.kind], self.rule_item[rule.index], int(g), int(amounts[g]))

    def _fee_instalment(self, t: int):
        due = t + self.c.fee_lag
        yield self.env.timeout(due + SETTLE_PHASE)
        if self.failure_month >= 0 and t > self.failure_month:
            return  # contract terminated: no fee for months after the provider failed
        self._pay(due, K["service_fee"], self.I_FEE, None, int(self.c.fee_due[t]))

    # -- steps ----------------------------------------------------------------------------------
    def _pay(self, month: int, kind: int, item: int, segment: int | None, amount: int):
        """Commissioner pays a settled claim, up to what is left under the cap."""
        paid = amount
        if self.c.cap is not None:
            paid = max(0, min(amount, self.c.cap - self.paid_total))
        self.paid_total += paid
        self.ledger.post(month, self.P_COMM, self.P_ORG, kind, paid, item, segment)
        seg_code = len(self.pw.segments) if segment is None else segment
        self.settlements.append((month, item, seg_code, amount, paid, amount - paid))

    def _refer(self, t: int):
        lo, hi = int(self.month_start[t]), int(self.month_start[t + 1])
        self.admitted = hi
        self.referred[t] = hi - lo
        if hi == lo:
            return
        init = self.pw.initial
        self.state[lo:hi] = init
        self.first_month[lo:hi, init] = t
        for rule in self.c.rules:
            if not rule.is_sustainment and rule.state == init:
                self._claim(t, rule, np.arange(lo, hi), phase=0)

    def _review(self, t: int, active: np.ndarray) -> np.ndarray:
        """Service level of each active client this month, from the allocation policy."""
        level = np.full(len(active), MINIMAL, dtype=np.int8)
        in_service = self.pw.service[self.state[active]]
        cand = active[in_service]
        review = Review(
            month=t,
            candidates=cand,
            segment=self.seg[cand],
            state=self.state[cand],
            ref_month=self.ref_month[cand],
            capacity=self.org.capacity,
            cash=int(self.ledger.balance[self.P_ORG]),
        )
        full = np.asarray(self.policy(review), dtype=bool)
        if self.org.capacity is not None and full.sum() > self.org.capacity:
            raise InvariantError(f"policy {self.org.policy!r} gave {full.sum()} full places, capacity {self.org.capacity}")
        svc_level = np.where(full, FULL, MINIMAL).astype(np.int8)
        level[in_service] = svc_level
        self.months_full[cand[full]] += 1
        self.months_minimal[cand[~full]] += 1
        G = len(self.pw.segments)
        self.month_levels[:, FULL] = np.bincount(self.seg[cand[full]], minlength=G)
        self.month_levels[:, MINIMAL] = np.bincount(self.seg[cand[~full]], minlength=G)
        self.level_counts[t] = self.month_levels.sum(axis=0)
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
            forced = (age >= self.pw.max_months) & ~self.pw.absorbing[new]
            new[forced] = self.pw.exit_state
        entered = new != old
        first = entered & (self.first_month[active, new] < 0)
        self.first_month[active[first], new[first]] = t
        absorbed = entered & self.pw.absorbing[new]
        self.end_month[active[absorbed]] = t
        self.state[active] = new
        for rule in self.c.rules:
            if rule.is_sustainment:
                continue
            hit = first & (new == rule.state)
            if hit.any():
                self._claim(t, rule, active[hit], phase=1)
        for k, rule in enumerate(self.sust_rules):
            ok = rule.in_states[new] & (self.sust_count[active, k] < rule.max_months)
            if ok.any():
                idx = active[ok]
                self.sust_count[idx, k] += 1
                self._claim(t, rule, idx, phase=1)

    def _claim(self, t: int, rule: Rule, idx: np.ndarray, phase: int):
        """Claims for clients ``idx`` under ``rule``; accepted ones settle ``rule.lag`` months later."""
        G = len(self.pw.segments)
        seg = self.seg[idx]
        if rule.rejection > 0:
            u = rng.uniforms_at(self.seed, self.rep, rng.REJECTIONS, t, idx, rule.index, phase)
            rejected = u < rule.rejection
        else:
            rejected = np.zeros(len(idx), dtype=bool)
        n_claimed = np.bincount(seg, minlength=G)
        n_rejected = np.bincount(seg[rejected], minlength=G)
        accepted = (n_claimed - n_rejected).astype(np.int64) * rule.tariff
        for g in np.flatnonzero(n_claimed):
            self.claims.append(
                (t, self.rule_item[rule.index], int(g), int(n_claimed[g]), int(n_rejected[g]),
                 int(n_claimed[g] * rule.tariff[g]), int(n_rejected[g] * rule.tariff[g]))
            )
        if accepted.any():
            self.env.process(self._settle(t + rule.lag, rule, accepted))

    def _costs(self, t: int):
        org, post = self.org, self.ledger.post
        for g in range(len(self.pw.segments)):
            post(t, self.P_ORG, self.P_STAFF, K["delivery"], int(self.month_levels[g, FULL]) * org.cost_full, self.I_FULL, g)
            post(t, self.P_ORG, self.P_STAFF, K["delivery"], int(self.month_levels[g, MINIMAL]) * org.cost_minimal, self.I_MIN, g)
        self.month_levels[:] = 0
        post(t, self.P_ORG, self.P_STAFF, K["overhead"], org.overhead, self.I_OVER)

    def _interest(self, t: int):
        bal = int(self.ledger.balance[self.P_ORG])
        if bal < 0 and self.org.monthly_interest > 0:
            self.ledger.post(t, self.P_ORG, self.P_LENDER, K["interest"], int(round(-bal * self.org.monthly_interest)), self.I_INT)

    def _insolvent(self) -> bool:
        if self.org.credit_limit is None:
            return False
        return self.ledger.balance[self.P_ORG] < -self.org.credit_limit

    def _fail(self, t: int):
        """Insolvency: the provider stops taking referrals and its active clients leave as dropped."""
        self.failure_month = t
        active = np.flatnonzero(~self.pw.absorbing[self.state[: self.admitted]])
        dropped = self.pw.dropped
        self.state[active] = dropped
        self.first_month[active, dropped] = t
        self.end_month[active] = t

    # -- invariants -------------------------------------------------------------------------------
    def _check_invariants(self):
        led = self.ledger.arrays()
        derived = cash_curve(led, self.P_ORG, self.org.opening_cash, self.m.horizon)
        if not np.array_equal(derived, self.cash):
            bad = int(np.flatnonzero(derived != self.cash)[0])
            raise InvariantError(f"replication {self.rep}: cash from the ledger differs from the engine's at month {bad}")
        if self.ledger.balance.sum() != self.ledger.opening.sum():
            raise InvariantError(f"replication {self.rep}: ledger balances do not net to the opening balances")
        n = self.admitted
        st = self.state[:n]
        if n and (st.min() < 0 or st.max() >= self.pw.n_states):
            raise InvariantError(f"replication {self.rep}: a referred client has no valid final state")
        if self.caseload[-1].sum() != n or self.referred.sum() != n:
            raise InvariantError(f"replication {self.rep}: {n} clients referred but {self.caseload[-1].sum()} accounted for at the end")
        ended = self.end_month[:n] >= 0
        if not np.array_equal(ended, self.pw.absorbing[st]):
            raise InvariantError(f"replication {self.rep}: end months disagree with final states")
        claimed = sum(c[5] - c[6] for c in self.claims) + int(self.c.fee_due[: self._fee_months()].sum())
        settled = sum(s[3] for s in self.settlements)
        if claimed != settled:
            raise InvariantError(f"replication {self.rep}: accepted claims {claimed} != settled {settled}")
        paid = sum(s[4] for s in self.settlements)
        from_commissioner = int(led["amount"][led["payer"] == self.P_COMM].sum())
        if paid != from_commissioner or (self.c.cap is not None and paid > self.c.cap):
            raise InvariantError(f"replication {self.rep}: commissioner paid {from_commissioner}, settlements say {paid}")

    def _fee_months(self) -> int:
        return self.m.months if self.failure_month < 0 else self.failure_month + 1


def run_replication(model: Model, seed: int, replication: int) -> Replication:
    """Simulate one replication; conservation checks run before it returns."""
    return _Run(model, seed, replication).run()


