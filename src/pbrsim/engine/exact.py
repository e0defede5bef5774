"""Exact mode: expected outcomes, payments and costs by absorbing-Markov-chain algebra.

Exact when every client's path is an independent Markov chain: the holistic policy, capacity
that never binds, a cap that cannot be reached and a provider that cannot fail. ``check_exact``
says which of these a scenario breaks; ``expected`` refuses such scenarios.

First-entry payments use the chain augmented with a 'visited' flag; sustainment payments the
chain augmented with a payment counter (0..max_months). Forced exit at the programme limit and the
end of the contract are applied exactly as in the engine (docs/model.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.contract import Rule
from .run import Model, compile_model
from ..model.pathway import FULL, MINIMAL
from .referrals import expected_counts
from ..scenario.schema import Scenario


class ExactNotApplicable(ValueError):
    """The scenario has behaviour that the Markov-chain algebra cannot represent exactly."""


def _max_active(model: Model, counts: np.ndarray) -> int:
    """Most clients that can be in service in one month with deterministic referrals."""
    per_month = counts.sum(axis=1)
    pw = model.pathway
    M = pw.max_months if pw.max_months and not (pw.exit_applies ^ ~pw.absorbing).any() else model.months
    return int(max(per_month[max(0, t - M + 1): t + 1].sum() for t in range(model.months)))


def check_exact(model: Model) -> list[str]:
    """Reasons exact mode does not apply (empty when it does)."""
    sc, c = model.scenario, model.contract
    reasons = []
    fixed = sc.referrals.distribution == "fixed"
    counts = expected_counts(sc)
    max_active = _max_active(model, counts) if fixed else None
    if model.allocation.performance:
        reasons.append("supply_chain.allocation is performance-based: shares depend on results so far")
    for o in model.organisations:
        where = "provider" if sc.provider is not None else f"organisation {o.name!r}"
        if o.policy.name != "holistic":
            reasons.append(f"{where}: policy {o.policy.name!r} is not a fixed Markov chain (only holistic is)")
        if o.guaranteed:
            reasons.append(f"{where}: guaranteed referrals make allocation depend on other clients")
        if o.capacity is not None and (not fixed or max_active > o.capacity):
            reasons.append(f"{where}: capacity could bind (set it to null, or use fixed referrals that never exceed it)")
        if o.credit_limit is not None or o.monthly_interest > 0:
            worst = None
            if fixed:
                worst_cost = o.overhead * model.months + max(o.cost_full, o.cost_minimal) * max_active * model.months
                worst = o.opening_cash - worst_cost
            if not (o.credit_limit is None or (worst is not None and worst >= -o.credit_limit)):
                reasons.append(f"{where}: could become insolvent (set credit.limit to null for unlimited credit)")
            if not (o.monthly_interest == 0 or (worst is not None and worst >= 0)):
                reasons.append(f"{where}: overdraft interest depends on the cash path (set credit.monthly_interest to 0)")
    if c.per_person_cap is not None:
        most = sum(int(_max_tariff(r).max()) * (r.max_months if r.is_sustainment else 1) for r in c.rules)
        if most > c.per_person_cap:
            reasons.append("contract.per_person_cap could bind: what one client earns then depends on its whole path")
    if c.cohorts:
        reasons.append("contract.cohort_payments depend on a whole cohort's results passing a threshold (not linear in clients)")
    if c.volume_band is not None:
        reasons.append("contract.service_fee.volume_band reconciles against the drawn referral volumes (a threshold on a count)")
    if model.finance is not None:
        reasons.append("finance: drawdowns and repayments depend on the cash path")
    if c.cap is not None:
        if not fixed:
            reasons.append("contract.cap could be reached with Poisson referrals (remove the cap or use fixed referrals)")
        else:
            n = counts.sum(axis=0)
            most = int(c.fee_due.sum()) + sum(
                int((n * _max_tariff(r)).sum()) * (r.max_months if r.is_sustainment else 1) for r in c.rules
            )
            if most > c.cap:
                reasons.append("contract.cap could be reached (the most payable exceeds it)")
    return reasons


@dataclass
class ExactResult:
    model: Model
    segments: pd.DataFrame  # expected referrals, outcomes, milestones and rates by segment
    payments: pd.DataFrame  # expected ledger of payments: month, payer, payee, kind, item, segment, amount (pounds)
    costs: pd.DataFrame  # expected costs by month and organisation (pounds)
    caseload: pd.DataFrame  # expected clients by month and state at month end

    @property
    def commissioner_payments(self) -> pd.DataFrame:
        return self.payments[self.payments.payer == self.model.contract.commissioner]

    @property
    def paid_by_kind(self) -> pd.Series:
        return self.commissioner_payments.groupby("kind")["amount"].sum()

    def income(self, organisation: str) -> float:
        return float(self.payments.loc[self.payments.payee == organisation, "amount"].sum())

    def summary(self) -> dict:
        tot = self.segments.set_index("segment")
        paid = float(self.commissioner_payments["amount"].sum())
        outcomes = float(tot.loc["all", "outcomes"]) if "outcomes" in tot else None
        orgs = []
        for o in self.model.organisations:
            c = self.costs[self.costs.organisation == o.name]
            out_to_orgs = float(self.payments.loc[self.payments.payer == o.name, "amount"].sum())
            orgs.append({"organisation": o.name, "role": o.role, "income": self.income(o.name),
                         "costs": float(c[["delivery", "overhead"]].sum().sum()) + out_to_orgs})
        return {
            "scenario": self.model.scenario.name,
            "method": "exact",
            "primary_outcome": self.model.pathway.states[c.primary_outcome] if (c := self.model.contract).primary_outcome >= 0 else None,
            "milestone_state": self.model.pathway.states[c.milestone] if c.milestone >= 0 else None,
            "segments": self.segments.to_dict(orient="records"),
            "commissioner": {
                "paid_by_kind": {k: float(v) for k, v in self.paid_by_kind.items()},
                "paid_total": paid,
                "cost_per_outcome": paid / outcomes if outcomes else None,
            },
            "organisations": orgs,
        }


def _effective_matrix(model: Model, g: int) -> np.ndarray:
    """Each state's row under holistic, non-binding capacity: full in service states, minimal elsewhere."""
    pw = model.pathway
    return np.where(pw.service[:, None], pw.P[g, FULL], pw.P[g, MINIMAL])


