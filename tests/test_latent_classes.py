"""Latent classes within segments and the graded policy: classes without spread change nothing, exact mode
agrees with Monte Carlo on the mixture of class chains, and the graded policy runs from return-maximising
(protected share 0) to holistic (1), serving more as the share rises."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from pbrsim.analysis.estimators import ratio_of_ratios_change_ci, ratio_of_ratios_ci
from pbrsim.analysis.parking import class_columns
from pbrsim.engine.behaviour import BatchReview, graded_batch, serve_chance
from pbrsim.model.money import to_pence
from pbrsim.engine.exact import _class_chains, _first_entry_rule, _trigger_probabilities, expected
from pbrsim.engine.run import compile_model
from pbrsim.scenario.errors import ScenarioError
from pbrsim.scenario.schema import load_raw, scenario_from_dict
from pbrsim.simulate import simulate

from .conftest import make, scenario
from .test_exact import _compare

PARKING = Path(__file__).resolve().parents[1] / "scenarios" / "parking"
TABLES = ("ledger", "monthly", "claims", "settlements")


def classes(*spec, observed=True):
    return {"observed": observed, "classes": [{"name": n, "share": s, "progress": p} for n, s, p in spec]}


SPREAD = classes(("slow", 0.3, 0.4), ("middle", 0.4, 1.0), ("fast", 0.3, 1.12))


def with_classes(lc, seg="easy", **changes):
    return scenario(**{f"segments.{seg}.latent_classes": lc, **changes})


def same_tables(a, b):
    for t in TABLES:
        assert getattr(a, t).equals(getattr(b, t)), t
    assert a.clients.drop(columns=["latent_class"], errors="ignore").equals(b.clients.drop(columns=["latent_class"], errors="ignore"))


@pytest.mark.parametrize("policy", ["holistic", {"name": "return_maximising"}, {"name": "graded", "protected_share": 0.5},
                                    {"name": "graded", "temperature": 300}])
def test_classes_without_spread_reproduce_todays_results_bit_for_bit(policy):
    flat = classes(("a", 0.25, 1.0), ("b", 0.35, 1.0), ("c", 0.4, 1.0))
    base = scenario(**{"provider.policy": policy})
    a = simulate(base, seed=3, replications=12)
    b = simulate(with_classes(flat, **{"provider.policy": policy}), seed=3, replications=12)
    same_tables(a, b)
    assert "latent_class" not in a.clients and set(b.clients.latent_class.unique()) <= {0, 1, 2}
    # every figure the same; the classes only add their own rows (parking and outcomes by class)
    pr = b.per_replication
    assert a.per_replication.equals(pr[[c for c in pr.columns if not c.startswith("class_")]])
    assert [c for c in pr.columns if c.startswith("class_")] and "classes" in b.summary["parking"]
    b_summary = {**b.summary, "parking": {k: v for k, v in b.summary["parking"].items() if k != "classes"}}
    assert a.summary == b_summary


def test_class_draw_follows_the_shares_and_leaves_other_streams_alone():
    res = simulate(with_classes(SPREAD), seed=5, replications=40)
    easy = res.clients[res.clients.segment == "easy"]
    n = len(easy)
    for k, share in enumerate((0.3, 0.4, 0.3)):
        got = float((easy.latent_class == k).mean())
        assert abs(got - share) <= 4 * np.sqrt(share * (1 - share) / n), (k, got)
    assert (res.clients[res.clients.segment == "hard"].latent_class == 0).all()
    # referrals do not depend on classes: same counts by segment and month as without them
    base = simulate(scenario(), seed=5, replications=40)
    assert base.clients[["replication", "segment", "referral_month"]].equals(res.clients[["replication", "segment", "referral_month"]])


def test_exact_mode_with_latent_classes_agrees_with_monte_carlo():
    ex, res = _compare(with_classes(SPREAD), reps=300)
    # the mixture differs from the segment's own chain: slow clients pull the outcome rate down
    plain = ex.segments.set_index("segment").loc["easy", "outcome_rate"]
    assert plain < expected(scenario()).segments.set_index("segment").loc["easy", "outcome_rate"] - 0.05


def test_progress_scales_forward_moves_and_staying_takes_the_difference():
    pw = compile_model(with_classes(SPREAD)).pathway
    g = pw.segments.index("easy")
    i = {s: j for j, s in enumerate(pw.states)}
    slow, mid, fast = (pw.PK[g * pw.K + k, 0, i["engaged"]] for k in range(3))
    assert mid[i["job"]] == pw.P[g, 0, i["engaged"], i["job"]]
    assert slow[i["job"]] == pytest.approx(0.4 * 0.3) and fast[i["job"]] == pytest.approx(1.12 * 0.3)
    assert slow[i["engaged"]] == pytest.approx(0.6 + 0.6 * 0.3)
    assert slow[i["dropout"]] == pytest.approx(0.1)  # leaving is not progress
    for row in (slow, mid, fast):
        assert row.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("lc, field, words", [
    (classes(("a", 0.5, 1.0), ("b", 0.4, 1.0)), "segments.easy.latent_classes.classes", "sum to 1"),
    (classes(("a", 0.5, 1.0), ("a", 0.5, 1.0)), "segments.easy.latent_classes.classes[1].name", "used twice"),
    (classes(("a", 0.5, 3.0), ("b", 0.5, 1.0)), "segments.easy.latent_classes.classes[0].progress", "the most it can be"),
])
def test_bad_classes_name_the_field_and_the_rule(lc, field, words):
    with pytest.raises(ScenarioError) as e:
        with_classes(lc)
    assert any(path == field and words in rule for path, rule in e.value.problems), e.value.problems


# -- the graded policy ---------------------------------------------------------------------------------


def outcome_only(policy, **changes):
    raw = load_raw(PARKING / "outcome_only.yaml")
    raw["provider"]["policy"] = policy
    for k, v in changes.items():
        raw["provider"][k] = v
    return scenario_from_dict(raw, "outcome_only")


@pytest.mark.parametrize("share, limit, capacity", [(0.0, {"name": "return_maximising"}, None),
                                                     (0.0, {"name": "return_maximising"}, 40),
                                                     (1.0, "holistic", None)])
def test_graded_policy_limits_are_return_maximising_and_holistic(share, limit, capacity):
    a = simulate(outcome_only({"name": "graded", "protected_share": share}, capacity=capacity), seed=7, replications=6)
    b = simulate(outcome_only(limit, capacity=capacity), seed=7, replications=6)
    same_tables(a, b)


def test_graded_policy_serves_more_as_the_protected_share_rises():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n, groups = int(rng.integers(1, 30)), int(rng.integers(1, 4))
        group = np.sort(rng.integers(0, groups, n))
        net = np.round(rng.normal(0, 100, n), 0 if rng.random() < 0.5 else 3)  # ties half the time
        cap = None if rng.random() < 0.5 else int(rng.integers(0, n + 1))
        review = BatchReview(month=0, segment=np.zeros(n, np.int16), state=np.zeros(n, np.int16), ref_month=np.zeros(n, np.int16),
                             group=group, starts=np.searchsorted(group, np.arange(groups + 1)), capacity=cap, cash=np.zeros(groups))
        before = graded_batch(net, review, 0.0)
        assert (before == ((net >= 0) & (review.rank_by(-net) < (cap if cap is not None else n)))).all()
        for share in np.linspace(0.05, 1.0, 20):
            now = graded_batch(net, review, share)
            assert (now >= before).all()  # the set served only grows
            if cap is None:
                assert now.sum() >= before.sum()
            before = now
        if cap is None:
            assert before.all()


def test_graded_parking_falls_with_the_protected_share():
    rates = []
    for share in (0.0, 0.5, 1.0):
        res = simulate(outcome_only({"name": "graded", "protected_share": share}), seed=7, replications=20)
        rates.append(res.summary["parking"]["parking_rate"]["mean"])
    assert rates[0] > rates[1] > rates[2] == 0.0
    assert 0.3 * rates[0] < rates[1] < 0.7 * rates[0]  # about half of the return-maximiser's parking


@pytest.mark.parametrize("policy, words", [({"name": "graded", "protected_share": 1.5}, "less than or equal to 1"),
                                           ({"name": "graded"}, "exactly one of"),
                                           ({"name": "graded", "temperature": 10, "protected_share": 0.5}, "exactly one of")])
def test_graded_policy_needs_one_strength_in_range(policy, words):
    with pytest.raises(ScenarioError) as e:
        scenario(**{"provider.policy": policy})
    assert any(p[0].startswith("provider.policy") and words in p[1] for p in e.value.problems), e.value.problems


def test_graded_temperature_zero_is_return_maximising():
    a = simulate(outcome_only({"name": "graded", "temperature": 0}), seed=7, replications=6)
    b = simulate(outcome_only({"name": "return_maximising"}), seed=7, replications=6)
    same_tables(a, b)


def test_graded_temperature_serves_more_as_it_rises_and_tends_to_holistic():
    chance = [serve_chance(np.array([-5000.0, -100.0, 0.0, 50.0]), to_pence(t)) for t in (0, 10, 100, 1000, 1e9)]
    for lo, hi in zip(chance, chance[1:]):
        assert (hi >= lo).all()
    assert (chance[0] == [0, 0, 1, 1]).all() and chance[-1] == pytest.approx(1.0)
    rates, served = [], []
    for t in (0, 25, 100, 400, 1e7):
        res = simulate(outcome_only({"name": "graded", "temperature": t}), seed=7, replications=10)
        rates.append(res.summary["parking"]["parking_rate"]["mean"])
        served.append(res.clients.months_full.sum())
    assert all(a > b for a, b in zip(rates, rates[1:])), rates
    assert rates[-1] < 1e-3 and rates[0] > 0.2



# -- acceptance: creaming within a payment group, and prices by predicted class ------------------------


def _moderate_classes(raw: dict) -> dict:
    raw = copy.deepcopy(raw)
    raw["segments"]["moderate"]["latent_classes"] = classes(("low", 0.3, 0.5), ("mid", 0.4, 1.0), ("high", 0.3, 1.25))
    return raw


def _holistic(raw: dict):
    """The same contract with every client fully served and no interest: what the commissioner budgets for."""
    raw = copy.deepcopy(raw)
    raw["provider"]["policy"] = "holistic"
    raw["provider"]["credit"]["monthly_interest"] = 0.0
    return scenario_from_dict(raw, "holistic")


def _class_prices(raw: dict) -> dict:
    """Outcome prices by class for the moderate segment, inversely proportional to each class's chance of an
    outcome under full service, scaled so that the commissioner's expected spend (exact, full service) is unchanged."""
    model = compile_model(scenario_from_dict(raw, "flat"))
    chains = _class_chains(model, model.pathway.segments.index("moderate"))
    primary = _first_entry_rule(model.contract.primary_outcome, len(model.pathway.segments))
    p = np.array([_trigger_probabilities(model, M, primary, model.months).sum() for _, M in chains])
    w = np.array([s for s, _ in chains])
    flat = raw["contract"]["payments"][1]["tariff"]
    names = ("low", "mid", "high")
    priced = copy.deepcopy(raw)
    rule = priced["contract"]["payments"][1]
    rule["tariff_by_class"] = {"moderate": dict(zip(names, flat * (w @ p) / p))}
    target = expected(_holistic(raw)).paid_by_kind.sum()
    ex = expected(_holistic(priced))
    pay = ex.commissioner_payments
    moderate = pay[(pay.kind == "outcome") & (pay.segment == "moderate")].amount.sum()
    scale = (moderate - (ex.paid_by_kind.sum() - target)) / moderate  # that spend is linear in the class prices
    rule["tariff_by_class"] = {"moderate": {n: float(v) * scale for n, v in rule["tariff_by_class"]["moderate"].items()}}
    return priced


