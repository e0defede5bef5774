"""Public value: Green Book arithmetic, the Boilers on Prescription golden test, exact against Monte Carlo,
common random numbers, the tariff check, and value in run, compare, stress and the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pbrsim import simulate
from pbrsim.analysis.compare import summary_table
from pbrsim.cli.main import main
from pbrsim.engine.run import compile_model
from pbrsim.scenario.overrides import apply_overrides
from pbrsim.scenario.schema import ScenarioError, load_raw, scenario_from_dict
from pbrsim.value.appraisal import check
from pbrsim.value.exact import expected_value
from pbrsim.value.greenbook import deflate, discount_factors, monthly_factors, stpr
from pbrsim.value.spec import compile_value, shipped_unit_costs
from pbrsim.value.stress import value_under_stress

from .conftest import make

ROOT = Path(__file__).resolve().parents[1]
BOP = ROOT / "scenarios" / "early_action" / "boilers_on_prescription.yaml"
HFG = ROOT / "scenarios" / "early_action" / "homes_for_good.yaml"
PETERBOROUGH = ROOT / "scenarios" / "library" / "peterborough.yaml"


# ---------------------------------------------------------------------------------------------
# Green Book arithmetic


def test_discount_factors_follow_the_green_book_stpr_schedule():
    d = discount_factors(51)
    # HM Treasury Green Book, Annex A6: 3.5% a year to year 30, 3.0% from year 31 (factors to 4 d.p.)
    assert [round(d[t], 4) for t in (0, 1, 10, 30, 31, 50)] == [1.0, 0.9662, 0.7089, 0.3563, 0.3459, 0.1973]
    assert (stpr(30), stpr(31), stpr(75), stpr(76), stpr(126), stpr(201), stpr(301)) == (0.035, 0.03, 0.03, 0.025, 0.02, 0.015, 0.01)
    m = monthly_factors(25)
    assert m[0] == m[11] == 1.0 and m[12] == m[23] == d[1] and m[24] == d[2]


def test_deflation_reproduces_the_treasury_worked_example():
    # HM Treasury, "How to use the GDP deflator series: practical examples" (illustrative index, 2002-03 = 100):
    # £7.4m in 1998-99 prices is £8.36m in 2003-04 prices (91.031 -> 102.789)
    index = {"1998-99": 91.031, "2002-03": 100.0, "2003-04": 102.789}
    assert round(deflate(7.4, "1998-99", "2003-04", index), 2) == 8.36
    assert deflate(deflate(85.32, "2002-03", "1998-99", index), "1998-99", "2002-03", index) == pytest.approx(85.32)


def _value(**extra) -> dict:
    v = {
        "price_year": "2014-15", "commissioner_budget": "dwp", "horizon_years": 3,
        "counterfactual": {"transitions": {"default": {
            "referred": {"engaged": 0.5, "referred": 0.3, "dropout": 0.2},
            "engaged": {"job": 0.1, "engaged": 0.7, "dropout": 0.2},
            "job": {"sustained": 0.3, "job": 0.5, "engaged": 0.2}}}, "source": "test: minimal service"},
        "lines": [
            {"name": "benefit", "to": "dwp", "per": "month", "states": ["job", "sustained"], "amount": 300.0,
             "after_contract_months": 6, "decay": 0.5, "source": "test"},
            {"name": "earnings", "to": "person", "per": "entry", "state": "sustained", "amount": {"easy": 500.0, "hard": 800.0},
             "months": 12, "decay": 0.2, "source": "test"},
            {"name": "gp", "to": "nhs", "per": "entry", "states": ["job", "engaged"], "unit_cost": "gp_appointment", "units": 2.0,
             "reduction": 0.5, "source": "test"},
        ],
    }
    v.update(extra)
    return v


def tiny(**value_extra):
    return scenario_from_dict(make(value=_value(**value_extra)), "<test>")


def test_deflators_put_every_figure_in_base_year_prices():
    sc = tiny(base_year="2016-17", deflators={"index": {"2014-15": 95.0, "2016-17": 100.0}, "source": "test index"})
    model = compile_model(sc)
    vm = compile_value(sc, model.pathway, model.horizon)
    assert vm.lines[0].gain[0] == pytest.approx(300.0 * 100 / 95)
    assert vm.lines[2].gain[0] == pytest.approx(2.0 * 0.5 * 50 * 100 / 95)  # £50 GP appointment is 2014-15 money
    assert vm.contract_factor == pytest.approx(100 / 95)


# ---------------------------------------------------------------------------------------------
# Boilers on Prescription: the golden test


def _bop(tariff: float | None = None, cohort: int = 10) -> dict:
    raw = load_raw(BOP)
    over = {"referrals": {"monthly": [cohort], "distribution": "fixed"}}
    if tariff is not None:
        over["contract.payments[0].tariff"] = tariff
    return apply_overrides(raw, over, "golden")


def _hand_saving() -> float:
    units = {line["name"]: line for line in load_raw(BOP)["value"]["lines"]}
    gp, adm = units["gp_appointments_avoided"], units["emergency_admissions_avoided"]
    # the published inputs: 60 GP-type interactions and 3 emergency admissions in 36 patient-months
    assert gp["units"] == pytest.approx(60 / 36, rel=1e-6) and adm["units"] == pytest.approx(3 / 36, rel=1e-5)
    assert (gp["reduction"], adm["reduction"]) == (0.60, 0.25)
    return gp["units"] * 0.60 * 50 + adm["units"] * 0.25 * 2500


def _hand_payback(cost: float, saving: float) -> int:
    """Months until cumulative discounted savings cover the cost paid in month 0 (savings from month 0)."""
    d, total = discount_factors(20), 0.0
    for m in range(240):
        total += d[m // 12] * saving
        if total >= cost - 1e-9:
            return m + 1
    raise AssertionError("no payback")


def test_boilers_on_prescription_savings_and_payback_equal_the_hand_arithmetic():
    saving = _hand_saving()
    assert saving == pytest.approx(50.0 + 52.0833, abs=1e-3)  # £102.08 a patient-month
    res = simulate(scenario_from_dict(_bop(), "golden"), seed=0, replications=2)
    pr = res.per_replication
    # savings per client: 18 observed months + 42 more, each month discounted by its appraisal year's factor
    months = 18 + 42
    per_client = saving * discount_factors(6)[np.arange(months) // 12].sum()
    assert (pr["value_saves[nhs]"] / 10).to_numpy() == pytest.approx(per_client, rel=1e-9)
    assert (pr["value_costs"] / 10).to_numpy() == pytest.approx(5000.0)
    assert (pr["payback_months"] == _hand_payback(5000.0, saving)).all()
    assert _hand_payback(5000.0, saving) == 52 and math.ceil(5000 / saving) == 49  # 49 months undiscounted
    assert res.summary["value"]["payback_months"]["median"] == 52


def test_boilers_on_prescription_pays_back_within_nine_months_exactly_when_the_cost_allows():
    saving = _hand_saving()
    nine = math.floor(9 * saving * 100) / 100  # the dearest works (to the penny) that nine months' savings repay
    for cost, months in ((nine, 9), (nine + 0.02, 10)):
        res = simulate(scenario_from_dict(_bop(tariff=cost), "nine"), seed=0, replications=1)
        assert res.per_replication["payback_months"].iloc[0] == months == _hand_payback(cost, saving)


# ---------------------------------------------------------------------------------------------
# Exact against Monte Carlo


def _three_scenarios():
    hfg = apply_overrides(load_raw(HFG), {"provider.credit.limit": None}, "hfg")
    bop = apply_overrides(load_raw(BOP), {"referrals": {"rate": 8, "start": 0, "end": 12},
                                          "pathway.transitions.copd.full.cold_home": {"warm_home": 0.35, "cold_home": 0.65}}, "bop")
    return {"tiny": (make(value=_value()), 40), "homes_for_good": (hfg, 40), "boilers_stochastic": (bop, 60)}


@pytest.mark.parametrize("name", ["tiny", "homes_for_good", "boilers_stochastic"])
def test_exact_expected_value_agrees_with_monte_carlo(name):
    raw, reps = _three_scenarios()[name]
    sc = scenario_from_dict(raw, name)
    ex = expected_value(compile_model(sc))
    pr = simulate(sc, seed=11, replications=reps).per_replication
    checked = [k for k in ex if k.startswith(("net_public_value", "value_saves", "value_costs", "value_benefits"))]
    assert "net_public_value" in checked and len(checked) >= 4
    for k in checked:
        x = pr[k].to_numpy()
        se = x.std(ddof=1) / math.sqrt(len(x))
        assert abs(x.mean() - ex[k]) <= 4 * se + 1e-6 * max(1.0, abs(ex[k])), (name, k, x.mean(), ex[k], se)
    if "outcomes_without_programme" in ex:
        x = pr["outcomes_without_programme"].to_numpy()
        assert abs(x.mean() - ex["outcomes_without_programme"]) <= 4 * x.std(ddof=1) / math.sqrt(len(x)) + 1e-9


# ---------------------------------------------------------------------------------------------
# Peterborough: the cost of reoffending


def test_peterborough_values_a_reconviction_avoided_at_the_unit_cost():
    raw = load_raw(PETERBOROUGH)
    v = raw["value"]
    uc = shipped_unit_costs()["reoffending_cost_adult_reoffender"]
    # derived in unit_costs.yaml: adults' £16.7bn a year (2017/18 prices) over four quarters of ~30,000 adult reoffenders
    assert uc.value == round(16.7e9 / (4 * 30_000)) == 139_167 and uc.price_year == v["price_year"] == "2017-18"
    lines = {line["name"]: line for line in v["lines"]}
    prisons, victims = lines["prison_places"], lines["victims_and_society"]
    assert (prisons["to"], victims["to"]) == ("justice", "person")
    # the prisons' share: one six-week spell (£4,500) of £7bn / (60% x 60,000) per reconvicted short-sentence prisoner
    assert prisons["units"] == pytest.approx(4500 / (7e9 / (0.60 * 60_000)), abs=1e-7)
    assert prisons["units"] + victims["units"] == pytest.approx(1.0, abs=1e-12)
    # the counterfactual is the file's own baseline: the rate of prisoners who do not engage, 60% within the window
    cf = v["counterfactual"]["transitions"]["default"]["released"]
    assert cf == raw["pathway"]["transitions"]["not_engaged"]["full"]["released"]
    assert 1 - (1 - cf["reconvicted"]) ** 12 == pytest.approx(raw["contract"]["cohort_payments"][0]["baseline_rate"], abs=1e-5)
    # one cohort released in month 0 is reconvicted (or not) within appraisal year 0, so nothing is discounted:
    # each reconviction avoided is worth the unit cost, £3,220.73 of it to the justice budget
    one = apply_overrides(raw, {"referrals": {"monthly": [400], "distribution": "fixed"}}, "one cohort")
    pr = simulate(scenario_from_dict(one, "one cohort"), seed=3, replications=3).per_replication
    avoided = pr["outcomes_without_programme"] - pr["outcomes"]
    assert (avoided > 0).all()
    assert (pr["value_benefits"] / avoided).to_numpy() == pytest.approx(139_167, rel=1e-12)
    assert (pr["value_saves[justice]"] / avoided).to_numpy() == pytest.approx(3220.7279643, rel=1e-12)
    assert 139_167 * prisons["units"] == pytest.approx(3220.7279643, rel=1e-12)


def test_peterborough_value_exact_agrees_with_monte_carlo():
    """Exact mode cannot run the shipped file (payments on whole cohorts' results, investor finance, a cap); the
    value gains depend only on who is reconvicted, so they are compared on the file without that machinery."""
    raw = apply_overrides(load_raw(PETERBOROUGH), {"contract.cohort_payments": [], "contract.cap": None,
                                                   "provider.credit.limit": None}, "no payments")
    raw.pop("finance")
    sc = scenario_from_dict(raw, "no payments")
    ex = expected_value(compile_model(sc))
    assert ex["value_costs"] == 0 and ex["outcomes_without_programme"] - ex["outcomes"] > 90  # ~97 of 1,802 avoided
    pr = simulate(sc, seed=11, replications=20).per_replication
    for k in ("value_benefits", "value_saves[justice]", "value_saves[person]", "outcomes", "outcomes_without_programme"):
        x = pr[k].to_numpy()
        se = x.std(ddof=1) / math.sqrt(len(x))
        assert abs(x.mean() - ex[k]) <= 4 * se, (k, x.mean(), ex[k], se)


# ---------------------------------------------------------------------------------------------
# Common random numbers


def test_a_counterfactual_identical_to_the_programme_differs_in_no_replication():
    # holistic full service everywhere: the programme's rows are the `full` rows; the same rows without the
    # programme, on the same random numbers, give the same clients the same paths
    full = make()["pathway"]["transitions"]
    v = _value(counterfactual={"transitions": {g: rows["full"] for g, rows in full.items()}, "source": "same"})
    pr = simulate(scenario_from_dict(make(value=v), "same"), seed=4, replications=5).per_replication
    assert (pr["value_programme_gains"] != 0).all()
    assert (pr["value_programme_gains"] - pr["value_counterfactual_gains"]).abs().max() < 1e-9
    assert (pr["outcomes_without_programme"] == pr["outcomes"]).all()


def test_common_random_numbers_narrow_the_programme_minus_counterfactual_interval_at_least_threefold():
    # a programme that raises the job-entry rate by half (the counterfactual: two thirds of it), and benefit paid
    # to everyone out of work: the programme and the counterfactual share referral volumes and most of each
    # client's path, so the paired difference is far less noisy than two independent runs' difference
    cf = {}
    for g, rows in make()["pathway"]["transitions"].items():
        r = {k: dict(v) for k, v in rows["full"].items()}
        job = r["engaged"]["job"]
        r["engaged"]["job"] = round(job * 2 / 3, 4)
        r["engaged"]["engaged"] = round(r["engaged"]["engaged"] + job - r["engaged"]["job"], 4)
        cf[g] = r
    v = _value(counterfactual={"transitions": cf, "source": "test: two thirds of the job-entry rate"},
               lines=[{"name": "benefits_paid", "to": "dwp", "per": "month", "states": ["referred", "engaged", "dropout", "exited"],
                       "amount": -300.0, "source": "test: benefit paid while out of work"}])
    sc = scenario_from_dict(make(value=v), "crn")
    n = 30
    paired = simulate(sc, seed=5, replications=n).per_replication
    other = simulate(sc, seed=6, replications=n).per_replication  # independent random numbers
    se_paired = (paired["value_programme_gains"] - paired["value_counterfactual_gains"]).std(ddof=1) / math.sqrt(n)
    se_unpaired = math.sqrt(paired["value_programme_gains"].var(ddof=1) / n + other["value_counterfactual_gains"].var(ddof=1) / n)
    assert se_unpaired >= 3 * se_paired, (se_unpaired, se_paired)


# ---------------------------------------------------------------------------------------------
# The appraisal's figures


@pytest.fixture(scope="module")
def tiny_run():
    return simulate(tiny(), seed=2, replications=12)


def test_net_public_value_is_public_gains_less_costs_and_splits_by_holder(tiny_run):
    pr = tiny_run.per_replication
    assert np.allclose(pr["net_public_value"], pr["value_public_benefits"] - pr["value_costs"])
    assert np.allclose(pr["value_public_benefits"], pr["value_saves[dwp]"] + pr["value_saves[nhs]"])
    assert np.allclose(pr["value_benefits"], pr["value_public_benefits"] + pr["value_saves[person]"])
    assert np.allclose(pr["net_public_value"], pr["net_public_value[dwp]"] + pr["net_public_value[nhs]"])
    v = tiny_run.summary["value"]
    who = {h["holder"]: h for h in v["holders"]}
    assert who["dwp"]["pays"]["mean"] == pytest.approx(pr["value_costs"].mean()) and who["nhs"]["pays"]["mean"] == 0
    assert not who["person"]["public"]
    assert v["benefit_cost_ratio"]["mean"] == pytest.approx(pr["value_benefits"].sum() / pr["value_costs"].sum())


def test_costs_are_the_commissioners_discounted_spend_with_optimism_bias():
    base = simulate(tiny(), seed=3, replications=3)
    led = base.ledger
    spend = led[led.payer == "commissioner"].groupby(["replication", "month"]).amount_pence.sum() / 100
    d = monthly_factors(36)
    by_hand = spend.groupby(level=0).apply(lambda s: float((s.to_numpy() * d[s.index.get_level_values(1)]).sum()))
    assert base.per_replication["value_costs"].to_numpy() == pytest.approx(by_hand.to_numpy())
    biased = simulate(tiny(optimism_bias={"costs": 0.2, "benefits": 0.1}), seed=3, replications=3).per_replication
    assert biased["value_costs"].to_numpy() == pytest.approx(1.2 * by_hand.to_numpy())
    assert biased["value_public_benefits"].to_numpy() == pytest.approx(0.9 * base.per_replication["value_public_benefits"].to_numpy())


def test_the_tariff_check_flags_prices_above_value_and_below_cost():
    dear = simulate(scenario_from_dict(_bop(tariff=6000), "dear"), seed=0, replications=1).summary["value"]["lines"]
    assert dear[0]["line"] == "all payments" and "above value" in dear[0]["flags"] and "above value" in dear[1]["flags"]
    cheap = simulate(scenario_from_dict(_bop(tariff=4000), "cheap"), seed=0, replications=1).summary["value"]["lines"]
    assert cheap[1]["flags"] == ["below cost"]  # the works cost £5,000 a home
    assert cheap[1]["price_per_outcome"]["mean"] == pytest.approx(4000) and cheap[1]["provider_cost_per_outcome"]["mean"] == pytest.approx(5000)


# ---------------------------------------------------------------------------------------------
# Input checks


@pytest.mark.parametrize("change, path, rule", [
    ({"lines": [{"name": "x", "to": "nhs", "per": "month", "state": "job", "unit_cost": "no_such_cost", "units": 1, "source": "t"}]},
     "value.lines[0].unit_cost", "unknown unit cost 'no_such_cost'"),
    ({"lines": [{"name": "x", "to": "nhs", "per": "month", "state": "job", "amount": 1.0, "price_year": "2010-11", "source": "t"}]},
     "value.lines[0].amount", "need a deflator"),
    ({"horizon_years": 1}, "value.horizon_years", "shorter than the contract"),
])
def test_value_input_the_schema_cannot_see_is_reported_with_its_field(change, path, rule):
    with pytest.raises(ScenarioError) as e:
        check(tiny(**change), "f.yaml")
    assert any(p == path and rule in r for p, r in e.value.problems), e.value.problems


@pytest.mark.parametrize("change, path, rule", [
    ({"counterfactual": {"transitions": {"default": {"referred": {"engaged": 0.5}}}, "source": "t"}},
     "value.counterfactual.transitions.default.referred", "row must sum to 1"),
    ({"lines": [{"name": "x", "to": "nhs", "per": "month", "state": "jobs", "amount": 1.0, "source": "t"}]}, "value.lines[0].state", "unknown state"),
    ({"lines": [{"name": "x", "to": "nhs", "per": "month", "state": "job", "amount": {"easy": 1.0, "hard": 2.0}, "source": "t"}]},
     "value.lines[0].amount", "per-segment amounts apply to per: entry"),
    ({"price_year": "2014"}, "value.price_year", "financial year"),
    ({"commissioner_budget": "person"}, "value.commissioner_budget", "not a budget holder"),
])
def test_bad_value_sections_are_refused_by_the_schema(change, path, rule):
    with pytest.raises(ScenarioError) as e:
        tiny(**change)
    assert any(p == path and rule in r for p, r in e.value.problems), e.value.problems


def test_every_shipped_unit_cost_names_its_publication():
    table = shipped_unit_costs()
    assert {"gp_appointment", "emergency_admission", "homelessness_prevented_year", "fiscal_gain_living_wage_job"} <= set(table)
    for key, uc in table.items():
        assert uc.publisher and uc.publication and uc.price_year and uc.value > 0, key
        assert uc.source and uc.url is None, key  # the publication by its key in docs/sources.md (tests/test_sources.py)


# ---------------------------------------------------------------------------------------------
# Value in the commands


@pytest.fixture(scope="module")
def bop_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("value") / "bop"
    r = CliRunner().invoke(main, ["run", str(BOP), "-n", "2", "--out", str(out), "--report"])
    assert r.exit_code == 0, r.output
    return out, r.output


def test_run_prints_value_for_money(bop_run):
    out, output = bop_run
    for phrase in ("Value for money", "net present public value", "Who pays, who saves", "nhs", "payback"):
        assert phrase in output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["value"]["payback_months"]["median"] == 59


def test_a_bad_value_section_exits_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    raw = load_raw(BOP)
    raw["value"]["lines"][0]["unit_cost"] = "gp_visit"
    bad.write_text(json.dumps(raw))
    r = CliRunner().invoke(main, ["run", str(bad), "-n", "1", "--out", str(tmp_path / "never")])
    assert r.exit_code == 2 and "value.lines[0].unit_cost" in r.output and "gp_visit" in r.output
    assert not (tmp_path / "never").exists()


def test_run_exact_reports_the_expected_value(tmp_path):
    r = CliRunner().invoke(main, ["run", str(BOP), "--method", "exact", "--out", str(tmp_path / "ex")])
    assert r.exit_code == 0, r.output
    assert "Expected public value" in r.output
    v = json.loads((tmp_path / "ex" / "summary.json").read_text())["value"]
    assert v["payback_months"] == 59 and v["value_costs"] == pytest.approx(300000.0)


def test_compare_gives_paired_differences_of_net_public_value():
    sc_a = scenario_from_dict(apply_overrides(load_raw(HFG), {"provider.credit.limit": None}, "a"), "a")
    sc_b = scenario_from_dict(apply_overrides(load_raw(HFG), {"provider.credit.limit": None, "contract.payments[3].tariff": 3000}, "b"), "b")
    per = {"a": simulate(sc_a, seed=1, replications=8).per_replication, "b": simulate(sc_b, seed=1, replications=8).per_replication}
    table = summary_table(per, ["a", "b"], "a")
    row = table[(table.metric == "net_public_value") & (table.design == "b")].iloc[0]
    assert row["in_table"] and row["unit"] == "money"
    assert row["diff"] == pytest.approx((per["b"]["net_public_value"] - per["a"]["net_public_value"]).mean())
    assert row["diff"] < 0 and row["diff_se"] < row["diff_se_unpaired"] / 3
    assert {"benefit_cost_ratio", "fiscal_return", "net_public_value[local_authority]"} <= set(table.metric)


def test_value_under_stress_is_paired_with_the_base():
    base = _bop()
    dearer = apply_overrides(base, {"contract.payments[0].tariff": 6000}, "dearer")
    rows = value_under_stress([("base", "base", base), ("dearer", "dearer works", dearer)], seed=0, replications=2)
    extra = 10 * 1000.0  # ten homes, £1,000 more each, all paid in month 0 (undiscounted)
    assert rows[1]["change"]["mean"] == pytest.approx(-extra) and rows[1]["change"]["lo"] == pytest.approx(-extra)


def test_the_report_opens_with_value_for_money(bop_run):
    out, _ = bop_run
    html = (out / "report" / "report.html").read_text()
    assert html.index('<section id="value-for-money"') < html.index('<section id="cash-flow"')
    v = json.loads((out / "summary.json").read_text())["value"]
    from pbrsim.report import fmt

    assert 'data-metric="net_public_value">' in html and fmt.interval(v["net_public_value"], "money") in html
