"""HTML reports: every section and chart present, charts real PNGs with text alternatives, table numbers equal
to the summary files, accessible markup, no network resources, and a render in headless Chromium."""

from __future__ import annotations

import base64
import json
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pbrsim.cli.main import main
from pbrsim.report import ReportError, build_report
from pbrsim.report.build import SECTIONS
from pbrsim.cli.terminal import interval, money, pct
from pbrsim.model.money import money as pounds

ROOT = Path(__file__).resolve().parents[1]
CHAIN = ROOT / "scenarios" / "supply_chain" / "outcome_pass_through.yaml"
BLENDED = ROOT / "scenarios" / "blended_vcs.yaml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# Parsing the HTML


class Page(HTMLParser):
    """The parts of a report the tests look at: headings, sections, images, tables and their cells."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.headings: list[tuple[str, str]] = []
        self.sections: dict[str, dict] = {}
        self.images: list[dict] = []
        self.tables: dict[str, dict] = {}
        self.cells: list[dict] = []
        self.notices: list[str] = []
        self._stack: list[tuple[str, dict]] = []
        self._text: list[str] | None = None
        self._section: str | None = None
        self._table: str | None = None
        self._cell: dict | None = None
        self._line: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag in ("h1", "h2", "h3", "caption", "p", "th", "dd"):
            self._text = []
        if tag == "section":
            self._section = a.get("id")
            self.sections[self._section] = {"images": 0, "tables": 0, "text": 0}
        if tag == "img":
            self.images.append({**a, "section": self._section})
            if self._section:
                self.sections[self._section]["images"] += 1
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = {"caption": None, "th": [], "section": self._section}
            if self._section:
                self.sections[self._section]["tables"] += 1
        if tag == "th":
            self.tables[self._table]["th"].append(a.get("scope"))
        if tag == "td":
            self._cell = {"attrs": a, "lines": [], "table": self._table, "best": "best" in (a.get("class") or "").split()}
        if tag == "span" and self._cell is not None and (a.get("class") == "line"):
            self._line = []
        if tag in ("p", "dd") and "notice" in (a.get("class") or ""):
            self._stack.append(("notice", a))

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)
        if self._line is not None:
            self._line.append(data)
        if self._section and data.strip():
            self.sections[self._section]["text"] += len(data.strip())

    def handle_endtag(self, tag):
        text = "".join(self._text).strip() if self._text is not None else ""
        if tag in ("h1", "h2", "h3"):
            self.headings.append((tag, text))
        if tag == "caption" and self._table:
            self.tables[self._table]["caption"] = text
        if tag == "p" and self._stack and self._stack[-1][0] == "notice":
            self.notices.append(text)
            self._stack.pop()
        if tag in ("h1", "h2", "h3", "caption", "p", "th", "dd"):
            self._text = None
        if tag == "span" and self._line is not None:
            self._cell["lines"].append("".join(self._line).strip())
            self._line = None
        if tag == "td" and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None
        if tag == "table":
            self._table = None
        if tag == "section":
            self._section = None

    def cell(self, table: str | None = None, **attrs) -> dict:
        want = {f"data-{k.replace('_', '-')}": v for k, v in attrs.items()}
        found = [c for c in self.cells if all(c["attrs"].get(k) == v for k, v in want.items())
                 and (table is None or c["table"] == table)]
        assert len(found) == 1, f"{len(found)} cells match {want}"
        return found[0]

    def text(self, table: str | None = None, **attrs) -> str:
        return "\n".join(self.cell(table, **attrs)["lines"])


def check_common(html_path: Path, single_run: bool = False):
    """Structure, charts and accessibility shared by every report; returns the parsed page. A single run's
    report has no design comparison (nothing to compare); every report opens with headline findings."""
    html = html_path.read_text()
    page = Page(html)
    assert [h for h in page.headings if h[0] == "h1"] and len([h for h in page.headings if h[0] == "h1"]) == 1
    h2 = [t for tag, t in page.headings if tag == "h2"]
    assert h2[0] == "Headline findings"
    expected = [(sid, title) for sid, title in SECTIONS if not (single_run and sid == "design-comparison")]
    if single_run:
        assert "design-comparison" not in page.sections
    for sid, title in expected:
        assert title in h2, f"section heading {title!r} missing"
        assert sid in page.sections, f"section {sid} missing"
        s = page.sections[sid]
        assert s["text"] > 100, f"section {sid} is (nearly) empty"
    # every chart: an embedded PNG of real size, the same as the file next to the page, with a text alternative
    assert page.images, "no charts"
    for img in page.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png[:8] == PNG_SIGNATURE and len(png) > 8000
        w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert w > 300 and h > 150
        assert str(w) == img["width"] and str(h) == img["height"]
        alt = img.get("alt") or ""
        assert len(alt) > 60 and any(ch.isdigit() for ch in alt), f"weak alt text: {alt!r}"
    files = sorted(p.name for p in html_path.parent.glob("*.png"))
    assert len(files) == len(page.images)
    linked = {a["href"] for tag, a in page.tags if tag == "a" and a.get("href", "").endswith(".png")}
    assert linked == set(files)
    for img in page.images:
        name = next(a["href"] for tag, a in page.tags if tag == "a" and a.get("href", "").endswith(".png")
                    and base64.b64decode(img["src"].split(",", 1)[1]) == (html_path.parent / a["href"]).read_bytes())
        assert name
    # how-to-read notes under every chart
    assert html.count('<p class="how"><strong>How to read this:</strong>') == len(page.images)
    # tables: captions, header scopes
    for tid, t in page.tables.items():
        assert t["caption"], f"table {tid} has no caption"
        assert all(scope in ("col", "row") for scope in t["th"]), f"table {tid}: th without scope"
    # self-contained: no scripts, no external style sheets or images, no network addresses in attributes
    assert not any(tag in ("script", "link", "iframe", "object") for tag, _ in page.tags)
    for tag, a in page.tags:
        for k in ("src", "href"):
            v = a.get(k) or ""
            assert not v.startswith(("http:", "https:", "//")), f"{tag} {k}={v!r} needs a network"
    assert '<html lang="en">' in html
    return page


# ---------------------------------------------------------------------------------------------
# Fixtures: a supply-chain run, the same run as an older version wrote it, an experiment dataset


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "chain"
    r = CliRunner().invoke(main, ["run", str(CHAIN), "--seed", "3", "-n", "6", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def run_report(run_dir):
    path = build_report(run_dir)
    return path, check_common(path, single_run=True), json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    """A single-provider run without parking figures whose scenario file has gone (as an older pbrsim wrote it)."""
    out = tmp_path_factory.mktemp("report") / "old"
    r = CliRunner().invoke(main, ["run", str(BLENDED), "--seed", "1", "-n", "5", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("parking", None)
    (out / "summary.json").write_text(json.dumps(summary))
    man = json.loads((out / "manifest.json").read_text())
    man["scenario"] = str(out / "gone.yaml")
    (out / "manifest.json").write_text(json.dumps(man))
    per_rep = pd.read_parquet(out / "replications.parquet")
    parking = [c for c in per_rep.columns if c.split("[")[0] in (
        "parking_rate", "dropped", "dropped_rate", "equity_ratio", "dropped_failure", "dropped_service", "service_months", "minimal_months", "outcomes_complex",
        "referrals_complex", "outcomes_least", "referrals_least", "paid_complex", "org_service_months",
        "org_minimal_months", "org_parking_rate")]
    per_rep.drop(columns=parking).to_parquet(out / "replications.parquet", index=False)
    elsewhere = tmp_path_factory.mktemp("report") / "elsewhere"
    r = CliRunner().invoke(main, ["report", str(out), "--out", str(elsewhere)])
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"Report written to {elsewhere / 'report.html'}")
    html = elsewhere / "report.html"
    return out, html, check_common(html, single_run=True), summary


EXPERIMENT = {
    "name": "tiny_designs",
    "description": "Blended against outcomes only, on the same clients.",
    "base": str(BLENDED),
    "seed": 5,
    "replications": 4,
    "designs": [
        {"name": "blended", "baseline": True, "description": "as drafted"},
        {"name": "outcomes_only", "description": "all on results",
         "remove": ["contract.service_fee", "contract.payments[name=work_ready]", "contract.payments[name=job_start]"],
         "set": {"contract.payments[name=sustained_job].tariff": {"job_ready": 3300, "moderate": 4400, "complex": 6600}}},
        {"name": "upfront_50", "set": {"contract.service_fee.share_of_value": 0.5}},
    ],
}


def _experiment(tmp_path_factory):
    from pbrsim.experiments.batch import run_batch
    from pbrsim.experiments.experiment import load_experiment

    folder = tmp_path_factory.mktemp("exp")
    spec = folder / "tiny.yaml"
    spec.write_text(yaml.safe_dump(EXPERIMENT, sort_keys=False))
    out = folder / "dataset"
    run_batch(load_experiment(spec), out, executor="serial")
    return out


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    out = _experiment(tmp_path_factory)
    path = build_report(out)
    return out, path, check_common(path), pd.read_parquet(out / "summary.parquet")


# ---------------------------------------------------------------------------------------------
# Single runs


def test_run_report_has_every_section_and_a_chart_for_each_organisation(run_report):
    path, page, summary = run_report
    assert path.name == "report.html" and path.parent.name == "report"
    orgs = [o["organisation"] for o in summary["organisations"]]
    alts = " | ".join(img["alt"] for img in page.images)
    for org in orgs:
        assert f"month-end cash balance of {org}" in alts
        assert f"lowest cash balance {org} reached" in alts
    for name in ("outcome_rates.png", "cumulative_outcomes.png", "spend_over_time.png", "spend_shares.png", "parking.png"):
        assert (path.parent / name).exists()
    sec = page.sections
    assert sec["cash-flow"]["images"] == 2 * len(orgs) and sec["outcomes"]["images"] == 2
    assert sec["commissioner"]["images"] == 2 and sec["who-gets-dropped"]["images"] == 1
    assert any("single run" in t for t in [path.read_text()])


def test_run_report_numbers_equal_the_summary(run_report):
    _, page, s = run_report
    m = money
    for o in s["organisations"]:
        n = o["organisation"]
        assert page.text(org=n, metric="income") == interval(o["income"], m)
        assert page.text(org=n, metric="costs") == interval(o["costs"], m)
        assert page.text(org=n, metric="margin") == f"{m(o['margin']['p50'])} ({m(o['margin']['p5'])})"
        assert page.text(org=n, metric="lowest_cash") == f"{m(o['lowest_cash']['p50'])} ({m(o['lowest_cash']['p5'])})"
        assert page.text(org=n, metric="trough_month") == f"{o['trough_month']['median']:.0f}"
        assert page.text(org=n, metric="ran_out_of_cash") == interval(o["ran_out_of_cash"])
    # credit limits come from the scenario file
    scenario = yaml.safe_load(CHAIN.read_text())
    for spec in scenario["organisations"]:
        assert page.text(org=spec["name"], metric="credit_limit") == m(spec["credit"]["limit"])
        assert page.text(org=spec["name"], metric="opening_cash") == m(spec["opening_cash"])
    for row in s["segments"]:
        g = row["segment"]
        assert page.text(segment=g, metric="outcome_rate") == interval(row["outcome_rate"])
        assert page.text(segment=g, metric="milestone_rate") == interval(row["milestone_rate"])
        assert page.text(segment=g, metric="referrals") == f"{row['referrals']['mean']:,.1f}"
    c = s["commissioner"]
    assert page.text(metric="paid_total") == interval(c["paid_total"], m)
    assert page.text(metric="cost_per_outcome") == interval(c["cost_per_outcome"], m)
    assert page.text(metric="cap_reached") == interval(c["cap_reached"])
    assert page.text(metric="prime_kept") == interval(c["prime_kept"], m)
    paid = {k: v["mean"] for k, v in c["paid_by_kind"].items()}
    total = sum(paid.values())
    assert page.text(metric="share_upfront") == pct((paid["service_fee"] + paid["attachment"]) / total)
    assert page.text(metric="share_outcomes") == pct((paid["outcome"] + paid["sustainment"]) / total)
    if "parking" in s:
        for row in s["parking"]["segments"]:
            assert page.text(segment=row["segment"], metric="parking_rate") == interval(row["parking_rate"])
            assert page.text(segment=row["segment"], metric="dropped_rate") == interval(row["dropped_rate"])


def test_break_even_month_matches_the_monthly_table(run_dir, run_report):
    _, page, s = run_report
    monthly = pd.read_parquet(run_dir / "monthly.parquet", columns=["replication", "organisation", "month", "cash_pence"])
    opening = {o["name"]: o["opening_cash"] * 100 for o in yaml.safe_load(CHAIN.read_text())["organisations"]}
    for org, m in monthly.groupby("organisation", observed=True):
        months = []
        for _, r in m.sort_values("month").groupby("replication"):
            below = (r["cash_pence"] < opening[str(org)]).to_numpy()
            idx = [i for i, b in enumerate(below) if b]
            months.append(0 if not idx else (math.inf if idx[-1] == len(below) - 1 else r["month"].iloc[idx[-1] + 1]))
        med = pd.Series(months).median()
        expect = "not reached" if math.isinf(med) else f"{med:.0f}"
        assert page.text(org=str(org), metric="break_even") == expect


def test_old_run_says_plainly_what_is_missing(old_run):
    out, html, page, summary = old_run
    assert html.parent.name == "elsewhere" and not (out / "report").exists()
    notices = " ".join(page.notices)
    assert "no parking or dropped-client figures" in notices
    assert "no longer where the run found it" in notices
    org = summary["organisations"][0]["organisation"]
    assert page.text(org=org, metric="credit_limit") == "unknown"
    assert page.text(org=org, metric="opening_cash") == money(40000)  # final cash minus margin
    assert page.sections["who-gets-dropped"]["images"] == 0


def test_exact_runs_and_other_folders_are_refused_with_a_reason(tmp_path):
    ex = tmp_path / "ex"  # what `pbrsim run --method exact` writes: expected values, no monthly table
    ex.mkdir()
    (ex / "manifest.json").write_text(json.dumps({"package": "pbrsim", "method": "exact", "seed": None}))
    (ex / "summary.json").write_text(json.dumps({"scenario": "x", "segments": []}))
    with pytest.raises(ReportError, match="Monte Carlo"):
        build_report(tmp_path / "ex")
    r = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "not a pbrsim run or experiment folder" in r.output


# ---------------------------------------------------------------------------------------------
# Experiments


def _pct(x):
    return f"{100 * x:.1f}%"


def _est_pct(r):
    return f"{_pct(r['mean'])} ({100 * r['lo']:,.1f}–{100 * r['hi']:,.1f})"


def test_experiment_report_sections_and_charts(experiment):
    out, path, page, summary = experiment
    assert path == out / "report" / "report.html"
    for name in ("failure", "outcome_rates", "cumulative_outcomes", "spend_by_design", "spend_shares", "spend_over_time",
                 "parking", "dropped", "equity_ratio"):
        assert (path.parent / f"{name}.png").exists(), name
    org = "community_links_style_charity"
    assert (path.parent / f"cash_{org}.png").exists() and (path.parent / f"lowest_cash_{org}.png").exists()
    assert {"table-designs", "table-outcome-rates", "table-commissioner", "table-comparison", "table-parking"} <= set(page.tables)
    alts = " | ".join(img["alt"] for img in page.images)
    for design in EXPERIMENT["designs"]:
        assert design["name"] in alts


def test_comparison_table_equals_the_summary_and_marks_the_best(experiment):
    out, _, page, summary = experiment
    shown = summary[summary["in_table"]]
    assert len([c for c in page.cells if c["table"] == "table-comparison" and c["attrs"].get("data-design")]) == \
        shown["metric"].nunique() * 3
    for r in shown.itertuples(index=False):
        lines = page.cell("table-comparison", design=r.design, metric=r.metric)["lines"]
        if r.unit == "pct" and r.estimator != "distribution":
            assert lines[0] == _est_pct(r._asdict())
        if r.unit == "money" and r.estimator == "distribution":
            assert lines[:2] == [f"median {money(r.p50)}", f"p5 {money(r.p5)}"]
        if r.unit == "money" and r.estimator != "distribution":
            assert lines[0] == f"{money(r.mean)} ({r.lo:,.0f}–{r.hi:,.0f})"
        if r.baseline:
            assert not any(line.startswith("Δ") for line in lines)
        elif r.diff_se == 0 and r.diff == 0:
            assert lines[-1] == "Δ 0: identical in every run"
        elif r.unit == "pct" and r.estimator != "distribution" and r.diff_se > 0:
            assert lines[-1] == f"Δ {100 * r.diff:+.1f} pp ({100 * r.diff_lo:+,.1f} to {100 * r.diff_hi:+,.1f})"
    # best: the highest overall outcome rate, the lowest cost per outcome
    rates = shown[shown.metric == "outcome_rate"].set_index("design")["mean"]
    best = {c["attrs"]["data-design"] for c in page.cells if c["attrs"].get("data-metric") == "outcome_rate" and c["best"]
            and c["table"] == "table-comparison"}
    assert best == set(rates[rates == rates.max()].index)
    cpo = shown[shown.metric == "cost_per_outcome"].set_index("design")["mean"]
    best = {c["attrs"]["data-design"] for c in page.cells if c["attrs"].get("data-metric") == "cost_per_outcome" and c["best"]
            and c["table"] == "table-comparison"}
    assert best == {cpo.idxmin()}
    assert "★ best" in (out / "report" / "report.html").read_text()


def test_experiment_tables_equal_the_summary(experiment):
    _, _, page, summary = experiment
    rows = summary.set_index(["design", "metric"])
    for design in [d["name"] for d in EXPERIMENT["designs"]]:
        r = rows.loc[(design, "outcome_rate[complex]")]
        assert page.text("table-outcome-rates", design=design, metric="outcome_rate[complex]") == _est_pct(r)
        cells = [c for c in page.cells if c["table"] == "table-outcome-rates" and c["attrs"].get("data-design") == design]
        assert cells and cells[0]["lines"][0] == _est_pct(rows.loc[(design, cells[0]["attrs"]["data-metric"])])
        org = "community_links_style_charity"
        f = rows.loc[(design, f"failed[{org}]")]
        c = [c for c in page.cells if c["table"] == f"table-cash-{org}" and c["attrs"].get("data-design") == design
             and c["attrs"].get("data-metric") == f"failed[{org}]"]
        assert c[0]["lines"][0] == _est_pct(f)
        p = rows.loc[(design, "paid_total")]
        c = [c for c in page.cells if c["table"] == "table-commissioner" and c["attrs"].get("data-design") == design
             and c["attrs"].get("data-metric") == "paid_total"]
        assert c[0]["lines"][0] == (f"{money(p['mean'])} ({p['lo']:,.0f}–{p['hi']:,.0f})")


def test_compare_dataset_without_monthly_tables(experiment, tmp_path):
    """A dataset that keeps only the per-replication figures (as `pbrsim compare --out` writes)."""
    out = tmp_path / "compared"
    shutil.copytree(experiment[0], out, ignore=shutil.ignore_patterns("report"))
    for table in (out / "runs").iterdir():
        if table.name != "replications":
            shutil.rmtree(table)
    path = build_report(out)
    page = check_common(path)
    notices = " ".join(page.notices)
    assert "Month-by-month cash balances are not in this dataset" in notices
    assert "does not keep the clients table" in notices
    assert (path.parent / "failure.png").exists() and not (path.parent / "cash_community_links_style_charity.png").exists()
    assert "table-comparison" in page.tables


# ---------------------------------------------------------------------------------------------
# A real browser


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package `chromium`; .ci/run installs it)")
def test_report_renders_in_headless_chromium(experiment, tmp_path):
    import matplotlib.image as mpimg
    import numpy as np

    _, path, page, _ = experiment
    url = path.resolve().as_uri()
    profile = tmp_path / "profile"
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                          "--virtual-time-budget=5000", "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<h1>" in dom.stdout and "Design comparison" in dom.stdout
    assert dom.stdout.count("<img ") == len(page.images)
    problems = [line for line in dom.stderr.splitlines()
                if "CONSOLE" in line or "net::ERR" in line or "Failed to load" in line or "Not allowed to load" in line]
    assert not problems, problems

    shot = tmp_path / "report.png"
    r = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1200,3000", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    img = mpimg.imread(shot)
    assert img.shape[0] >= 2900 and img.shape[1] >= 1150
    rgb = img[..., :3]
    assert not np.all(rgb == rgb[0, 0]), "the screenshot is blank"
    ink = (rgb.mean(axis=2) < 0.5).mean()
    assert ink > 0.005, f"hardly anything drawn ({ink:.2%} dark pixels)"
    colours = np.unique((rgb[::4, ::4] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50, "the charts did not render"


def test_run_report_shows_investor_finance_and_clawbacks_as_in_the_summary(tmp_path):
    """Contract features with their own figures: investor finance (Fair Chance Fund) and a volume-band
    clawback (the TR shortfall variant) appear in the report with the summary's numbers."""
    lib = Path(__file__).resolve().parents[1] / "scenarios" / "library"
    for name, metrics in (("fcf_aspire", ("investor_drawn", "investor_repaid", "investor_multiple", "investor_loss")),
                          ("tr_crc_volume_shortfall", ("clawed_back",))):
        out = tmp_path / name
        r = CliRunner().invoke(main, ["run", str(lib / f"{name}.yaml"), "--seed", "2", "-n", "4", "--out", str(out), "--quiet"])
        assert r.exit_code == 0, r.output
        page = Page(build_report(out).read_text())
        s = json.loads((out / "summary.json").read_text())
        if "investor" in s:
            inv = s["investor"]
            assert page.text(metric="investor_drawn") == interval(inv["drawn"], money)
            assert page.text(metric="investor_repaid") == interval(inv["repaid"], money)
            assert page.text(metric="investor_loss") == interval(inv["loss"], money)
            assert page.text(metric="investor_multiple").startswith(f"{inv['multiple']['mean']:.2f}")
        else:
            c = s["commissioner"]
            assert c["clawed_back"]["mean"] > 0
            assert page.text(metric="clawed_back") == interval(c["clawed_back"], money)
        assert all(page.cell(metric=m) for m in metrics)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package `chromium`; .ci/run installs it)")
