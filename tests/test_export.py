"""Outputs people read: spreadsheet exports (``pbrsim export``) read back match the folder's own figures, and
every chart of every report type is readable (no repeated tick labels, no overlapping or cut-off text)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from pbrsim.cli.main import main
from pbrsim.report.export import flatten_summary, unit_of

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


def _invoke(*args: str):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A run with a value section, a supply chain with investor finance, an experiment and a stress test."""
    base = tmp_path_factory.mktemp("export")
    runs = {}
    for name, scenario in {"value": "early_action/homes_for_good.yaml", "chain": "library/peterborough.yaml",
                           "blended": "blended_vcs.yaml"}.items():
        out = base / name
        r = _invoke("run", SCENARIOS / scenario, "-n", "6", "--seed", "3", "--out", out, "--quiet")
        assert r.exit_code == 0, r.output
        runs[name] = out
    exp = base / "exp.yaml"
    text = (SCENARIOS / "experiments" / "vcs_designs.yaml").read_text()
    text = text.replace("replications: 200", "replications: 6").replace("base: ../blended_vcs.yaml",
                                                                          f"base: {SCENARIOS / 'blended_vcs.yaml'}")
    exp.write_text(text)
    r = _invoke("batch", exp, "--out", base / "experiment", "--executor", "serial", "--quiet")
    assert r.exit_code == 0, r.output
    runs["experiment"] = base / "experiment"
    # a bid that fails in most runs: every built-in shock, some helping and some hurting
    r = _invoke("stress", SCENARIOS / "outcomes_only_vcs.yaml", "-n", "12", "--executor", "serial", "--out", base / "stress",
                "--quiet")
    assert r.exit_code == 0, r.output
    runs["stress"] = base / "stress"
    return runs


def _sheet(path: Path, name: str) -> pd.DataFrame:
    wb = load_workbook(path, read_only=False)
    ws = wb[name]
    rows = list(ws.values)
    header = [h for h in rows[0] if h is not None]
    return pd.DataFrame([r[: len(header)] for r in rows[1:]], columns=header)


def _summary_leaves(summary: dict) -> dict[tuple[str, str, str], dict]:
    figures, _ = flatten_summary(summary)
    return {(f["section"], f["group"], f["figure"]): f for f in figures}


def test_every_summary_figure_of_shipped_scenarios_has_a_unit(folders):
    for name in ("value", "chain", "blended"):
        summary = json.loads((folders[name] / "summary.json").read_text())
        figures, _ = flatten_summary(summary)
        assert len(figures) > 20
        missing = [f"{f['section']}/{f['group']}/{f['figure']}" for f in figures if not f["unit"]]
        assert not missing, f"figures without a unit in {name}: {missing}"


def test_units_follow_the_figure_names():
    assert unit_of(("commissioner", "paid_by_kind", "outcome")) == "money"
    assert unit_of(("segments", "all", "outcome_rate")) == "percent"
    assert unit_of(("value", "benefit_cost_ratio")) == "ratio"
    assert unit_of(("value", "payback_months", "never")) == "percent"
    assert unit_of(("organisations", "x", "months_below_zero")) == "months"
    assert unit_of(("segments", "all", "outcomes")) == "count"
    assert unit_of(("investor", "lost_money")) == "percent"


