"""The Koning & Heinrich pattern on the small voluntary-sector archetype (docs/behaviour.md §9): moving from the
blended design to 100% payment by results at one price and the same expected spend raises job-ready outcomes,
does not raise complex clients' outcomes, and leaves how long the jobs last unchanged. Paired over replications
(common random numbers), 95% Student-t intervals."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from pbrsim.analysis.estimators import mean_ci
from pbrsim.analysis.retention import months_after_outcome
from pbrsim.engine.exact import expected
from pbrsim.scenario.schema import load_raw, scenario_from_dict
from pbrsim.simulate import simulate

VCS = Path(__file__).resolve().parents[1] / "scenarios" / "library" / "small_vcs_blended.yaml"
SEED, REPS = 11, 60


def _designs() -> tuple[dict, dict]:
    """The archetype as shipped, and the same contract paid 100% on the job outcome at one price, set so that the
    commissioner's expected spend under full service (exact) is unchanged. In both, the cap and the overdraft limit
    are lifted, so that neither payments stopping nor the charity failing confounds its behaviour."""
    blended = load_raw(VCS)
    blended["contract"]["cap"] = None
    blended["provider"]["credit"]["limit"] = None
    pbr = copy.deepcopy(blended)
    del pbr["contract"]["service_fee"]

    def spend(raw: dict) -> float:
        r = copy.deepcopy(raw)
        r["provider"].update(policy="holistic", capacity=None, credit={"limit": None, "monthly_interest": 0.0})
        return float(expected(scenario_from_dict(r, "budget")).paid_by_kind.sum())

    pbr["contract"]["payments"][0]["tariff"] = 1000.0
    pbr["contract"]["payments"][0]["tariff"] = round(1000.0 * spend(blended) / spend(pbr), 2)  # spend is linear in the price
    return blended, pbr


def test_full_payment_by_results_creams_the_job_ready_and_jobs_last_no_longer():
    blended, pbr = _designs()
    runs = [simulate(scenario_from_dict(r, name), seed=SEED, replications=REPS) for r, name in ((blended, "blended"), (pbr, "pbr"))]
    diff = {g: runs[1].per_replication[f"outcomes[{g}]"].to_numpy() - runs[0].per_replication[f"outcomes[{g}]"].to_numpy()
            for g in ("job_ready", "complex")}
    ready, complex_ = mean_ci(diff["job_ready"]), mean_ci(diff["complex"])
    assert ready["lo"] > 0, ready  # more job-ready clients reach a job outcome
    assert complex_["lo"] <= 0 < ready["mean"] - complex_["mean"], complex_  # complex clients' outcomes do not rise
    kept = []
    for res in runs:
        m = months_after_outcome(res.model, res.clients, res.monthly)
        kept.append(m["months_after_outcome"].to_numpy() / m["outcomes_followed"].to_numpy())
        # the same columns in the run's per-replication table, and the summary's figure their pooled ratio
        pr = res.per_replication
        assert (pr["months_after_outcome"].to_numpy() == m["months_after_outcome"].to_numpy()).all()
        assert res.summary["outcome_duration"]["months_after_outcome"]["mean"] == pytest.approx(
            pr["months_after_outcome"].sum() / pr["outcomes_followed"].sum())
    stay = mean_ci(kept[1] - kept[0])
    assert stay["lo"] <= 0 <= stay["hi"], stay  # months in work in the year after the outcome: unchanged
    assert 8 < kept[0].mean() < 12  # a year after the outcome most are still in work (0.985 a month)
