"""Experiment files, designs and sweeps, `compare` / `batch` / `summarise`, and fair (paired) comparisons."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner

from pbrsim.experiments.batch import run_batch, summarise_dataset
from pbrsim.cli.main import main
from pbrsim.analysis.compare import metric_list, summary_table
from pbrsim.experiments.experiment import expand_values, load_experiment
from pbrsim.analysis.estimators import t95
from pbrsim.scenario.schema import ScenarioError, file_hash, load_scenario, read_yaml

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "experiments"
SMALL = FIX / "small.yaml"
SHIPPED = ROOT / "scenarios" / "experiments" / "vcs_designs.yaml"


# ---------------------------------------------------------------------------------------------
# Loading and resolving


def test_shipped_experiment_resolves_to_the_documented_designs():
    exp = load_experiment(SHIPPED)
    names = [d.name for d in exp.designs]
    assert names == ["blended", "outcomes_only", "upfront_50"] + [f"upfront_share-{v}" for v in ("0", "0.1", "0.2", "0.3", "0.4", "0.5")]
    assert exp.baseline.name == "blended" and exp.seed == 7 and exp.replications == 200
    # outcomes_only written as overrides is the shipped outcomes-only scenario (apart from its name and text)
    oo, shipped = exp.design("outcomes_only").scenario, load_scenario(ROOT / "scenarios" / "outcomes_only_vcs.yaml")
    assert (oo.contract, oo.provider, oo.pathway, oo.referrals, oo.segments) == (
        shipped.contract, shipped.provider, shipped.pathway, shipped.referrals, shipped.segments)
    # the sweep point at the drafted share is the baseline scenario itself: same fingerprint
    assert exp.design("upfront_share-0.3").fingerprint == exp.baseline.fingerprint
    assert exp.design("upfront_share-0.3").raw == read_yaml(ROOT / "scenarios" / "blended_vcs.yaml")
    assert [exp.design(f"upfront_share-{v}").scenario.contract.service_fee.share_of_value for v in ("0", "0.1", "0.5")] == [0, 0.1, 0.5]


def test_range_values_are_inclusive_exact_and_keep_integers():
    assert expand_values({"from": 0, "to": 0.5, "step": 0.1}) == [0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert expand_values({"from": 0, "to": 0.45, "step": 0.1}) == [0, 0.1, 0.2, 0.3, 0.4]
    assert expand_values({"from": 1000, "to": 400, "step": -300}) == [1000, 700, 400]
    assert all(isinstance(v, int) for v in expand_values({"from": 1, "to": 9, "step": 4}))
    assert expand_values([{"a": 1}, 2]) == [{"a": 1}, 2]


def test_grid_is_a_cartesian_product_and_zip_varies_together(tmp_path):
    f = tmp_path / "sweep.yaml"
    f.write_text(f"""
base: {ROOT / 'tests' / 'fixtures' / 'valid_small.yaml'}
replications: 2
sweeps:
  - name: s
    grid:
      contract.service_fee.share_of_value: [0.1, 0.2]
      contract.payments[name=sustained_job].tariff: [1000, 2000]
    zip:
      provider.capacity: [10, 20]
      provider.opening_cash: [1000, 2000]
    labels:
      contract.payments[name=sustained_job].tariff: outcome
