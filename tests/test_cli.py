"""The command line end to end: run, outputs on disk, exact mode, validate, schema."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from pbrsim.cli.main import main
from pbrsim.scenario.schema import file_hash

ROOT = Path(__file__).resolve().parents[1]
BLENDED = str(ROOT / "scenarios" / "blended_vcs.yaml")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "blended"
    r = CliRunner().invoke(main, ["run", BLENDED, "--seed", "7", "--replications", "12", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out, r.output


def test_run_prints_the_summary_tables(run_dir):
    _, output = run_dir
    for phrase in ("Clients by segment", "complex", "outcome rate", "Commissioner pays", "cost per outcome",
                   "Provider finances", "lowest cash", "ran out of cash", "month of the trough",
                   "Who gets served", "parking rate", "dropped rate", "of which:", "Equity ratio"):
        assert phrase in output


def test_run_writes_every_table_and_the_manifest(run_dir):
    out, _ = run_dir
    for name in ("clients", "ledger", "monthly", "claims", "settlements", "failures", "replications"):
        assert (out / f"{name}.parquet").exists()
    clients = pd.read_parquet(out / "clients.parquet")
    assert {"replication", "segment", "referral_month", "first_sustained_6m", "months_full", "months_minimal", "final_state"} <= set(clients.columns)
    assert clients.replication.nunique() == 12
    ledger = pd.read_parquet(out / "ledger.parquet")
    assert list(ledger.columns) == ["replication", "month", "payer", "payee", "kind", "item", "segment", "amount_pence"]
    monthly = pd.read_parquet(out / "monthly.parquet")
    assert {"income_outcome_pence", "cost_delivery_pence", "cash_pence", "n_engaged", "n_full", "n_minimal"} <= set(monthly.columns)
    man = json.loads((out / "manifest.json").read_text())
    assert man["scenario_sha256"] == file_hash(BLENDED) and man["seed"] == 7 and man["version"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replications"] == 12
    # the summary's outcome count is the clients table's count
    outcomes = clients.first_sustained_6m.notna().sum() / 12
    assert summary["segments"][-1]["outcomes"]["mean"] == pytest.approx(outcomes)


def test_same_seed_gives_identical_tables(tmp_path, run_dir):
    out, _ = run_dir
    again = tmp_path / "again"
    r = CliRunner().invoke(main, ["run", BLENDED, "--seed", "7", "-n", "12", "--out", str(again), "--quiet"])
    assert r.exit_code == 0
    for name in ("clients", "ledger", "monthly"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{name}.parquet"), pd.read_parquet(again / f"{name}.parquet"))


def test_exact_mode_refuses_a_scenario_where_it_is_not_exact(tmp_path):
    r = CliRunner().invoke(main, ["run", BLENDED, "--method", "exact", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2
    assert "capacity could bind" in r.output and "--method montecarlo" in r.output
    assert not (tmp_path / "x").exists()


def test_exact_mode_writes_expected_values(tmp_path):
    import yaml
    d = yaml.safe_load(Path(BLENDED).read_text())
    d["provider"]["capacity"] = None
    d["provider"]["credit"] = {"limit": None, "monthly_interest": 0}
    d["contract"]["cap"] = None
    f = tmp_path / "open.yaml"
    f.write_text(yaml.safe_dump(d))
    r = CliRunner().invoke(main, ["run", str(f), "--method", "exact", "--out", str(tmp_path / "ex")])
    assert r.exit_code == 0, r.output
    assert "Expected clients by segment" in r.output
    pay = pd.read_parquet(tmp_path / "ex" / "payments.parquet")
    assert pay.amount.sum() > 0  # expected payments, pounds
    assert json.loads((tmp_path / "ex" / "summary.json").read_text())["method"] == "exact"


def test_validate_and_schema():
    r = CliRunner().invoke(main, ["validate", BLENDED])
    assert r.exit_code == 0 and "OK" in r.output
    r = CliRunner().invoke(main, ["schema"])
    schema = json.loads(r.output)
    assert "pathway" in schema["properties"] and "contract" in schema["properties"]


def test_run_with_report_writes_the_html_report(tmp_path):
    out = tmp_path / "withreport"
    r = CliRunner().invoke(main, ["run", BLENDED, "-n", "5", "--out", str(out), "--quiet", "--report"])
    assert r.exit_code == 0, r.output
    html = (out / "report" / "report.html").read_text()
    assert "blended_vcs" in html and "<img" in html
    assert list((out / "report").glob("*.png"))


def test_compare_with_report_writes_the_html_report(tmp_path):
    exp = str(ROOT / "tests" / "fixtures" / "experiments" / "small.yaml")
    r = CliRunner().invoke(main, ["compare", exp, "--out", str(tmp_path / "cmp"), "--report", "--workers", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "cmp" / "report" / "report.html").read_text()
    assert "<img" in html and "paired" in html.lower()