def test_run_report_and_stress_page_render_in_headless_chromium(run_report, tmp_path):
    """The run report and the stress page load in a real browser with every chart and no console error, and
    the headline findings come first."""
    stress = tmp_path / "stress"
    r = CliRunner().invoke(main, ["stress", str(BLENDED), "-n", "12", "--only", "shortfall_25,delay_3", "--executor",
                                  "serial", "--report", "--out", str(stress), "--quiet"])
    assert r.exit_code == 0, r.output
    pages = [(run_report[0], len(run_report[1].images)), (stress / "report" / "stress.html", None)]
    for path, images in pages:
        dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
                              "--virtual-time-budget=5000", "--dump-dom", path.resolve().as_uri()],
                             capture_output=True, text=True, timeout=120)
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout
        assert "<h1>" in html and html.index("Headline findings") < html.index("<table")
        shown = html.count("<img ")
        assert shown == (images if images is not None else len(list(path.parent.glob("*.png")))) and shown >= 3
        problems = [line for line in dom.stderr.splitlines()
                    if "CONSOLE" in line or "net::ERR" in line or "Failed to load" in line or "Not allowed to load" in line]
        assert not problems, problems
        if path.name == "stress.html":  # unit economics by segment, each segment a row with its contribution
            ue = json.loads((stress / "summary.json").read_text())["unit_economics"]
            table = html[html.index('id="unit-economics"'):]
            table = table[: table.index("</table>")]
            for row in ue["segments"]:
                assert f"<td>{row['segment']}</td>" in table
                assert pounds(row["contribution_per_client"]["mean"]) in table
