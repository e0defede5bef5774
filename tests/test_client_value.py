"""Value tables from backward induction against a brute-force Monte Carlo of single-client paths."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pbrsim.engine.run import compile_model
from pbrsim.model.pathway import FULL, MINIMAL
from pbrsim.engine.client_value import dominators, on_cycle, value_tables

from .conftest import scenario


def brute_force(model, org, vt, seg, s0, n, last, first_level, paths=200_000, seed=0):
    """Mean and standard error of the discounted net value of ``paths`` simulated single-client paths.

    Written from the engine's rules, independently of the tables: first-entry payments on a first entry
    only (tracked per path), sustainment up to max_months, rejections drawn, forced exit on the last
    transition when ``last`` == 1, payments discounted over lag + extra_lag. The first month is at
    ``first_level``; later months follow the tables' own continuation choices (``vt.serve``).
    """
    pw, c = model.pathway, model.contract
    S = pw.n_states
    rng = np.random.default_rng(seed)
    delta = vt.discount
    state = np.full(paths, s0)
    visited = np.zeros((paths, S), dtype=bool)
    visited[:, dominators(pw)[:, s0]] = True  # what the tables assume about the client's past
    sust = [r for r in c.rules if r.is_sustainment]
    count = np.zeros((paths, len(sust)), dtype=np.int64)
    for k, r in enumerate(sust):  # a client now in a sustainment state has had one payment for it
        if r.in_states[s0] and s0 != pw.initial:
            count[:, k] = 1
    total = np.zeros(paths)
    cost = np.array([org.cost_full, org.cost_minimal], dtype=float)
    share = org.income_share
    for k in range(n):
        active = ~pw.absorbing[state]
        in_service = active & pw.service[state]
        if k == 0:
            level = np.full(paths, first_level)
        else:
            aux = vt.aux
            digits = np.zeros((paths, len(aux.radices)), dtype=np.int64)
            for j, fs in enumerate(aux.flag_states):
                digits[:, j] = visited[:, fs]
            for j, (ri, m) in enumerate(zip(aux.sust_rules, aux.sust_max)):
                kk = [r.index for r in sust].index(ri)
                digits[:, len(aux.flag_states) + j] = m - count[:, kk]
            x = aux.encode(digits)
            full = vt.serve[last, seg, state, x, n - k]
            level = np.where(full, FULL, MINIMAL)
        total -= delta**k * np.where(in_service, cost[level], 0.0)
        rows = pw.P[seg, level, state]  # [paths, S]
        u = rng.random(paths)
        new = np.minimum((u[:, None] >= np.cumsum(rows, axis=1)).sum(axis=1), S - 1)
        new = np.where(active, new, state)
        if last == 1 and k == n - 1:
            new = np.where(active & ~pw.absorbing[new], pw.exit_state, new)
        entered = active & (new != state)
        first = entered & ~visited[np.arange(paths), new]
        for r in c.rules:
            pay = r.tariff[seg] * share.get(r.kind, 1.0) * delta ** (k + r.lag + org.extra_lag)
            accepted = rng.random(paths) >= r.rejection
            if r.is_sustainment:
                kk = sust.index(r)
                ok = active & r.in_states[new] & (count[:, kk] < r.max_months)
                count[ok, kk] += 1
                total += pay * (ok & accepted)
            elif r.state >= 0:
                total += pay * (first & (new == r.state) & accepted)
        visited[np.arange(paths)[entered], new[entered]] = True
        state = new
    return total.mean(), total.std(ddof=1) / np.sqrt(paths)


def _model(**changes):
    return compile_model(scenario(**changes))


def test_graph_helpers():
    m = _model()
    pw = m.pathway
    cyc = on_cycle(pw)
    assert cyc[pw.index("engaged")] and cyc[pw.index("job")] and not cyc[pw.index("referred")]
    dom = dominators(pw)
    assert dom[pw.index("engaged"), pw.index("job")]  # every way to a job passes through engagement
    assert not dom[pw.index("job"), pw.index("engaged")]


@pytest.mark.parametrize(
    "seg, state, n, last",
    [
        (1, "engaged", 7, 1),  # programme limit binds: forced exit on the 7th transition
        (0, "referred", 3, 0),  # contract end binds
        (1, "job", 5, 0),  # in a sustainment state, with re-entry into paid states
    ],
)
@pytest.mark.parametrize("continuation", ["optimal", "holistic"])
def test_values_match_brute_force(seg, state, n, last, continuation):
    m = _model()
    # a subcontractor-like organisation: 80% of outcome payments, a month's extra lag, discounting
    org = dataclasses.replace(
        m.provider, extra_lag=1,
        income_share={"service_fee": 1.0, "attachment": 1.0, "milestone": 1.0, "outcome": 0.8, "sustainment": 1.0},
    )
    vt = value_tables(m, org, monthly_discount_rate=0.01, continuation=continuation, keep_all=True)
    s = m.pathway.index(state)
    for level in (FULL, MINIMAL):
        mean, se = brute_force(m, org, vt, seg, s, n, last, level, seed=level)
        exact = vt.q[last, level, seg, s, n]
        assert abs(mean - exact) < 4 * se, (level, mean, exact, se)


def test_optimal_continuation_is_at_least_holistic():
    m = _model()
    opt = value_tables(m, m.provider, continuation="optimal")
    hol = value_tables(m, m.provider, continuation="holistic")
    best_opt = opt.q.max(axis=1)
    assert (best_opt >= hol.q[:, FULL] - 1e-6).all()


def test_lookup_months_left_and_forced_exit():
    m = _model()
    vt = value_tables(m, m.provider)
    n, last = vt.months_left(5, np.array([0, 4]))  # programme 12 transitions, contract 18 months
    assert list(n) == [7, 11] and list(last) == [1, 1]
    n, last = vt.months_left(15, np.array([10]))
    assert list(n) == [3] and list(last) == [0]
    g = vt.lookup(15, np.array([1]), np.array([m.pathway.index("engaged")]), np.array([10]))
    assert g[0] == vt.gain[0, 1, m.pathway.index("engaged"), 3]


def test_service_fee_does_not_change_values():
    a = value_tables(_model(), _model().provider)
    m = _model(**{"contract.service_fee.share_of_value": 0.9})
    b = value_tables(m, m.provider)
    np.testing.assert_array_equal(a.gain, b.gain)
