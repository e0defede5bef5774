"""Exact mode against Monte Carlo: with no behaviour the engine is a Markov chain, so means must agree.

Each comparison allows 4 standard errors of the Monte Carlo mean (over independent replications).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pbrsim.engine.exact import ExactNotApplicable, check_exact, expected
from pbrsim.engine.run import compile_model
from pbrsim.simulate import simulate

from .conftest import scenario

R = 400


def _close(mc_values: np.ndarray, exact_value: float, label: str, k: float = 4.0):
    mc_values = np.asarray(mc_values, dtype=float)
    se = mc_values.std(ddof=1) / np.sqrt(len(mc_values))
    diff = mc_values.mean() - exact_value
    if se == 0:
        assert abs(diff) < 1e-9, f"{label}: MC {mc_values.mean()} vs exact {exact_value} (no variance)"
    else:
        assert abs(diff) <= k * se, f"{label}: MC {mc_values.mean():.4f} vs exact {exact_value:.4f}, {diff / se:.1f} SE"


def summary_org(ex, name):
    return next(o for o in ex.summary()["organisations"] if o["organisation"] == name)


def _compare(sc, seed=11, reps=R):
    ex = expected(sc)
    res = simulate(sc, seed=seed, replications=reps)
    pr = res.per_replication
    seg = ex.segments.set_index("segment")
    for g in list(sc.segments) + ["all"]:
        key = "" if g == "all" else f"[{g}]"
        _close(pr[f"referrals{key}"], seg.loc[g, "referrals"], f"referrals {g}")
        _close(pr[f"outcomes{key}"], seg.loc[g, "outcomes"], f"outcomes {g}")
        if "milestones" in seg:
            ms = res.summary["milestone_state"]
            _close(pr[f"milestones_{ms}{key}"], seg.loc[g, "milestones"], f"milestones {g}")
    paid = ex.paid_by_kind
    for kind in ("service_fee", "attachment", "milestone", "outcome", "sustainment"):
        _close(pr[f"paid[{kind}]"], float(paid.get(kind, 0.0)), f"paid {kind}")
    # payments by month (all kinds), which checks lags and the run-off after the contract end
    led = res.ledger[res.ledger.payer == res.model.contract.commissioner]  # commissioner -> prime
    by_month = led.groupby(["replication", "month"]).amount_pence.sum().unstack(fill_value=0).reindex(
        index=range(reps), columns=range(res.model.horizon), fill_value=0) / 100
    ex_month = ex.commissioner_payments.groupby("month").amount.sum().reindex(range(res.model.horizon), fill_value=0.0)
    for t in range(res.model.horizon):
        _close(by_month[t], ex_month[t], f"payments in month {t}")
    # provider costs: delivery by month
    for org in res.model.organisations:
        mon = res.monthly[res.monthly.organisation == org.name].pivot(index="replication", columns="month", values="cost_delivery_pence") / 100
        exc = ex.costs[ex.costs.organisation == org.name].set_index("month")
        for t in range(res.model.horizon):
            _close(mon[t], exc.delivery[t], f"delivery cost of {org.name} in month {t}")
        # income includes pass-through, truncated to the penny per settlement in the engine: allow 1p per row
        slack = len(res.ledger[res.ledger.payee == org.name]) / reps / 100
        _close(pr[f"income[{org.name}]"], ex.income(org.name), f"income of {org.name}", k=4.0 + slack)
        s = summary_org(ex, org.name)
        _close(pr[f"costs[{org.name}]"], s["costs"], f"costs of {org.name}", k=4.0 + slack)
    return ex, res


def test_base_scenario_with_lags_rejection_sustainment_forced_exit():
    _compare(scenario())


def test_fixed_referrals_and_a_referral_list():
    sc = scenario(**{"referrals": {"monthly": [5, 0, 12, 7, 7, 3], "distribution": "fixed"}})
    ex, res = _compare(sc)
    # fixed counts are not random: every replication has exactly the expected referrals
    assert (res.per_replication["referrals"] == 34).all()


def test_attachment_on_referral_and_sustainment_into_an_absorbing_state():
    sc = scenario(**{
        "contract.payments.0.state": "referred",
        "contract.payments.2.states": ["job", "sustained"],
        "contract.payments.2.max_months": 2,
        "contract.payments.2.lag": 4,
    })
    _compare(sc)


def test_non_service_states_and_long_lags_after_contract_end():
    sc = scenario(**{
        "pathway.service_states": ["referred", "engaged"],
        "contract.payments.3.lag": 7,
        "contract.service_fee": {"total": 30000, "schedule": "quarterly", "lag": 2},
        "months": 12,
    })
    ex, res = _compare(sc)
    assert res.model.horizon == 19


def test_exact_refuses_behaviour_it_cannot_represent():
    sc = scenario(**{"provider.capacity": 10, "contract.cap": 50000, "provider.credit": {"limit": 1000, "monthly_interest": 0.01}})
    reasons = check_exact(compile_model(sc))
    assert len(reasons) == 4
    with pytest.raises(ExactNotApplicable, match="capacity could bind"):
        expected(sc)


def test_exact_accepts_a_capacity_that_fixed_referrals_never_reach():
    sc = scenario(**{"referrals": {"rate": 5, "end": 10, "distribution": "fixed"}, "provider.capacity": 60})
    assert check_exact(compile_model(sc)) == []
    _compare(sc, reps=50)


def test_supply_chain_split_of_expected_payments_per_organisation():
    """Exact mode splits expected payments across the chain: pass-through shares, extra lags, fees for service."""
    from .test_supply_chain import chain, sc_from

    d = chain()
    d["supply_chain"] = {"allocation": {"method": "by_segment", "by_segment": {
        "easy": {"prime": 0.7, "sub_a": 0.3}, "hard": {"sub_a": 0.4, "sub_b": 0.6}}}}
    sc = sc_from(d)
    ex, res = _compare(sc, reps=300)
    # the prime keeps what the commissioner pays less what it passes down, in expectation too
    paid = ex.commissioner_payments.amount.sum()
    down = ex.payments[ex.payments.payer == "prime"].amount.sum()
    assert ex.income("sub_a") + ex.income("sub_b") == pytest.approx(down)
    _close(res.per_replication["prime_kept"], paid - down, "prime keeps", k=4.5)