def _class_chains(model: Model, g: int) -> list[tuple[float, np.ndarray]]:
    """(share, effective matrix) of each latent class of segment ``g``: a client's path is a mixture of these
    chains, so every expected count is the share-weighted sum over classes. One chain without latent classes."""
    pw = model.pathway
    if pw.K == 1:
        return [(1.0, _effective_matrix(model, g))]
    return [(w, np.where(pw.service[:, None], P[FULL], P[MINIMAL])) for w, P in pw.class_matrices(g)]


def _mixture(chains: list[tuple[float, np.ndarray]], f) -> np.ndarray:
    """Share-weighted sum of ``f(M)`` over the class chains (exactly ``f(M)`` for a single chain)."""
    if len(chains) == 1:
        return f(chains[0][1])
    return sum(w * f(M) for w, M in chains)


def _step_matrix(model: Model, M: np.ndarray, k: int) -> np.ndarray:
    """Transition k of a client's stay (k = 1, 2, ...), with forced exit folded in from the programme limit on:
    a move into a state that forced exit applies to goes to the exit state instead."""
    pw = model.pathway
    if pw.max_months is None or k < pw.max_months:
        return M
    Mk = M.copy()
    rows = np.flatnonzero(~pw.absorbing)
    cols = np.flatnonzero(pw.exit_applies)
    Mk[np.ix_(rows, [pw.exit_state])] += M[np.ix_(rows, cols)].sum(axis=1, keepdims=True)
    Mk[np.ix_(rows, cols)] = 0.0
    return Mk