def test_bottom_class_is_parked_far_more_and_prices_by_class_halve_that_at_equal_expected_spend():
    raw = _moderate_classes(load_raw(PARKING / "outcome_only.yaml"))
    priced = _class_prices(raw)
    # equal to the pound (prices are kept to the penny)
    assert abs(expected(_holistic(priced)).paid_by_kind.sum() - expected(_holistic(raw)).paid_by_kind.sum()) < 1.0
    parts = []
    for r in (raw, priced):
        res = simulate(scenario_from_dict(r, "design"), seed=7, replications=40)
        cols = class_columns(res.model, res.clients, res.monthly)
        parts.append(tuple(cols[f"class_{k}_months[moderate/{c}]"] for c, k in
                           (("low", "minimal"), ("low", "service"), ("high", "minimal"), ("high", "service"))))
    flat = ratio_of_ratios_ci(*parts[0])
    assert flat["lo"] >= 3.0, flat  # the slowest third parked at least 3x as often as the fastest, at one price
    change = ratio_of_ratios_change_ci(parts[0], parts[1])
    assert change["hi"] <= 0.5, change  # prices by predicted class at least halve that ratio (paired interval)


def test_parking_and_outcomes_by_class_reach_the_summary_the_comparison_and_the_report(tmp_path):
    """Each class's parking and outcome rates: pooled over runs from the per-replication class columns, the same
    figure in summary.json, in compare's table, in the terminal and in the report."""
    import json

    import pandas as pd
    from click.testing import CliRunner

    from pbrsim.analysis.compare import summary_table
    from pbrsim.analysis.estimators import ratio_ci
    from pbrsim.cli.main import main

    path = Path(__file__).resolve().parents[1] / "scenarios" / "library" / "small_vcs_blended.yaml"
    r = CliRunner().invoke(main, ["run", str(path), "-n", "8", "--seed", "3", "--out", str(tmp_path / "run"), "--report"])
    assert r.exit_code == 0, r.output
    assert "parking and outcomes by latent class" in r.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    pr = pd.read_parquet(tmp_path / "run" / "replications.parquet")
    classes = summary["parking"]["classes"]
    assert len(classes) == 9 and {c["latent_class"] for c in classes} == {"slow", "typical", "quick"}
    table = summary_table({"a": pr}, ["a"], "a").set_index("metric")
    html = (tmp_path / "run" / "report" / "report.html").read_text()
    for c in classes:
        k = f"{c['segment']}/{c['latent_class']}"
        want = ratio_ci(pr[f"class_minimal_months[{k}]"], pr[f"class_service_months[{k}]"])
        assert c["parking_rate"]["mean"] == pytest.approx(want["mean"]) and c["parking_rate"]["lo"] == pytest.approx(want["lo"])
        assert table.loc[f"class_parking_rate[{k}]", "mean"] == pytest.approx(want["mean"])
        out = ratio_ci(pr[f"class_outcomes[{k}]"], pr[f"class_referrals[{k}]"])
        assert c["outcome_rate"]["mean"] == pytest.approx(out["mean"])
        assert table.loc[f"class_outcome_rate[{k}]", "mean"] == pytest.approx(out["mean"])
        assert f"{c['segment']}: {c['latent_class']}" in html
    # every client belongs to one class: the classes' referrals add up to the segment's, run by run
    for g in {c["segment"] for c in classes}:
        total = sum(pr[f"class_referrals[{g}/{k}]"] for k in ("slow", "typical", "quick"))
        assert (total == pr[f"referrals[{g}]"]).all()
