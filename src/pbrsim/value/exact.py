"""Exact expected public value: the same value flows computed from the chain algebra's expected occupancy
and first entries (``engine.exact``) for the programme and the counterfactual.

Value flows are linear in occupancy and entry counts, so the expected present values here are exactly
the means that Monte Carlo estimates (tests check they agree within a few standard errors). The payback
month reported is that of the expected flows, not the expected payback month.
"""

from __future__ import annotations

import numpy as np

from ..engine.exact import expected, expected_first_entries
from ..engine.run import Model
from .appraisal import appraiser
from .flows import figures, line_flows


def _expected_counts(model: Model, sets: list[np.ndarray]):
    ex = expected(model)
    T = model.months
    occ = ex.caseload[[f"n_{s}" for s in model.pathway.states]].to_numpy(dtype=float)[:T][None]
    entries = [E[None] for E in expected_first_entries(model, sets)]
    return ex, occ, entries


def expected_value(model: Model) -> dict[str, float]:
    """Expected appraisal figures (the per-replication figures' expectations) by Markov-chain algebra.

    Raises ``engine.exact.ExactNotApplicable`` when the programme is not an exact chain."""
    a = appraiser(model)
    vm = a.vm
    sets = [line.states for line in vm.lines if line.per == "entry"]
    ex, occ_p, ent_p = _expected_counts(model, sets)
    _, occ_c, ent_c = _expected_counts(a.cf_model, sets)
    it_p, it_c = iter(ent_p), iter(ent_c)
    ep = [next(it_p) if line.per == "entry" else None for line in vm.lines]
    ec = [next(it_c) if line.per == "entry" else None for line in vm.lines]
    T = model.months
    gains = (line_flows(vm, occ_p, ep, T) - line_flows(vm, occ_c, ec, T)) * vm.benefit_factor
    pay = ex.commissioner_payments.groupby("month")["amount"].sum()
    spend = np.zeros(vm.months)
    months = pay.index.to_numpy(dtype=np.int64)  # int even when nothing is paid (an empty index)
    ok = months < vm.months
    spend[months[ok]] = pay.to_numpy()[ok]
    costs = (spend * vm.contract_factor * vm.cost_factor)[None]
    out = {k: float(v[0]) for k, v in figures(vm, gains, costs).items()}
    po = model.contract.primary_outcome
    if po >= 0:
        with_, without = (expected_first_entries(m, [np.array([po])])[0].sum() for m in (model, a.cf_model))
        out["outcomes"], out["outcomes_without_programme"] = float(with_), float(without)
    return out
