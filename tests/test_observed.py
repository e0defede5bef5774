"""Observed rates (potential under full service × the service the policy gives) against Monte Carlo, per segment,
with latent classes and a graded provider: within 4 standard errors (clustered by replication)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pbrsim.analysis.estimators import ratio_parts
from pbrsim.engine.observed import reach_rates, unsupported
from pbrsim.engine.run import compile_model
from pbrsim.library.calibrate import reach_rate
from pbrsim.scenario.schema import load_raw, scenario_from_dict
from pbrsim.simulate import simulate

PARKING = Path(__file__).resolve().parents[1] / "scenarios" / "parking"


def _scenario(policy):
    raw = load_raw(PARKING / "outcome_only.yaml")
    raw["provider"]["policy"] = policy
    raw["months"] = 50  # every client has its 24 months before the contract ends, as the rates assume
    raw["segments"]["moderate"]["latent_classes"] = {"observed": True, "classes": [
        {"name": "low", "share": 0.3, "progress": 0.5}, {"name": "mid", "share": 0.4}, {"name": "high", "share": 0.3, "progress": 1.25}]}
    return scenario_from_dict(raw, "observed")


@pytest.mark.parametrize("policy", [{"name": "return_maximising"}, {"name": "graded", "temperature": 100}])
def test_observed_rates_agree_with_monte_carlo(policy):
    sc = _scenario(policy)
    model = compile_model(sc)
    pw = model.pathway
    mask = np.array([s == "sustained_6m" for s in pw.states])
    res = simulate(sc, seed=1, replications=60)
    c = res.clients
    reached = (c.first_sustained_6m.notna() & ((c.first_sustained_6m - c.referral_month) <= 23)).to_numpy()
    for g, seg in enumerate(pw.segments):
        sel = (c.segment == seg).to_numpy()
        num = np.bincount(c.replication[sel], weights=reached[sel], minlength=60)
        den = np.bincount(c.replication[sel], minlength=60)
        rate, _, se = ratio_parts(num, den)
        exact = reach_rates(model, g, mask, 24)
        assert abs(rate - exact) <= 4 * se, (seg, rate, exact, se)


def test_holistic_observed_rates_equal_the_full_service_rates():
    sc = _scenario("holistic")
    model = compile_model(sc)
    pw = model.pathway
    mask = np.array([s == "sustained_6m" for s in pw.states])
    g = pw.segments.index("job_ready")  # a segment without latent classes
    assert reach_rates(model, g, mask, 24) == pytest.approx(reach_rate(sc, "job_ready", "sustained_6m", 24), abs=1e-12)


def test_policies_that_depend_on_the_caseload_are_refused():
    sc = _scenario({"name": "graded", "protected_share": 0.5})
    assert "temperature" in unsupported(compile_model(sc))[0]
