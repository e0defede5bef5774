"""The Python API (docs/python.md): variants by field path, results that display briefly, tidy tables in
pounds that agree with the command line's figures, in-memory comparisons and stress tests, exports."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import pbrsim
from pbrsim.cli.main import main

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "tests" / "fixtures" / "valid_small.yaml"
EXPERIMENT = ROOT / "tests" / "fixtures" / "experiments" / "small.yaml"


@pytest.fixture(scope="module")
def base():
    return pbrsim.load_scenario(SMALL)


@pytest.fixture(scope="module")
def result(base):
    return pbrsim.simulate(base, seed=3, replications=8)


# --- variants ---------------------------------------------------------------------------------------------


def test_vary_sets_appends_and_removes_without_changing_the_original(base):
    v = base.vary({"contract.service_fee.share_of_value": 0.4}, name="fee40")
    assert v.contract.service_fee.share_of_value == 0.4 and v.name == "fee40"
    assert base.contract.service_fee.share_of_value == 0.2 and base.name == "valid_small"
    extra = dict(base.to_dict()["contract"]["payments"][2], name="bonus", tariff=10.0)
    appended = base.vary({"contract.payments[+]": extra})
    assert [p.name for p in appended.contract.payments] == [p.name for p in base.contract.payments] + ["bonus"]
    removed = base.vary(remove=["contract.payments[name=in_work]"])
    assert "in_work" not in [p.name for p in removed.contract.payments]
    assert base.get("contract.payments[name=sustained_job].lag") == 2


def test_vary_errors_say_fractions_and_suggest_the_field(base):
    with pytest.raises(pbrsim.ScenarioError) as exc:
        base.vary({"contract.service_fee.share_of_value": 40})
    assert "fractions between 0 and 1: write 0.4 for 40%" in str(exc.value)
    with pytest.raises(pbrsim.ScenarioError) as exc:
        base.vary({"contract.service_fee.share_of_valu": 0.4})
    assert "did you mean 'share_of_value'?" in str(exc.value)
    with pytest.raises(pbrsim.ScenarioError) as exc:
        base.vary({"contract.payments[3].tariff": 1})  # one past the end: the message says how to append
    assert "set contract.payments[+]" in str(exc.value)


# --- one result ---------------------------------------------------------------------------------------------


def test_result_displays_briefly(result):
    text = repr(result)
    assert text.startswith("<SimulationResult 'valid_small': 8 replications, seed 3;") and len(text) < 300
    html = result._repr_html_()
    assert html.count("<tr>") > 5 and "money in pounds" in html and "outcome rate: all" in html


def test_summary_table_is_in_pounds_and_agrees_with_the_summary(result):
    t = result.summary_table()
    spend = t[t.figure == "paid_total"].iloc[0]
    assert spend.unit == "pounds" and spend["mean"] == pytest.approx(result.summary["commissioner"]["paid_total"]["mean"])
    ledger = result.ledger
    ledger_pounds = ledger.loc[ledger.payer == result.scenario.contract.commissioner, "amount_pence"].sum() / 100 / result.replications
    assert spend["mean"] == pytest.approx(ledger_pounds)
    rates = t[(t.metric == "outcome_rate") & t.segment.notna()]
    assert set(rates.segment) == {"easy", "complex"} and (rates.unit == "fraction").all()
    org = t[t.figure == "failed[small_charity]"].iloc[0]
    assert org.metric == "failed" and org.organisation == "small_charity" and pd.isna(org.segment)


def test_long_replications_match_the_wide_table(result):
    long = result.replications_long()
    assert list(long.columns) == ["replication", "metric", "organisation", "segment", "item", "value"]
    wide = result.per_replication
    got = long[(long.metric == "lowest_cash") & (long.organisation == "small_charity")].set_index("replication")["value"]
    np.testing.assert_allclose(got.sort_index().to_numpy(), wide["lowest_cash[small_charity]"].to_numpy())
    paid = long[(long.metric == "paid") & (long.item == "outcome")]
    assert len(paid) == result.replications


def test_plots_draw_what_they_say(result):
    ax = result.plot_cash()
    median = ax.lines[0].get_ydata()
    cash = result.monthly.pivot_table(index="month", columns="replication", values="cash_pence", observed=True) / 100
    np.testing.assert_allclose(median[1:], np.median(cash.to_numpy(), axis=1))  # pounds, not pence
    ax = result.plot_outcomes()
    assert len(ax.patches) == 3  # two segments and all


def test_several_workers_give_the_same_run(base, result):
    par = pbrsim.simulate(base, seed=3, replications=8, workers=2)
    pd.testing.assert_frame_equal(par.per_replication, result.per_replication)
    pd.testing.assert_frame_equal(par.ledger, result.ledger)


def test_exports_follow_the_output_rule(result, tmp_path):
    path = result.export(tmp_path / "summary.csv")
    back = pd.read_csv(path)
    assert len(back) == len(result.summary_table())
    with pytest.raises(FileExistsError):
        result.export(path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    from pbrsim.store import OutputRefused

    with pytest.raises(OutputRefused):
        result.save(mine)
    result.save(mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep" and (mine / "summary.json").exists()


# --- comparisons and stress tests ------------------------------------------------------------------------------


def test_compare_in_memory_matches_pbrsim_compare(tmp_path):
    comparison = pbrsim.compare(EXPERIMENT, replications=4)
    assert repr(comparison).startswith("<Comparison 'small': 5 designs") and len(repr(comparison)) < 300
    out = tmp_path / "ds"
    r = CliRunner().invoke(main, ["compare", str(EXPERIMENT), "-n", "4", "-o", str(out), "--executor", "serial", "-q"])
    assert r.exit_code == 0, r.output
    cli = pd.read_parquet(out / "summary.parquet").rename(columns={"metric": "figure"})
    mine = comparison.table()
    joined = mine.merge(cli[["design", "figure", "mean", "diff"]], on=["design", "figure"], suffixes=("", "_cli"))
    assert len(joined) == len(cli) == len(mine)
    np.testing.assert_allclose(joined["mean"], joined["mean_cli"])
    np.testing.assert_allclose(joined["diff"].astype(float), joined["diff_cli"].astype(float))
    # the copy of the baseline differs by exactly nothing; the sweep's values are a typed column
    same = mine.set_index(["design", "figure"]).loc[("same_as_blended", "paid_total")]
    assert same["diff"] == 0 and same["diff_lo"] == 0
    assert str(comparison.table()["share_of_value"].dtype) == "Float64"
    assert "difference from blended" in comparison._repr_html_()
    ax = comparison.plot("paid_total")
    assert len(ax.get_yticklabels()) == 4  # every design but the baseline


def test_compare_names_designs_and_refuses_duplicates(base):
    with pytest.raises(ValueError, match="two designs are named"):
        pbrsim.compare([base, base], replications=2)


def test_stress_in_memory(base, tmp_path):
    test = pbrsim.stress(base, replications=6, only=["delay_6"], executor="serial")
    t = test.table()
    assert list(t.stress) == ["base", "delay_6"]
    assert ((t.failure >= 0) & (t.failure <= 1)).all()
    assert t.set_index("stress").loc["delay_6", "failure"] >= t.set_index("stress").loc["base", "failure"]
    assert repr(test).startswith("<StressTest 'valid_small' for 'small_charity': 1 stresses") and len(repr(test)) < 300
    assert "ran out of cash" in test._repr_html_()
    test.save(tmp_path / "st")
    assert (tmp_path / "st" / "stresses.parquet").exists()


def test_design_search_in_memory_is_the_command_without_files(tmp_path):
    """pbrsim.design_search: the goal seek `pbrsim design` runs, in memory, with the same summary."""
    import json

    from click.testing import CliRunner

    import pbrsim
    from pbrsim.cli.main import main

    scenario = str(ROOT / "scenarios" / "blended_vcs.yaml")
    lever, target = "contract.service_fee.share_of_value", "failure(community_links_style_charity) <= 0.2"
    res = pbrsim.design_search(scenario, lever=lever, target=target, range_=(0.0, 0.5), step=0.05, replications=40,
                               verify_replications=40, executor="serial")
    r = CliRunner().invoke(main, ["design", scenario, "--lever", lever, "--target", target, "--range", "0", "0.5",
                                  "--step", "0.05", "-n", "40", "--verify-replications", "40", "--executor", "serial",
                                  "-o", str(tmp_path / "d"), "-q"])
    assert r.exit_code == 0, r.output
    written = json.loads((tmp_path / "d" / "summary.json").read_text())
    written["answer"].pop("file")  # the scenario file the command writes for the answer
    for key in ("status", "answer", "precision", "curve", "bracket", "verification"):
        assert json.loads(json.dumps(res.summary[key])) == written[key], key
    assert res.feasible == written["feasible"] and res.chosen == res.summary["answer"]
    assert "goal seek" in repr(res) and len(repr(res)) < 300
    assert "<table" in res._repr_html_() and len(res.table()) == len(written["curve"])
    assert not any(tmp_path.glob("results*"))  # nothing written by the in-memory search