def _trigger_probabilities(model: Model, M: np.ndarray, rule: Rule, K: int) -> np.ndarray:
    """P(rule triggers at age k) for k = 0..K, for one client of one segment (age 0 = referral month).

    With ``requires`` the chain also carries whether the required line has triggered (axis ``f``); a
    trigger counts only if it had in an earlier step, and the required claim's acceptance, independent
    of the path, multiplies in (``expected``)."""
    pw = model.pathway
    S = pw.n_states
    transient = ~pw.absorbing
    out = np.zeros(K + 1)
    req = model.contract.rules[rule.requires] if rule.requires >= 0 else None
    F = 2 if req is not None else 1
    paid_f = F - 1  # the flag value whose triggers count: 1 with a requirement, the only value 0 without

    def mark_required(y: np.ndarray) -> None:
        """Move mass now in a state that triggers the required line to flag 1 (that trigger is then behind it)."""
        if req is None:
            return
        where = np.zeros(S, dtype=bool)
        if req.is_sustainment:
            where |= req.in_states
        else:
            where[req.state] = True
        y[where, 1] += y[where, 0]
        y[where, 0] = 0.0

    if not rule.is_sustainment:
        target = rule.state
        if target == pw.initial:
            out[0] = 1.0  # paid at referral (never with a requirement: validation forbids it)
            return out
        x = np.zeros((S, F, 2))  # [state, required flag, visited]
        x[pw.initial, 0, 0] = 1.0
        mark_required(x)
        for k in range(1, K + 1):
            Mk = _step_matrix(model, M, k)
            moving = x * transient[:, None, None]
            staying = x * ~transient[:, None, None]
            y = (Mk.T @ moving.reshape(S, -1)).reshape(moving.shape)
            not_self = moving[:, :, 0].copy()
            not_self[target] = 0.0
            entering = not_self.T @ Mk[:, target]  # [F]: first entries into target this step
            out[k] = entering[paid_f]
            y_target_from_self = moving[target, :, 0] * Mk[target, target]
            newly = y[target, :, 0] - y_target_from_self
            y[target, :, 1] += newly
            y[target, :, 0] = y_target_from_self
            x = y + staying
            mark_required(x)
        return out
    N = rule.max_months
    if rule.pays_at_referral and rule.in_states[pw.initial]:
        out[0] = 1.0  # first entry into a set of states holding the initial state: paid at referral, once
        return out
    x = np.zeros((S, F, N + 1))  # [state, required flag, payments so far]
    x[pw.initial, 0, 0] = 1.0
    mark_required(x)
    A = rule.in_states
    # which flag values use up a payment: every value for a first entry into a set (used up even if not paid),
    # only the paid value for sustainment (a month counts once the requirement is met)
    counts = range(F) if rule.kind != "sustainment" else [paid_f]
    for k in range(1, K + 1):
        Mk = _step_matrix(model, M, k)
        moving = x * transient[:, None, None]
        staying = x * ~transient[:, None, None]
        y = (Mk.T @ moving.reshape(S, -1)).reshape(moving.shape)
        out[k] = y[A, paid_f, :N].sum()  # clients that moved (or stayed) into a paid state with payments left
        for f in counts:
            yA = y[A, f]
            shifted = np.zeros_like(yA)
            shifted[:, 1:] = yA[:, :N]
            shifted[:, N] += yA[:, N]
            y[A, f] = shifted
        x = y + staying
        mark_required(x)
    return out


def _occupancy(model: Model, M: np.ndarray, K: int) -> np.ndarray:
    """Distribution over states at ages 0..K (after k transitions), with forced exit."""
    pw = model.pathway
    pi = np.zeros((K + 1, pw.n_states))
    pi[0, pw.initial] = 1.0
    for k in range(1, K + 1):
        pi[k] = pi[k - 1] @ _step_matrix(model, M, k)
    return pi


