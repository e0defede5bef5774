"""Invariants on generated scenarios: money and clients are conserved whatever the scenario."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbrsim.scenario.schema import scenario_from_dict
from pbrsim.simulate import simulate

STATES = ["referred", "engaged", "milestone", "job", "sustained", "dropout", "exited"]
TRANSIENT = STATES[:4]


@st.composite
def scenarios(draw):
    n_seg = draw(st.integers(1, 3))
    segs = [f"s{i}" for i in range(n_seg)]
    w = [draw(st.integers(1, 5)) for _ in segs]
    shares = {s: {"share": wi / sum(w)} for s, wi in zip(segs, w)}
    # make shares sum to exactly 1 in floating point
    shares[segs[-1]]["share"] = 1 - sum(shares[s]["share"] for s in segs[:-1])

    def row():
        weights = [draw(st.integers(0, 4)) for _ in STATES]
        if sum(weights) == 0:
            weights[0] = 1
        tot = sum(weights)
        r = {s: wi / tot for s, wi in zip(STATES, weights) if wi}
        last = list(r)[-1]
        r[last] = 1 - sum(v for k, v in r.items() if k != last)
        return r

    trans = {s: {lvl: {frm: row() for frm in TRANSIENT} for lvl in ("full", "minimal")} for s in segs}
    T = draw(st.integers(3, 14))
    money = st.integers(0, 3000)
    return {
        "name": "gen",
        "months": T,
        "referrals": {"rate": draw(st.integers(0, 15)), "distribution": draw(st.sampled_from(["poisson", "fixed"]))},
        "segments": shares,
        "pathway": {
            "states": STATES, "initial_state": "referred", "absorbing": ["sustained", "dropout", "exited"],
            "exit_state": "exited", "max_months_on_programme": draw(st.integers(1, 12)), "transitions": trans,
        },
        "contract": {
            "cap": draw(st.one_of(st.none(), st.integers(0, 50000))),
            "service_fee": {"total": draw(money), "schedule": draw(st.sampled_from(["monthly", "quarterly", "upfront"])), "lag": draw(st.integers(0, 3))},
            "payments": [
                {"name": "a", "kind": "attachment", "state": draw(st.sampled_from(STATES)), "tariff": draw(money), "lag": draw(st.integers(0, 4)), "rejection": draw(st.sampled_from([0, 0.2, 1]))},
                {"name": "m", "kind": "milestone", "state": draw(st.sampled_from(STATES)), "tariff": draw(money), "lag": draw(st.integers(0, 4))},
                {"name": "s", "kind": "sustainment", "states": draw(st.lists(st.sampled_from(STATES), min_size=1, max_size=3, unique=True)), "max_months": draw(st.integers(1, 4)), "tariff": draw(money), "lag": draw(st.integers(0, 4))},
                {"name": "o", "kind": "outcome", "state": "sustained", "tariff": draw(money), "lag": draw(st.integers(0, 6)), "rejection": 0.1},
            ],
        },
        "provider": {
            "opening_cash": draw(money), "overhead_per_month": draw(st.integers(0, 500)),
            "cost_per_client_month": {"full": draw(st.integers(0, 300)), "minimal": draw(st.integers(0, 100))},
            "capacity": draw(st.one_of(st.none(), st.integers(0, 20))),
            "credit": {"limit": draw(st.one_of(st.none(), st.integers(0, 5000))), "monthly_interest": draw(st.sampled_from([0, 0.01]))},
        },
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(0, 2**32 - 1))
def test_money_and_clients_are_conserved(d, seed):
    sc = scenario_from_dict(d, "<generated>")
    res = simulate(sc, seed=seed, replications=2)  # the engine's own checks run inside and raise on a breach
    led = res.ledger
    # double entry: what the commissioner pays is what the provider receives from it
    assert led[led.payer == "commissioner"].amount.sum() == led[(led.payee == sc.provider.name) & (led.payer == "commissioner")].amount.sum()
    if sc.contract.cap is not None:
        assert (led[led.payer == "commissioner"].groupby("replication").amount.sum() <= round(sc.contract.cap * 100)).all()
    # every referred client ends in exactly one state, and the month-end caseload counts every client
    cl, m = res.clients, res.monthly
    assert cl.final_state.notna().all()
    refs = m.groupby("replication").referrals.sum()
    last = m[m.month == m.month.max()].set_index("replication")
    n_cols = [c for c in m.columns if c.startswith("n_") and c not in ("n_full", "n_minimal")]
    assert (last[n_cols].sum(axis=1) == refs).all()
    assert (cl.groupby("replication").size().reindex(refs.index, fill_value=0) == refs).all()
    # service is never given beyond capacity
    if sc.provider.capacity is not None:
        assert (m.n_full <= sc.provider.capacity).all()
    # cash is opening cash plus the ledger's net flows
    for rep, g in m.groupby("replication"):
        inc = g[[c for c in g.columns if c.startswith("income_")]].sum(axis=1)
        out = g[["cost_delivery", "cost_overhead", "cost_interest"]].sum(axis=1)
        assert np.array_equal(g.cash.to_numpy(), round(sc.provider.opening_cash * 100) + (inc - out).cumsum().to_numpy())