def test_run_workbook_matches_the_summary_and_the_tables(folders):
    out = folders["value"]
    r = _invoke("export", out, "--format", "xlsx", "--format", "csv")
    assert r.exit_code == 0, r.output
    book = out / "export" / "pbrsim.xlsx"
    wb = load_workbook(book)
    assert wb.sheetnames[:4] == ["Summary", "Cash by month", "Ledger by kind and month", "Replications"]
    summary = json.loads((out / "summary.json").read_text())
    leaves = _summary_leaves(summary)
    sheet = _sheet(book, "Summary")
    assert len(sheet) == len(leaves)
    for row in sheet.itertuples(index=False):
        text = [v if isinstance(v, str) else "" for v in (row.Section, row.Group)]
        ref = leaves[(text[0], text[1], row.Figure)]
        if ref["mean"] is None:
            assert row.Mean is None or np.isnan(row.Mean)  # an empty cell, not a zero
        else:
            assert row.Mean == pytest.approx(ref["mean"], rel=1e-12)
    # number formats: money in pounds, rates as percentages; units said in words
    ws = wb["Summary"]
    assert ws.freeze_panes == "B2"
    by_figure = {(ws.cell(r, 2).value, ws.cell(r, 3).value): r for r in range(2, ws.max_row + 1)}
    paid = by_figure[(None, "paid_total")]
    assert "£" in ws.cell(paid, 5).number_format and ws.cell(paid, 4).value == "£"
    rate = by_figure[("all", "outcome_rate")]
    assert ws.cell(rate, 5).number_format == "0.0%" and ws.cell(rate, 4).value == "%"
    # cash by month: the monthly table's cash in pounds, mean over replications
    monthly = pd.read_parquet(out / "monthly.parquet")
    cash = _sheet(book, "Cash by month")
    want = monthly.groupby(["organisation", "month"], observed=True)["cash_pence"].mean() / 100.0
    got = cash.set_index(["Organisation", "Month"])["Cash at month end (£) mean"]
    assert len(got) == len(want)
    for (org, month), value in want.items():
        assert got[(org, month)] == pytest.approx(value, rel=1e-12)
    # the ledger sheet keeps every penny: mean per replication x replications = the ledger's total
    ledger = pd.read_parquet(out / "ledger.parquet")
    led = _sheet(book, "Ledger by kind and month")
    assert led["Amount, mean per replication (£)"].sum() * summary["replications"] == pytest.approx(ledger["amount_pence"].sum() / 100.0)
    # CSV files hold the same figures (UTF-8 with BOM so spreadsheet programs read £)
    csv = pd.read_csv(out / "export" / "summary.csv", encoding="utf-8-sig")
    assert np.allclose(csv["Mean"].to_numpy(float), sheet["Mean"].astype(float).to_numpy(), equal_nan=True)
    assert (out / "export" / "cash_by_month.csv").read_bytes().startswith(b"\xef\xbb\xbf")


def test_experiment_workbook_matches_the_comparison(folders):
    out = folders["experiment"]
    r = _invoke("export", out)
    assert r.exit_code == 0, r.output
    book = out / "export" / "pbrsim.xlsx"
    assert not list((out / "export").glob("*.csv"))  # xlsx only by default
    sheet = _sheet(book, "Comparison")
    summary = pd.read_parquet(out / "summary.parquet")
    assert len(sheet) == len(summary)
    merged = sheet.merge(summary, left_on=["Design", "Column"], right_on=["design", "metric"])
    assert len(merged) == len(summary)
    assert np.allclose(merged["Mean"].astype(float), merged["mean"], equal_nan=True)
    assert np.allclose(merged["Difference from baseline"].astype(float), merged["diff"], equal_nan=True)
    designs = _sheet(book, "Designs")
    assert set(designs["Design"]) == set(summary["design"])


def test_stress_workbook_matches_the_stress_table(folders):
    out = folders["stress"]
    r = _invoke("export", out, "--format", "csv")
    assert r.exit_code == 0, r.output
    assert not (out / "export" / "pbrsim.xlsx").exists()
    table = pd.read_parquet(out / "stresses.parquet")
    csv = pd.read_csv(out / "export" / "stresses.csv", encoding="utf-8-sig")
    assert list(csv["stress"]) == list(table["stress"])
    assert np.allclose(csv["ran_out (fraction)"], table["ran_out"], equal_nan=True)
    assert np.allclose(csv["lowest_cash_p50 (£)"], table["lowest_cash_p50"], equal_nan=True)
    cash = pd.read_parquet(out / "cash.parquet")
    by_month = pd.read_csv(out / "export" / "cash_by_month.csv", encoding="utf-8-sig")
    base0 = cash[(cash.stress == "base") & (cash.month == 0)]["cash_pence"].mean() / 100.0
    row = by_month[(by_month.Stress == "base") & (by_month.Month == 0)]
    assert row["Cash at month end (£) mean"].iloc[0] == pytest.approx(base0)
    # unit economics per client by segment, in pounds, as the summary gives them
    ue = json.loads((out / "summary.json").read_text())["unit_economics"]
    sheet = pd.read_csv(out / "export" / "unit_economics.csv", encoding="utf-8-sig").set_index("segment")
    for r in ue["segments"]:
        assert sheet.loc[r["segment"], "income_per_client (£)"] == pytest.approx(r["income_per_client"])
        assert sheet.loc[r["segment"], "net_per_client (£)"] == pytest.approx(r["contribution_per_client"]["mean"])
    assert sheet.loc["all", "net_per_client (£)"] == pytest.approx(ue["net_per_client"]["mean"])