def expected(scenario: Scenario | Model) -> ExactResult:
    """Expected values of a scenario by Markov-chain algebra; raises ExactNotApplicable when not exact."""
    model = scenario if isinstance(scenario, Model) else compile_model(scenario)
    reasons = check_exact(model)
    if reasons:
        raise ExactNotApplicable("exact mode does not apply to this scenario: " + "; ".join(reasons))
    pw, c, orgs = model.pathway, model.contract, model.organisations
    T, H = model.months, model.horizon
    counts = expected_counts(model.scenario)  # [T, G]
    alloc = model.allocation.shares  # [G, O]: each client's organisation, independent of everything else
    S = pw.n_states
    comm, prime = c.commissioner, orgs[0].name
    seg_rows, pay_rows = [], []
    service_months = np.zeros((H, len(orgs)))  # expected client-months in service
    starts = np.zeros((H, len(orgs)))
    caseload = np.zeros((H, S))
    in_service = (pw.service & ~pw.absorbing).astype(float)

    def pay(month, kind, item, seg, amount, g_alloc):
        """Commissioner pays the prime; each subcontractor gets its pass-through share after its extra lag."""
        pay_rows.append((month, comm, prime, kind, item, seg, amount))
        for o in orgs[1:]:
            share = o.income_share.get(kind, 0.0) * g_alloc[o.index]
            if share:
                pay_rows.append((month + o.extra_lag, prime, o.name, kind, item, seg, amount * share))

    for g, seg in enumerate(pw.segments):
        chains = _class_chains(model, g)
        n_r = counts[:, g]
        pi = _mixture(chains, lambda M: _occupancy(model, M, T))
        for r in range(T):
            if n_r[r] == 0:
                continue
            ages = np.arange(0, T - r)
            service_months[r + ages] += n_r[r] * (pi[ages] @ in_service)[:, None] * alloc[g][None, :]
            starts[r] += n_r[r] * alloc[g]
            caseload[r + ages] += n_r[r] * pi[ages + 1]
            caseload[T:, :] += n_r[r] * pi[T - r]  # states freeze at the contract end
        for rule in c.rules:
            if rule.class_tariff is None:
                parts = [(_mixture(chains, lambda M: _trigger_probabilities(model, M, rule, T)), None)]
            else:  # prices by latent class: each class's triggers at its own price
                ks = [k for k in range(pw.K) if pw.class_share[g, k] > 0]
                parts = [(w * _trigger_probabilities(model, M, rule, T), float(rule.class_tariff[g * pw.K + k]))
                         for (w, M), k in zip(chains, ks)]
            # a trigger at age k happens in month r + k - 1 (k >= 1), or r at referral (k = 0)
            due = np.zeros(T)  # expected pence triggered in each month (tariffs may change by year)
            for p, price in parts:
                for r in range(T):
                    if n_r[r] == 0:
                        continue
                    k = np.arange(0, T - r + 1)
                    months = np.where(k == 0, r, r + k - 1)
                    ok = months < T
                    amounts = rule.amounts(g, months[ok], r) if price is None else price
                    np.add.at(due, months[ok], n_r[r] * p[k][ok] * amounts)
            accepted = 1 - rule.rejection
            if rule.requires >= 0:  # the required claim's rejection draw is independent of the path and of this claim's
                accepted *= 1 - c.rules[rule.requires].rejection
            amount = due * accepted / 100.0
            for t in np.flatnonzero(amount):
                pay(t + rule.lag, rule.kind, rule.name, seg, amount[t], alloc[g])
        row = {"segment": seg, "referrals": n_r.sum()}
        for label, state in (("outcomes", c.primary_outcome), ("milestones", c.milestone)):
            if state >= 0:
                first = _mixture(chains, lambda M: _trigger_probabilities(model, M, _first_entry_rule(state, len(pw.segments)), T))
                row[label] = sum(n_r[r] * first[: T - r + 1].sum() for r in range(T))
        seg_rows.append(row)
    whole = np.ones(len(orgs))
    for t in np.flatnonzero(c.fee_due):
        pay(t + c.fee_lag, "service_fee", "service_fee", None, c.fee_due[t] / 100.0, whole)
    cost_rows = []
    for o in orgs:
        delivery = service_months[:, o.index] * o.cost_full / 100.0
        overhead = np.where(np.arange(H) < T, o.overhead / 100.0, 0.0)
        cost_rows.append(pd.DataFrame({"month": np.arange(H), "organisation": o.name, "delivery": delivery, "overhead": overhead}))
        for t in range(T):
            for item, fee in (("ffs_start", starts[t, o.index] * o.ffs_start), ("ffs_month", service_months[t, o.index] * o.ffs_month)):
                if o.index and fee:
                    pay_rows.append((t + o.extra_lag, prime, o.name, "fee_for_service", item, None, fee / 100.0))
    segments = pd.DataFrame(seg_rows)
    total = segments.drop(columns="segment").sum()
    segments = pd.concat([segments, pd.DataFrame([{"segment": "all", **total.to_dict()}])], ignore_index=True)
    for label, rate in (("outcomes", "outcome_rate"), ("milestones", "milestone_rate")):
        if label in segments:
            segments[rate] = segments[label] / segments["referrals"]
    cols = ["month", "payer", "payee", "kind", "item", "segment", "amount"]
    payments = pd.DataFrame(pay_rows, columns=cols)
    payments = payments.groupby(cols[:-1], dropna=False, as_index=False)["amount"].sum()
    cl = pd.DataFrame(caseload, columns=[f"n_{s}" for s in pw.states])
    cl.insert(0, "month", np.arange(H))
    return ExactResult(model=model, segments=segments, payments=payments, costs=pd.concat(cost_rows, ignore_index=True), caseload=cl)


