"""Kinds of input file: a file given to the wrong command gets one line naming the right command, and
`pbrsim validate` checks a file of any kind; experiments append to lists and set fields experiment-wide,
and their sweep values become typed columns of the summary and the long replications table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from pbrsim.cli.main import main
from pbrsim.experiments.experiment import load_experiment
from pbrsim.scenario.kinds import kind_of_file
from pbrsim.scenario.schema import ScenarioError

ROOT = Path(__file__).resolve().parents[1]
SMALL = str(ROOT / "tests" / "fixtures" / "valid_small.yaml")
EXPERIMENT = str(ROOT / "tests" / "fixtures" / "experiments" / "small.yaml")
STRESSES = str(ROOT / "scenarios" / "stress" / "example_stresses.yaml")
PORTFOLIO = str(ROOT / "scenarios" / "portfolios" / "fair_chance_fund.yaml")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_kinds_are_recognised():
    assert kind_of_file(SMALL) == "scenario"
    assert kind_of_file(EXPERIMENT) == "experiment"
    assert kind_of_file(PORTFOLIO) == "portfolio"
    assert kind_of_file(STRESSES) == "stresses"


@pytest.mark.parametrize("args, says", [
    (["run", EXPERIMENT], "is an experiment file, not a scenario file: use pbrsim compare"),
    (["stress", EXPERIMENT], "is an experiment file, not a scenario file: use pbrsim compare"),
    (["compare", SMALL], "is a scenario file, not an experiment file: use pbrsim run"),
    (["batch", PORTFOLIO], "is a portfolio file, not an experiment file: use pbrsim portfolio"),
    (["portfolio", EXPERIMENT], "is an experiment file, not a portfolio file"),
    (["stress", SMALL, "--stresses", SMALL], "is a scenario file, not a stresses file"),
])
def test_the_wrong_kind_of_file_gets_one_line(args, says, tmp_path):
    r = invoke(*args, "--out", tmp_path / "o") if args[0] != "stress" or "--stresses" in args else invoke(*args)
    assert r.exit_code == 2
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0] and "Nothing was run or written" in lines[0]
    assert not (tmp_path / "o").exists()


def test_validate_checks_any_kind(tmp_path):
    r = invoke("validate", SMALL, EXPERIMENT, PORTFOLIO, STRESSES)
    assert r.exit_code == 0, r.output
    assert "OK (stresses file" in r.output
    assert "OK (scenario valid_small" in r.output and "OK (experiment small: 5 designs x 6 replications" in r.output
    assert "OK (portfolio fair_chance_fund" in r.output
    bad = tmp_path / "bad_experiment.yaml"
    bad.write_text(f"base: {SMALL}\nreplicatons: 3\ndesigns: [{{name: a}}]\n")
    r = invoke("validate", bad)
    assert r.exit_code == 2 and "replicatons: unknown field (did you mean 'replications'?" in r.output
    assert "field required" not in r.output.lower().replace("required field is missing", "")


def _experiment(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: ergo\nbase: {SMALL}\nseed: 2\nreplications: 2\n" + body)
    return path


def test_experiment_wide_set_appends_to_a_list_for_every_design(tmp_path):
    path = _experiment(tmp_path, """
set:
  "contract.payments[+]": {name: bonus, kind: outcome, state: sustained, tariff: 100.0, lag: 1}
designs:
  - name: with_bonus
  - name: bonus_without_job_start
    remove: ["contract.payments[name=job_start]"]
sweeps:
  - name: fee
    grid: {contract.service_fee.share_of_value: [0.1, 0.3]}
""")
    exp = load_experiment(path)
    names = {d.name: [p.name for p in d.scenario.contract.payments] for d in exp.designs}
    assert names["with_bonus"] == ["job_start", "in_work", "sustained_job", "bonus"]
    assert names["bonus_without_job_start"] == ["in_work", "sustained_job", "bonus"]
    assert names["fee_share_of_value-0.1"][-1] == "bonus"
    assert exp.design("fee_share_of_value-0.3").sweep == {"share_of_value": 0.3}


def test_appending_past_the_end_says_how(tmp_path):
    path = _experiment(tmp_path, "designs:\n  - name: a\n    set: {\"contract.payments[3]\": {name: x}}\n")
    with pytest.raises(ScenarioError) as exc:
        load_experiment(path)
    assert "set contract.payments[+]" in str(exc.value)


def test_sweep_values_are_typed_columns_and_the_long_table_needs_no_quoting(tmp_path):
    import duckdb

    path = _experiment(tmp_path, """
designs:
  - name: base
sweeps:
  - name: grid
    grid:
      contract.service_fee.share_of_value: [0.1, 0.3]
      contract.value: [40000, 60000]
""")
    out = tmp_path / "ds"
    r = invoke("batch", path, "-o", out, "--executor", "serial", "-q")
    assert r.exit_code == 0, r.output
    summary = pd.read_parquet(out / "summary.parquet")
    assert str(summary["share_of_value"].dtype) == "Float64" and str(summary["sweep_value"].dtype) == "Int64"
    assert summary.loc[summary.design == "base", "share_of_value"].isna().all()
    long = pd.read_parquet(out / "replications_long.parquet")
    assert list(long.columns[:3]) == ["design", "share_of_value", "sweep_value"]
    # the long table holds the same numbers as the wide one
    wide = pd.read_parquet(out / "runs" / "replications").sort_values(["design", "replication"])
    got = duckdb.sql(f"SELECT design, replication, value FROM '{out}/replications_long.parquet' "
                     "WHERE metric = 'lowest_cash' AND organisation = 'small_charity' ORDER BY design, replication").df()
    assert list(got["value"]) == pytest.approx(list(wide["lowest_cash[small_charity]"]))
    csv = invoke("summarise", out, "--format", "csv")
    assert csv.exit_code == 0 and csv.output.splitlines()[0].endswith("share_of_value,sweep_value")


def test_compare_and_batch_take_seed_and_replications(tmp_path):
    out = tmp_path / "ds"
    r = invoke("compare", EXPERIMENT, "-n", 2, "--seed", 5, "-o", out, "--executor", "serial", "-q")
    assert r.exit_code == 0, r.output
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["replications"] == 2


def test_validate_checks_design_problems(tmp_path):
    shipped = sorted((ROOT / "scenarios" / "design").glob("*.yaml"))
    assert shipped
    r = invoke("validate", *shipped)
    assert r.exit_code == 0, r.output
    assert r.output.count("OK (design problem") == len(shipped)
    bad = tmp_path / "bad_problem.yaml"
    bad.write_text(f"base: {ROOT / 'scenarios' / 'blended_vcs.yaml'}\nlevers: []\nobjective: {{minimise: spend}}\n")
    r = invoke("validate", bad)
    assert r.exit_code == 2 and f"{bad}: levers:" in r.output
    assert "cannot check it yet" not in r.output