def test_export_keeps_the_output_rule(folders, tmp_path):
    out = folders["blended"]
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    r = _invoke("export", out, "--out", target)
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    r = _invoke("export", out, "--out", target, "--overwrite")
    assert r.exit_code == 0, r.output
    assert (target / "notes.txt").read_text() == "mine" and (target / "pbrsim.xlsx").exists()
    # not a pbrsim folder: exit 2, nothing written
    r = _invoke("export", tmp_path / "mine")
    assert r.exit_code == 2
    # an export is made from the results: running again into the folder removes the stale export
    r = _invoke("export", out)
    assert r.exit_code == 0 and (out / "export" / "pbrsim.xlsx").exists()
    r = _invoke("run", SCENARIOS / "blended_vcs.yaml", "-n", "6", "--seed", "4", "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    assert not (out / "export").exists()


def test_the_layout_check_finds_repeated_ticks_overlaps_and_cut_off_text():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    from pbrsim.report.style import layout_problems, percent_formatter

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.set_xlim(0.311, 0.324)  # a narrow range of rates, as in a comparison of close designs
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.text(0.315, 0.5, "a label here")
    ax.text(0.315, 0.5, "and one on top of it")
    ax.set_ylabel("a y label far longer than the figure is tall, so that it cannot fit " * 2)
    problems = layout_problems(fig)
    assert any("tick labels repeat" in p for p in problems)
    assert any("overlap" in p for p in problems)
    assert any("cut off" in p for p in problems)
    ax.xaxis.set_major_formatter(percent_formatter(ax.xaxis))
    assert not any("tick labels repeat" in p for p in layout_problems(fig))
    plt.close(fig)


@pytest.fixture(scope="module")
def reports(folders, tmp_path_factory):
    """`pbrsim report` of every folder, once, with every chart drawn for it: the charts are recorded as the real
    rendering returns them, so the layout check and the page tests look at the same report."""
    from pbrsim.report import charts as run_charts, stress as stress_page

    base = tmp_path_factory.mktemp("reports")
    drawn: list = []

    def recording(render):
        def record(*args, **kwargs):
            chart = render(*args, **kwargs)
            drawn.append(chart)
            return chart
        return record

    made = {}
    with pytest.MonkeyPatch.context() as mp:
        for module in (run_charts, stress_page):
            mp.setattr(module, "_render", recording(module._render))
        for name in ("value", "chain", "blended", "experiment", "stress"):
            drawn.clear()
            r = _invoke("report", folders[name], "--out", base / name)
            assert r.exit_code == 0, r.output
            page = base / name / ("stress.html" if name == "stress" else "report.html")
            # every chart on the page was seen being drawn
            assert {p.name for p in page.parent.glob("*.png")} <= {c.file for c in drawn}, name
            made[name] = (page, list(drawn))
    return made


def test_every_chart_of_each_report_type_is_readable(reports):
    charts = []
    for name in ("value", "chain", "blended", "experiment"):
        charts += reports[name][1]
    stress = reports["stress"][1]
    assert stress[0].name == "stress_cash"  # the cash fan over months comes first on the stress page
    charts += stress
    assert len(charts) > 20
    bad = {c.name: c.problems for c in charts if c.problems}
    assert not bad, bad


def test_json_prints_the_summary_for_scripts(folders, tmp_path):
    """--json: one JSON document on standard output, the same figures as the files written."""
    r = CliRunner().invoke(main, ["run", str(SCENARIOS / "blended_vcs.yaml"), "-n", "4", "--seed", "2",
                                  "--out", str(tmp_path / "run"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == json.loads((tmp_path / "run" / "summary.json").read_text())
    r = CliRunner().invoke(main, ["stress", str(SCENARIOS / "blended_vcs.yaml"), "-n", "4", "--only", "shortfall_10",
                                  "--executor", "serial", "--out", str(tmp_path / "stress"), "--json"])
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)
    written = json.loads((tmp_path / "stress" / "summary.json").read_text())
    assert printed["stresses"] == written["stresses"] and printed["organisation"] == written["organisation"]
    exp = folders["experiment"] / "experiment.yaml"
    # two replications of each design: the figures printed and written are compared exactly, whatever their number
    r = CliRunner().invoke(main, ["compare", str(exp), "-n", "2", "--executor", "serial", "--out", str(tmp_path / "cmp"), "--json"])
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)
    table = pd.read_parquet(tmp_path / "cmp" / "summary.parquet")
    assert len(printed["rows"]) == len(table)
    assert [row["mean"] for row in printed["rows"]] == [None if pd.isna(v) else v for v in table["mean"]]


def test_headlines_quote_the_figures_of_the_summary(folders):
    from pbrsim.model.money import money
    from pbrsim.report.headlines import experiment_headlines, pct, pct_interval, run_headlines, stress_headlines

    summary = json.loads((folders["blended"] / "summary.json").read_text())
    lines = run_headlines(summary, "GBP")
    text = " ".join(lines)
    allc = next(s for s in summary["segments"] if s["segment"] == "all")
    assert pct_interval(allc["outcome_rate"]) in text
    assert money(summary["commissioner"]["paid_total"]["mean"]) in text
    assert money(summary["commissioner"]["cost_per_outcome"]["lo"]) in text
    for org in summary["organisations"]:
        assert f"{org['organisation']} runs out of cash in {pct_interval(org['ran_out_of_cash'])} of runs" in text
        assert money(org["lowest_cash"]["p50"]) in text
    value = json.loads((folders["value"] / "summary.json").read_text())
    assert money(value["value"]["net_public_value"]["mean"]) in " ".join(run_headlines(value, "GBP"))

    table = pd.read_parquet(folders["experiment"] / "summary.parquet")
    lines = experiment_headlines(table, "blended", "GBP")
    failed = table[table.metric.str.startswith("failed[")]
    first = next(line for line in lines if "runs out of cash" in line)
    for row in failed.itertuples():
        if row.design != "blended":
            assert f"under {row.design} in {pct(row.mean)}" in first
    cpo = table[(table.metric == "cost_per_outcome") & (table.design == "outcomes_only")].iloc[0]
    assert f"{money(cpo['mean'])} under outcomes_only (paired difference {money(cpo['diff'])}" in " ".join(lines)

    stress = json.loads((folders["stress"] / "summary.json").read_text())
    lines = stress_headlines(stress)
    base = stress["stresses"][0]
    assert lines[0] == f"Unstressed, {stress['organisation']} runs out of cash in {pct_interval(base['ran_out_of_cash'])} of runs."
    assert any(line.startswith("Working capital needed") and money(base["working_capital"]["estimate"], stress["currency"]) in line
               for line in lines)
    # the unit economics explain the bid in one line: the net per client it quotes is the summary's
    ue = stress["unit_economics"]
    assert f"on each client referred (95% CI {money(ue['net_per_client']['lo'])} to {money(ue['net_per_client']['hi'])})" in lines[-1]
    # near 0% or 100% failure: shocks ranked by lowest cash, and the sentence says why
    p = base["ran_out_of_cash"]["mean"]
    if p <= 0.02 or p >= 0.98:
        assert any("ranked by the lowest cash" in line for line in lines)
    else:
        worst = max(stress["stresses"][1:], key=lambda r: r["change"]["ran_out_of_cash"]["diff"])
        assert any(worst["label"] in line for line in lines)


def test_reports_open_with_headlines_and_leave_out_empty_sections(reports):
    html = reports["blended"][0].read_text()
    assert html.index('id="headlines"') < html.index('id="contents"')
    assert 'id="design-comparison"' not in html  # a single run has nothing to compare
    assert "(prime)" not in html  # a lone provider is a provider
    assert "@page { size: A4" in html
    html = reports["experiment"][0].read_text()
    assert html.index('id="headlines"') < html.index('<section id="design-comparison"') < html.index('<section id="cash-flow"')


def test_reverse_panels_zoom_to_where_the_chance_changes():
    from pbrsim.report.stress import _informative

    x = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    p = [0.0, 0.0, 0.0, 0.0, 0.1, 0.4, 0.9, 1.0, 1.0, 1.0, 1.0]
    lo, hi = _informative(x, p)
    assert lo == pytest.approx(30 - 0.15 * 40) and hi == pytest.approx(70 + 0.15 * 40)  # from the last 0 to the first 1
    assert _informative(x, [0.0] * len(x)) == (0.0, 0.0)  # a flat curve keeps the whole range


def test_money_in_headlines_is_never_split_across_lines():
    from pbrsim.report.html_text import nowrap_money

    html = str(nowrap_money("difference −£73, 95% CI −£1,263 to £118; <b> \u202e"))
    assert '<span style="white-space:nowrap">−£73</span>,' in html
    assert '<span style="white-space:nowrap">−£1,263</span>' in html and '<span style="white-space:nowrap">£118</span>' in html
    assert "&lt;b&gt;" in html and "[U+202E]" in html  # still escaped, bidi controls still visible


def test_tables_name_their_pence_and_folders_of_pbrsim_0_1_still_read(folders, tmp_path):
    """Money the Parquet tables keep in pence is named so; a folder written before the suffix (0.1) exports the same."""
    import shutil

    run = folders["blended"]
    for table, money_cols in {"ledger": ["amount_pence"], "monthly": ["cash_pence", "cost_delivery_pence", "income_outcome_pence"],
                              "settlements": ["amount_due_pence", "amount_paid_pence", "amount_capped_pence"],
                              "claims": ["amount_claimed_pence", "amount_rejected_pence"]}.items():
        df = pd.read_parquet(run / f"{table}.parquet")
        assert set(money_cols) <= set(df.columns)
        assert not [c for c in df.columns if c in ("amount", "cash") or c.startswith(("income_", "cost_")) and not c.endswith("_pence")]
    old = tmp_path / "old"
    shutil.copytree(run, old, ignore=shutil.ignore_patterns("export", "report"))
    for table in ("ledger", "monthly", "settlements", "claims"):
        df = pd.read_parquet(old / f"{table}.parquet")
        df.rename(columns={c: c.removesuffix("_pence") for c in df.columns}).to_parquet(old / f"{table}.parquet")
    for folder in (run, old):
        r = _invoke("export", folder, "--format", "csv", "--overwrite")
        assert r.exit_code == 0, r.output
    for name in ("cash_by_month.csv", "ledger_by_kind_and_month.csv"):
        new_csv = pd.read_csv(run / "export" / name, encoding="utf-8-sig")
        old_csv = pd.read_csv(old / "export" / name, encoding="utf-8-sig")
        pd.testing.assert_frame_equal(new_csv, old_csv)
    r = _invoke("report", old, "--out", tmp_path / "old_report")
    assert r.exit_code == 0, r.output
    assert "<img" in (tmp_path / "old_report" / "report.html").read_text()
    # an experiment dataset of 0.1: its chunks read under today's names, with the same values
    from pbrsim.experiments.dataset import read_table

    old_exp = tmp_path / "old_exp"
    shutil.copytree(folders["experiment"], old_exp, ignore=shutil.ignore_patterns("export", "report"))
    for f in (old_exp / "runs" / "monthly").rglob("*.parquet"):
        df = pd.read_parquet(f)
        df.rename(columns={c: c.removesuffix("_pence") for c in df.columns}).to_parquet(f)
    cols = ["replication", "organisation", "month", "cash_pence", "income_outcome_pence"]
    pd.testing.assert_frame_equal(read_table(old_exp, "monthly", columns=cols), read_table(folders["experiment"], "monthly", columns=cols))
    assert "cash_pence" in read_table(old_exp, "monthly").columns