def _max_tariff(rule: Rule) -> np.ndarray:
    """Highest tariff per segment over the years or latent classes (pence)."""
    if rule.class_tariff is not None:
        return np.maximum(rule.tariff, rule.class_tariff.reshape(len(rule.tariff), -1).max(axis=1))
    return rule.tariff if rule.tariff_years is None else rule.tariff_years.max(axis=0)


def _first_entry_rule(state: int, G: int) -> Rule:
    """A zero-tariff first-entry rule, to reuse the trigger algebra for outcome and milestone counts."""
    return Rule(index=-1, name="", kind="outcome", state=state, in_states=np.zeros(0, dtype=bool),
                max_months=0, tariff=np.zeros(G, dtype=np.int64), lag=0, rejection=0.0)


def _first_entry_into_set(model: Model, M: np.ndarray, states: np.ndarray, K: int) -> np.ndarray:
    """P(first entry into any of ``states`` at age k), k = 0..K, for one client of one segment (age 0 = referral)."""
    pw = model.pathway
    out = np.zeros(K + 1)
    inside = np.zeros(pw.n_states, dtype=bool)
    inside[states] = True
    if inside[pw.initial]:
        out[0] = 1.0
        return out
    transient = ~pw.absorbing
    x = np.zeros((pw.n_states, 2))  # [state, entered yet]; mass not yet entered is always outside the set
    x[pw.initial, 0] = 1.0
    for k in range(1, K + 1):
        Mk = _step_matrix(model, M, k)
        y = Mk.T @ (x * transient[:, None])
        out[k] = y[inside, 0].sum()
        y[inside, 1] += y[inside, 0]
        y[inside, 0] = 0.0
        x = y + x * ~transient[:, None]
    return out


def expected_first_entries(model: Model, sets: list[np.ndarray]) -> list[np.ndarray]:
    """Expected clients whose first entry into each state set falls in each contract month, ``[T, G]`` per set
    (the month of an entry at age k >= 1 is referral month + k - 1, as in the engine). Exact under the
    conditions ``check_exact`` tests."""
    T, G = model.months, len(model.pathway.segments)
    counts = expected_counts(model.scenario)
    out = [np.zeros((T, G)) for _ in sets]
    for g in range(G):
        chains = _class_chains(model, g)
        probs = [_mixture(chains, lambda M: _first_entry_into_set(model, M, np.asarray(s), T)) for s in sets]
        for r in range(T):
            n = counts[r, g]
            if n == 0:
                continue
            k = np.arange(0, T - r + 1)
            months = np.where(k == 0, r, r + k - 1)
            ok = months < T
            for E, p in zip(out, probs):
                np.add.at(E[:, g], months[ok], n * p[k][ok])
    return out