""")
    exp = load_experiment(f)
    assert len(exp.designs) == 8 and exp.baseline.name == "s_share_of_value-0.1_outcome-1000_capacity-10_opening_cash-1000"
    last = exp.designs[-1]
    assert last.name == "s_share_of_value-0.2_outcome-2000_capacity-20_opening_cash-2000"
    assert last.scenario.provider.capacity == 20 and last.scenario.provider.opening_cash == 2000
    assert last.scenario.contract.payments[2].tariff == 2000
    assert exp.name == "sweep"  # default name: the file name


BROKEN = {
    "unknown_top_level_key": "replicatoins: unknown field",
    "missing_base": "base: required field is missing",
    "replications_zero": "replications: Input should be greater than or equal to 1",
    "bad_design_name": "designs[1].name: names may use letters, digits and _ . + -",
    "duplicate_design_name": "designs[2] (outcomes_only): design name 'outcomes_only' is already used by designs[1]",
    "two_baselines": "designs: only one design can be the baseline; marked: ['blended', 'outcomes_only']",
    "unknown_payment_name": "designs[1] (outcomes_only): set contract.payments[name=sustained_jobs].tariff: no item of "
                            "contract.payments has name = 'sustained_jobs'; names are ['in_work', 'sustained_job']",
    "index_out_of_range": "designs[1] (outcomes_only): set contract.payments[9].tariff: contract.payments has 2 items; index 9 is out of range",
    "malformed_path": "designs[1] (outcomes_only): cannot read field path 'contract..tariff'",
    "invalid_value": "designs[2] (same_as_blended): in the scenario it makes, contract.service_fee.share_of_value: "
                     "Input should be less than or equal to 1",
    "unknown_scenario_field": "designs[2] (same_as_blended): in the scenario it makes, contract.upfront_share: unknown field",
    "base_not_found": "base: ../../no_such_scenario.yaml: cannot read file",
    "range_zero_step": "sweeps[0].grid['contract.service_fee.share_of_value']: step must not be 0",
    "range_bad_keys": "sweeps[0].grid['contract.service_fee.share_of_value']: a range is written {from: A, to: B, step: S}; unknown ['upto']",
    "sweep_zip_unequal": "sweeps[0].zip: zipped lists must have the same length",
    "sweep_without_values": "sweeps[0]: a sweep needs `grid` (every combination) or `zip`",
    "sweep_name_collision": "design name 'fee_share_of_value-0.1' is already used by designs[2]",
    "unknown_table": "tables[0]: unknown table 'clientz'",
    "remove_missing": "designs[1] (outcomes_only): remove contract.cap: contract.cap is not set, so it cannot be removed",
    "duplicate_key": "duplicate key 'seed'",
    "no_designs": "designs: an experiment needs at least one design or sweep",
    "unknown_design_field": "designs[1].overrides: unknown field",
}


def test_every_broken_fixture_has_a_test():
    assert {p.stem for p in (FIX / "broken").glob("*.yaml")} == set(BROKEN)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_experiment_is_refused_with_file_path_and_rule(name, tmp_path):
    path = FIX / "broken" / f"{name}.yaml"
    with pytest.raises(ScenarioError) as info:
        load_experiment(path)
    assert len(info.value.problems) == 1, info.value.problems
    assert BROKEN[name] in str(info.value)
    assert str(info.value).startswith(str(path) + ": ")
    # the command line: exit code 2, the same message, nothing written
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["batch", str(path), "--out", str(out), "--executor", "serial"])
    assert r.exit_code == 2
    assert BROKEN[name] in " ".join(r.output.split()) and "Nothing was run or written" in r.output
    assert not out.exists()


def test_broken_base_scenario_is_reported_once_under_base(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "tests" / "fixtures" / "broken" / "negative_tariff.yaml").read_text())
    exp = tmp_path / "e.yaml"
    exp.write_text("base: bad.yaml\nreplications: 2\ndesigns: [{name: a}, {name: b}]\n")
    with pytest.raises(ScenarioError) as info:
        load_experiment(exp)
    assert len(info.value.problems) == 1
    assert info.value.problems[0][0] == "base" and "bad.yaml: contract.payments[1].tariff: Value error, tariff must not be negative" in info.value.problems[0][1]


# ---------------------------------------------------------------------------------------------
# Summaries and fair comparisons


def _subset(exp, names, replications):
    designs = tuple(d for d in exp.designs if d.name in names)
    return dataclasses.replace(exp, designs=designs, replications=replications)


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    """30 replications of three designs, per-replication figures only (what `compare` runs)."""
    exp = _subset(load_experiment(SMALL), {"blended", "outcomes_only", "fee_share_of_value-0.1"}, 30)
    out = tmp_path_factory.mktemp("paired") / "small"
    run_batch(exp, out, executor="process", workers=2, tables=("replications",))
    return exp, out, summarise_dataset(out)


def test_common_random_numbers_give_every_design_the_same_clients(paired):
    _, out, _ = paired
    per_rep = pd.read_parquet(out / "runs" / "replications")
    failed = per_rep.pivot(index="replication", columns="design", values="failed_any").max(axis=1)
    ok = failed.index[failed == 0]  # a provider failure stops referrals, so compare replications without one
    assert 10 <= len(ok) < 30
    for column in ("referrals", "outcomes[easy]", "outcomes[complex]"):
        wide = per_rep.pivot(index="replication", columns="design", values=column).loc[ok]
        assert wide.shape == (len(ok), 3)
        assert (wide.nunique(axis=1) == 1).all(), column  # replication r: the same clients and luck in every design
        assert wide.iloc[:, 0].nunique() > 3  # ...which do vary between replications


def test_paired_intervals_are_narrower_than_unpaired(paired):
    _, _, summary = paired
    rows = summary[~summary.baseline & (summary.metric.isin(["paid_total", "cost_per_outcome", "outcome_rate"])
                                        | summary.metric.str.startswith("lowest_cash[") | summary.metric.str.startswith("margin["))]
    assert set(rows.design) == {"outcomes_only", "fee_share_of_value-0.1"} and len(rows) == 10
    for r in rows.itertuples():
        assert r.pairs == 30
        assert r.diff_hi - r.diff_lo == pytest.approx(2 * t95(30) * r.diff_se)  # Student t, 29 degrees of freedom
        # a typical pair (a lower service fee): pairing removes most of the noise; even for a design that
        # makes the provider fail in a fifth of runs (outcomes only), the paired interval is narrower
        factor = 0.5 if r.design == "fee_share_of_value-0.1" else 1.0
        assert r.diff_se < factor * r.diff_se_unpaired, (r.design, r.metric, r.diff_se, r.diff_se_unpaired)
    # the paired estimate is exactly the difference of the two designs' estimates
    s = summary.set_index(["design", "metric"])
    for d in ("outcomes_only", "fee_share_of_value-0.1"):
        for m in ("paid_total", "cost_per_outcome", "outcome_rate[complex]"):
            assert s.loc[(d, m), "diff"] == pytest.approx(s.loc[(d, m), "mean"] - s.loc[("blended", m), "mean"], abs=1e-9)


def test_paying_less_upfront_costs_the_commissioner_less_and_the_charity_cash(paired):
    _, _, summary = paired
    s = summary.set_index(["design", "metric"])
    org = next(m for d, m in s.index if m.startswith("lowest_cash["))
    fee = s.loc[("fee_share_of_value-0.1", "paid_total")]
    # 10% instead of 20% of £50k as service fee: exactly £5,000 less in every replication (same clients, same luck)
    assert fee["diff"] == pytest.approx(-5000, abs=1e-6) and fee["diff_se"] == pytest.approx(0, abs=1e-9)
    assert s.loc[("fee_share_of_value-0.1", org), "diff_hi"] < 0


def test_summary_has_one_row_per_design_and_metric_and_picks_up_new_columns():
    rng = np.random.default_rng(1)
    n = 30
    base = pd.DataFrame({"referrals[a]": rng.poisson(50, n), "outcomes[a]": rng.poisson(10, n), "paid_total": rng.normal(1e5, 1e4, n),
                         "lowest_cash[p]": rng.normal(0, 1e4, n), "failed[p]": rng.integers(0, 2, n),
                         "service_months[a]": rng.poisson(500, n), "minimal_months[a]": rng.poisson(50, n),
                         "dropped[a]": rng.poisson(3, n), "unknown_column": 1.0},
                        index=pd.RangeIndex(n, name="replication"))
    base["referrals"], base["outcomes"] = base["referrals[a]"], base["outcomes[a]"]
    other = base.copy()
    other["minimal_months[a]"] *= 2
    other["failed[p]"] = 1
    names = [m.name for m in metric_list(base.columns)]
    assert names[:2] == ["outcome_rate[a]", "outcome_rate"]
    assert {"paid_total", "cost_per_outcome", "parking_rate[a]", "dropped[a]", "lowest_cash[p]", "failed[p]"} <= set(names)
    assert "unknown_column" not in names and "equity_ratio" not in names
    table = summary_table({"x": base, "y": other}, ["x", "y"], "x")
    assert len(table) == 2 * len(names) and not table.duplicated(["design", "metric"]).any()
    y = table.set_index(["design", "metric"]).loc["y"]
    pooled = base["minimal_months[a]"].sum() / base["service_months[a]"].sum()  # parking rate: one pooled ratio everywhere
    assert y.loc["parking_rate[a]", "mean"] == pytest.approx(2 * pooled) and y.loc["parking_rate[a]", "diff"] == pytest.approx(pooled)
    assert y.loc["failed[p]", "mean"] == 1 and y.loc["failed[p]", "diff_hi"] <= 1
    assert y.loc["outcome_rate", "diff"] == 0


# ---------------------------------------------------------------------------------------------
# Commands


def test_compare_prints_designs_side_by_side_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["compare", str(SMALL), "--workers", "2"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    for phrase in ("small: 5 designs, 6 replications of each design, seed 11; baseline blended", "outcomes_only", "same_as_blended",
                   "fee_share_of_value-0.3", "outcome rate: easy", "outcome rate: complex", "commissioner spend", "cost per outcome",
                   "lowest cash", "ran out of cash", "Δ 0 in every run", "paired difference"):
        assert phrase in text, phrase
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "small"
    r = CliRunner().invoke(main, ["batch", str(SMALL), "--out", str(out), "--workers", "2"])
    assert r.exit_code == 0, r.output
    return out, r.output


def test_batch_dataset_reads_in_one_call_with_design_and_replication(dataset):
    out, output = dataset
    assert "30 runs (5 designs x 6 replications; 30 run now, 0 already done)" in output
    clients = pd.read_parquet(out / "runs" / "clients")
    assert {"design", "replication", "segment", "first_sustained"} <= set(clients.columns)
    assert set(clients.design) == {"blended", "outcomes_only", "same_as_blended", "fee_share_of_value-0.1", "fee_share_of_value-0.3"}
    per_run = clients.groupby(["design", "replication"], observed=True).size().unstack("design")
    assert per_run.shape == (6, 5) and per_run.notna().all().all()
    # the same clients in every design where the provider never fails (outcomes-only fails in some runs, ending referrals)
    assert (per_run.drop(columns="outcomes_only").nunique(axis=1) == 1).all()
    ledger = ds.dataset(out / "runs" / "ledger", partitioning="hive").to_table().to_pandas()
    assert {"design", "replication", "payer", "payee", "kind", "amount_pence"} <= set(ledger.columns)
    reps = pd.read_parquet(out / "runs" / "replications")
    assert len(reps) == 30 and not reps.duplicated(["design", "replication"]).any()
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["claims", "clients", "failures", "ledger", "monthly", "replications", "settlements"]


def test_batch_writes_summary_manifest_and_runnable_designs(dataset):
    out, _ = dataset
    summary = pd.read_parquet(out / "summary.parquet")
    csv = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(csv) and not summary.duplicated(["design", "metric"]).any()
    assert list(summary.columns[:4]) == ["design", "baseline", "metric", "label"]
    assert summary.loc[summary.baseline, "design"].unique().tolist() == ["blended"]
    man = json.loads((out / "manifest.json").read_text())
    assert man["experiment"]["sha256"] == file_hash(SMALL) and man["seed"] == 11 and man["version"]
    assert man["status"] == "complete" and man["started_at"] <= man["finished_at"]
    assert man["runs"] == {"total": 30, "done": 30} and man["baseline"] == "blended"
    assert [d["name"] for d in man["designs"]][:2] == ["blended", "outcomes_only"]
    assert man["sessions"][-1]["runs_run"] == 30
    assert not (out / ".pbrsim.lock").exists() and not (out / "runs" / ".tmp").exists()
    oo = load_scenario(out / "designs" / "outcomes_only.yaml")
    assert [p.name for p in oo.contract.payments] == ["in_work", "sustained_job"] and oo.contract.service_fee is None


def test_rerunning_a_finished_batch_runs_nothing(dataset):
    out, _ = dataset
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.parquet")}
    r = CliRunner().invoke(main, ["batch", str(SMALL), "--out", str(out), "--executor", "serial"])
    assert r.exit_code == 0, r.output
    assert "0 run now, 30 already done" in r.output
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.parquet")} == before


def test_summarise_recomputes_the_same_summary(dataset):
    out, _ = dataset
    before = pd.read_parquet(out / "summary.parquet")
    (out / "summary.parquet").unlink()
    (out / "summary.csv").unlink()
    r = CliRunner().invoke(main, ["summarise", str(out)])
    assert r.exit_code == 0, r.output
    assert "commissioner spend" in r.output and "Summary written to" in r.output
    pd.testing.assert_frame_equal(pd.read_parquet(out / "summary.parquet"), before)
    assert (out / "summary.csv").exists()


def test_summarise_refuses_a_folder_that_is_not_a_dataset(tmp_path):
    r = CliRunner().invoke(main, ["summarise", str(tmp_path)])
    assert r.exit_code == 2 and "is not a pbrsim experiment dataset" in r.output


def test_the_researcher_examples_in_the_docs_run_on_a_dataset(dataset, capsys):
    """The pandas / pyarrow code in docs/experiments.md, run on the fixture dataset instead of results/vcs_designs."""
    out, _ = dataset
    text = (ROOT / "docs" / "experiments.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    blocks = [b for b in blocks if "DATA" in b]
    assert len(blocks) == 3
    blocks = blocks[:1]  # the summary and DuckDB blocks name the worked example's sweep: tests/test_doc_snippets.py runs them
    namespace: dict = {}
    for block in blocks:
        exec(compile(block.replace('"results/vcs_designs"', repr(str(out))), "docs/experiments.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "outcomes-only minus blended spend" in printed
    assert len(namespace["runs"]) == 30 and namespace["clients"].design.nunique() == 5
    assert len(namespace["outcome_money"]) > 0 and set(namespace["outcome_money"].columns) == {"replication", "month", "segment", "amount_pence"}
