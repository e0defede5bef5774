"""`requires` on a payment line: it pays only for clients whose claim on another line was accepted before.

The Work Programme paid sustainment only where a job outcome had been claimed and accepted; a rejected job
outcome claim means no sustainment for that person.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pbrsim.engine.exact import expected
from pbrsim.scenario.schema import ScenarioError, load_scenario, scenario_from_dict
from pbrsim.simulate import simulate

from .conftest import make, override
from .test_engine import LINE
from .test_exact import _compare

LIBRARY = Path(__file__).parent.parent / "scenarios" / "library"


def _line(rejection: float, requires: str | None, clients: int = 300):
    """LINE with ``clients`` referrals in month 0: each enters `job` in month 1 and is in work in months 1-3."""
    d = override(LINE, **{"referrals": {"monthly": [clients], "distribution": "fixed"}, "contract.service_fee": None})
    d["contract"]["payments"][2]["rejection"] = rejection
    if requires:
        d["contract"]["payments"][3]["requires"] = requires
    return scenario_from_dict(d, "<line>")


def _claims(res, item):
    c = res.claims[res.claims["item"] == item]
    return int(c["claims"].sum()), int(c["rejected"].sum())


def test_sustainment_is_claimed_only_after_an_accepted_job_outcome_claim():
    res = simulate(_line(0.4, "job_start"), seed=5, replications=2)
    for rep in range(2):
        one = res.claims[res.claims.replication == rep]
        jo = one[one["item"] == "job_start"]
        claimed, rejected = int(jo["claims"].sum()), int(jo["rejected"].sum())
        accepted = claimed - rejected
        assert claimed == 300 and 60 < rejected < 180  # the rejection draws did reject some claims
        sust = one[one["item"] == "in_work"]
        # months in work: 1 (the job outcome month itself), 2 and 3; the requirement must be met in an earlier
        # month, so each accepted client claims for months 2 and 3, and a rejected one never claims
        assert int(sust["claims"].sum()) == 2 * accepted
        assert sorted(sust["month"].unique()) == [2, 3]
    paid = res.ledger[(res.ledger["item"] == "in_work") & (res.ledger.payer == "commissioner")]
    jo_acc = res.claims[res.claims["item"] == "job_start"]
    assert int(paid.amount_pence.sum()) == 2 * 700 * int((jo_acc["claims"] - jo_acc["rejected"]).sum())


def test_without_requires_every_client_in_work_is_paid():
    res = simulate(_line(0.4, None), seed=5, replications=1)
    assert _claims(res, "in_work") == (3 * 300, 0)


def test_a_rejected_requirement_blocks_the_line_for_good():
    res = simulate(_line(1.0, "job_start"), seed=5, replications=1)
    assert _claims(res, "job_start") == (300, 300)
    assert _claims(res, "in_work") == (0, 0)


def _with_requires(rejection: float = 0.3):
    d = make()
    d["contract"]["payments"][1]["rejection"] = rejection  # job_start, the milestone on first entry into `job`
    d["contract"]["payments"][2]["requires"] = "job_start"  # in_work: sustainment while in `job`
    return d


def test_exact_mode_agrees_with_the_engine_when_sustainment_requires_an_accepted_claim():
    sc = scenario_from_dict(_with_requires(), "<test>")
    _compare(sc, reps=150)
    plain = make()
    plain["contract"]["payments"][1]["rejection"] = 0.3
    without = expected(scenario_from_dict(plain, "<test>")).paid_by_kind["sustainment"]
    with_req = expected(sc).paid_by_kind["sustainment"]
    assert with_req < 0.8 * without  # the requirement matters: at most 70% of job starts are accepted


def test_exact_mode_agrees_with_the_engine_for_an_outcome_that_requires_a_milestone():
    d = _with_requires()
    d["contract"]["payments"][2].pop("requires")
    d["contract"]["payments"][3]["requires"] = "job_start"  # the sustained-job outcome, after an accepted job start
    _compare(scenario_from_dict(d, "<test>"), reps=150)


@pytest.mark.parametrize("line, value, rule", [
    (2, "nothing", "unknown payment line 'nothing'"),
    (2, "in_work", "cannot require itself"),
    (1, "in_work", "sustainment line"),
    (0, "job_start", "paid at referral"),
])
def test_requires_must_name_another_line_paid_once_and_not_be_paid_at_referral(line, value, rule):
    d = make()
    d["contract"]["payments"][0]["state"] = "referred" if line == 0 else "engaged"
    d["contract"]["payments"][line]["requires"] = value
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(d, "x.yaml")
    assert any(p == f"contract.payments[{line}].requires" and rule in r for p, r in e.value.problems), e.value.problems


def test_chains_of_requires_are_refused():
    d = _with_requires()
    d["contract"]["payments"][1]["requires"] = "attach"
    d["contract"]["payments"][3]["requires"] = "in_work"
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(d, "x.yaml")
    reasons = [r for p, r in e.value.problems if p.endswith(".requires")]
    assert any("chains" in r for r in reasons) and any("sustainment line" in r for r in reasons)


def test_work_programme_sustainment_requires_the_job_outcome_of_its_group():
    """Every sustainment line requires a job outcome line that pays the same groups (so nobody is left out)."""
    sc = load_scenario(LIBRARY / "work_programme.yaml")
    lines = {r.name: r for r in sc.contract.payments}
    sustainment = [r for r in lines.values() if r.kind == "sustainment"]
    assert sustainment
    for r in sustainment:
        assert r.requires is not None, r.name
        job = lines[r.requires]
        assert job.kind == "outcome"
        paid_groups = {g for g, v in r.tariff.items() if v > 0}
        assert paid_groups and all(job.tariff[g] > 0 for g in paid_groups), (r.name, job.name)
