"""The stress-test section of the HTML report: a tornado chart, failure against reserve, the reverse test.

Input is the ``summary.json`` of a stress run (``StressResult.summary()``), so the section can be built
from files on disk::

    summary = json.loads(Path("results/stress/<scenario>/<org>/summary.json").read_text())
    html = stress_section(summary)                      # an HTML fragment, images inline
    write_stress_report(summary, Path("out/report"))    # a standalone stress.html plus the PNG files

Charts follow the main report's conventions (``pbrsim.report.charts``): matplotlib with the Agg backend,
the Okabe–Ito palette, series told apart by line style, marker or hatching as well as colour, and a text
alternative with the key numbers for every chart. matplotlib and jinja2 are imported when a chart or
page is made, so the stress test itself runs without them.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from . import style
from .charts import Chart  # one chart type for the main report and the stress section
from ..model.money import money

COLOURS = ["#000000", "#D55E00", "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9"]
LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
DPI = 110
MAX_CURVES = 6


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style.apply(plt)
    return plt


def _render(fig, name: str, title: str, alt: str, note: str) -> Chart:
    style.literal_text(fig)
    # saved with a tight box: text beyond the figure's edge is kept, so only repeats and overlaps count
    problems = tuple(p for p in style.layout_problems(fig) if not p.startswith("text cut off"))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None, "Title": title})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return Chart(name, title, alt, note, buf.getvalue(), problems=problems)


def _rows(summary: dict) -> list[dict]:
    return [r for r in summary["stresses"] if r["applicable"] and r.get("replications")]


def _pp(x: float) -> str:
    return f"{100 * x:+.0f} pp"


def tornado_chart(summary: dict) -> Chart:
    """Horizontal bars: each stress's paired change in the chance of running out of cash, with 95% intervals."""
    plt = _plt()
    rows = [r for r in _rows(summary) if r.get("change")]
    base = summary["stresses"][0]["ran_out_of_cash"]["mean"]
    org = summary["organisation"]
    rows.sort(key=lambda r: abs(r["change"]["ran_out_of_cash"]["diff"] or 0))
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.4))
    for i, r in enumerate(rows):
        c = r["change"]["ran_out_of_cash"]
        d = c["diff"] or 0.0
        up = d > 0
        ax.barh(i, 100 * d, color=COLOURS[1] if up else COLOURS[2], hatch="///" if up else "", edgecolor="white", height=0.65)
        if c["lo"] is not None and c["hi"] > c["lo"]:
            ax.errorbar(100 * d, i, xerr=[[100 * (d - c["lo"])], [100 * (c["hi"] - d)]], fmt="none", ecolor="#333333", capsize=3, lw=1)
        # the label sits right of the whisker (and of zero), so it never runs into the stress names on the left
        end = c["hi"] if c["hi"] is not None else d
        ax.text(100 * max(end, 0.0) + 1.5, i, f"{_pp(d)} → {100 * r['ran_out_of_cash']['mean']:.0f}%",
                va="center", ha="left", fontsize=8.5)
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows])
    ax.axvline(0, color="#333333", lw=1)
    ax.set_xlabel(f"change in the chance that {org} runs out of cash (percentage points; base {100 * base:.0f}%)")
    lo = min([0] + [100 * (r["change"]["ran_out_of_cash"]["lo"] or 0) for r in rows])
    hi = max([0] + [100 * (r["change"]["ran_out_of_cash"]["hi"] or 0) for r in rows])
    ax.set_xlim(lo - 3 if lo < 0 else -5, hi + 22)
    ax.set_title(f"Which shocks matter most for {org}", loc="left")
    ax.grid(axis="y", visible=False)
    top = sorted(rows, key=lambda r: -(r["change"]["ran_out_of_cash"]["diff"] or 0))[:3]
    alt = (f"Tornado chart of the change in {org}'s chance of running out of cash under each stress, against a base of "
           f"{100 * base:.0f}%. Largest: " + "; ".join(f"{r['label']} {_pp(r['change']['ran_out_of_cash']['diff'])} "
                                                        f"(to {100 * r['ran_out_of_cash']['mean']:.0f}%)" for r in top) + ".")
    note = ("Each bar is the change in the share of runs in which the organisation ran out of cash, against the unstressed "
            "bid, on the same simulated runs (so the difference is the stress, not luck). Whiskers: 95% intervals. Hatched "
            "bars make things worse.")
    return _render(fig, "stress_tornado", "Which shocks matter most", alt, note)


def reserve_chart(summary: dict) -> Chart:
    """P(run out) against the extra opening reserve, for the base and the stresses needing the most."""
    plt = _plt()
    cur = summary["currency"]
    target = summary["target"]
    org = summary["organisation"]
    rows = _rows(summary)
    base, others = rows[0], rows[1:]
    others = sorted(others, key=lambda r: -r["working_capital"]["estimate"])
    seen, chosen = set(), []
    for r in others:  # stresses with identical curves (no change) are drawn once
        key = tuple(r["reserve_curve"]["p"][:5]) + (r["working_capital"]["estimate"],)
        if key not in seen and key != tuple(base["reserve_curve"]["p"][:5]) + (base["working_capital"]["estimate"],):
            seen.add(key)
            chosen.append(r)
    chosen = [base] + chosen[: MAX_CURVES - 1]
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for i, r in enumerate(chosen):
        c = r["reserve_curve"]
        x = [v / 1000 for v in c["reserve"]]
        y = [100 * p for p in c["p"]]
        ax.step(x, y, where="post", color=COLOURS[i % len(COLOURS)], ls=LINESTYLES[i % len(LINESTYLES)], lw=1.6 if i else 2.2,
                label=f"{r['label']}: {money(r['working_capital']['estimate'], cur)}")
        if i == 0:
            ax.fill_between(x, [100 * p for p in c["lo"]], [100 * p for p in c["hi"]], step="post", color=COLOURS[0], alpha=0.12, lw=0)
        wc = r["working_capital"]["estimate"] / 1000
        ax.plot([wc], [100 * target], marker=MARKERS[i % len(MARKERS)], color=COLOURS[i % len(COLOURS)], ms=7, ls="none")
    ax.axhline(100 * target, color="#555555", lw=1, ls=":")
    ax.text(ax.get_xlim()[1], 100 * target + 1.5, f"target {target:.0%}", ha="right", va="bottom", fontsize=8.5, color="#555555")
    ax.set_xlabel(f"extra opening reserve ({'£' if cur == 'GBP' else cur} thousand)")
    ax.set_ylabel("chance of running out of cash (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    ax.set_title(f"How much reserve {org} needs", loc="left")
    ax.legend(title="stress: working capital needed", fontsize=8, title_fontsize=8.5, loc="upper left",
              bbox_to_anchor=(0, -0.16), ncol=1)
    alt = (f"Chance that {org} runs out of cash against the extra reserve it holds at the start. "
           + "; ".join(f"{r['label']}: {100 * r['ran_out_of_cash']['mean']:.0f}% with no extra reserve, "
                       f"{target:.0%} or less with {money(r['working_capital']['estimate'], cur)}" for r in chosen) + ".")
    note = (f"Read across from the dotted {target:.0%} line to see the reserve each stress calls for (markers). The shaded band "
            "is the 95% interval for the base. Each curve is exact for the simulated runs: the share of runs that would "
            "still go below the overdraft limit with that much more cash at the start.")
    return _render(fig, "stress_reserve", "Reserve against the chance of running out of cash", alt, note)


def _informative(x: list[float], p: list[float]) -> tuple[float, float]:
    """The part of a reverse-stress curve where the chance changes, with a margin: from the last size still at the
    unshocked chance to the first at the final one (the rest is a flat line that would squeeze the answer to an edge)."""
    if len(x) < 2:
        return (0.0, 0.0)
    start = max((i for i in range(len(p)) if p[i] == p[0]), default=0)
    end = min((i for i in range(len(p)) if p[i] == p[-1]), default=len(p) - 1)
    a, b = x[start], x[max(end, start)]
    if b <= a:
        return (0.0, 0.0)
    pad = 0.15 * (b - a)
    return (max(min(x), a - pad), min(max(x), b + pad))


def reverse_chart(summary: dict) -> Chart | None:
    """Small multiples: P(run out) against the size of each shock, with the 50% and target levels."""
    rev = summary.get("reverse") or {}
    dims = rev.get("dimensions") or []
    if not dims:
        return None
    plt = _plt()
    org = summary["organisation"]
    n = len(dims)
    cols = 3 if n > 4 else 2 if n > 1 else 1
    rows_n = math.ceil(n / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.0 * cols, 2.5 * rows_n), squeeze=False, sharey=True)
    found = {(r["dimension"], r["level"]): r for r in rev["results"]}
    alt_parts = []
    for k, d in enumerate(dims):
        ax = axes[k // cols][k % cols]
        months = d["unit"] == "months"
        x = [v if months else 100 * v for v in d["curve"]["shock"]]
        ax.step(x, [100 * p for p in d["curve"]["p"]], where="post", color=COLOURS[0], lw=1.6)
        for j, q in enumerate(rev["levels"]):
            ax.axhline(100 * q, color="#777777", lw=0.8, ls=":" if j else "--")
            r = found.get((d["dimension"], q))
            if r and r["reached"] == "yes":
                s = r["shock"] if months else 100 * r["shock"]
                ax.plot([s], [100 * q], marker=MARKERS[j + 1], color=COLOURS[j + 1], ms=6, ls="none")
                if q == 0.5:
                    size = f"{r['shock']:.0f} months" if months else f"{100 * r['shock']:.0f}%"
                    alt_parts.append(f"{d['label']}: 50% at {size}")
        ax.set_title(d["label"], fontsize=9.5, loc="left")
        ax.set_xlabel("months" if months else "size of shock (%)", fontsize=8.5)
        ax.set_ylim(0, 100)
        lo, hi = _informative(x, d["curve"]["p"])
        if hi > lo:
            ax.set_xlim(lo, hi)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=months))  # few ticks: labels never meet the next panel's
        if k % cols == 0:
            ax.set_ylabel("runs out of cash (%)", fontsize=8.5)
    for k in range(n, rows_n * cols):
        axes[k // cols][k % cols].set_visible(False)
    fig.suptitle(f"How big a shock sinks {org}?", x=0.02, ha="left", fontsize=11)
    fig.tight_layout()
    alt = f"Chance that {org} runs out of cash against the size of each shock. " + ("; ".join(alt_parts) or "50% not reached") + "."
    note = ("Each panel follows one kind of shock from nothing to the largest size searched, on the same simulated runs. "
            "Dashed line: half of runs; dotted line: the target. Markers: the smallest shock found to reach each level.")
    return _render(fig, "stress_reverse", "How big a shock sinks the bid", alt, note)


def worst_stresses(summary: dict, k: int = 2) -> list[dict]:
    """The ``k`` shocks that matter most: by the rise in the chance of running out of cash, or, when the base
    fails in almost no or almost every run (report.headlines.NEAR), by the fall in the median lowest cash."""
    from .headlines import NEAR

    rows = [r for r in _rows(summary) if r.get("change")]
    base = summary["stresses"][0]["ran_out_of_cash"]["mean"] or 0.0
    if NEAR < base < 1 - NEAR:
        key = lambda r: -((r["change"].get("ran_out_of_cash") or {}).get("diff") or 0.0)  # noqa: E731
    else:
        key = lambda r: (r["change"].get("lowest_cash") or {}).get("diff") or 0.0  # noqa: E731
    return sorted(rows, key=key)[:k]


def cash_fan_chart(summary: dict, cash) -> Chart | None:
    """Cash month by month: the base's median with its 5th–95th percentile band, and the median of the worst shocks."""
    import numpy as np

    if cash is None or not len(cash):
        return None
    plt = _plt()
    cur = summary["currency"]
    org = summary["organisation"]
    names = ["base"] + [r["name"] for r in worst_stresses(summary)]
    labels = {r["name"]: r["label"] for r in summary["stresses"]}
    fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
    parts = []
    for i, name in enumerate(names):
        sub = cash[cash["stress"] == name]
        if not len(sub):
            continue
        by = sub.groupby("month")["cash_pence"]
        months = np.asarray(sorted(sub["month"].unique()))
        med = by.median().reindex(months).to_numpy() / 100.0
        style = {"color": COLOURS[i % len(COLOURS)], "linestyle": ["-", "--", ":"][i % 3], "linewidth": 2 if i == 0 else 1.6}
        if i == 0:
            lo = by.quantile(0.05).reindex(months).to_numpy() / 100.0
            hi = by.quantile(0.95).reindex(months).to_numpy() / 100.0
            ax.fill_between(months, lo, hi, color=COLOURS[0], alpha=0.18, hatch="..", label="base: 5th–95th percentile")
        ax.plot(months, med, label=f"{labels.get(name, name)}: median", **style)
        parts.append(f"{labels.get(name, name)}: lowest median balance {money(float(np.min(med)), cur)} in month "
                     f"{int(months[int(np.argmin(med))])}")
    limit = summary["organisation_terms"].get("credit_limit")
    if limit is not None:
        ax.axhline(-limit, color="#333333", linestyle=(0, (6, 2)), linewidth=1, label=f"overdraft limit ({money(-limit, cur)})")
    ax.axhline(0, color="#999999", linewidth=0.8)
    from .charts import _money_axis

    _money_axis(ax, cur, "y")
    ax.set_xlabel("month of the contract (balance at the end of the month)")
    ax.set_ylabel("cash")
    ax.set_title(f"Cash of {org} over the contract: the base and the shocks that matter most", loc="left", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    alt = f"Cash of {org} month by month, median runs: " + "; ".join(parts) + "."
    note = ("Lines are the median run's cash at each month end; the shaded band holds the middle 90% of base runs. "
            "Where a line crosses the overdraft limit, the organisation runs out of cash in more than half the runs.")
    return _render(fig, "stress_cash", "Cash over the contract", alt, note)


def stress_charts(summary: dict, cash=None) -> list[Chart]:
    """The stress page's charts; ``cash`` (the folder's ``cash.parquet``) adds the cash fan over months."""
    fan = cash_fan_chart(summary, cash)
    charts = ([fan] if fan else []) + [tornado_chart(summary), reserve_chart(summary)]
    rc = reverse_chart(summary)
    return charts + ([rc] if rc else [])


_TEMPLATE = """
<section class="pbrsim-stress" id="stress-test">
<h{{ h }}>Stress test: {{ s.organisation }}</h{{ h }}>
{% if headlines %}<div class="headlines" id="stress-headlines"><p><strong>Headline findings</strong></p><ul>{% for line in headlines %}<li>{{ line | nowrap_money }}</li>{% endfor %}</ul></div>{% endif %}
<p>How the cash of <strong>{{ s.organisation }}</strong> ({{ s.role }}) in <em>{{ s.scenario }}</em> responds to things going
worse than the bid assumed: {{ s.replications }} simulated runs of each stress (seed {{ s.seed }}), the same runs for every
stress. Opening cash {{ m(terms.opening_cash) }}; {{ limit }}. “Runs out of cash” means the balance went below the overdraft
limit at a month end. Working capital needed is the extra reserve at the start that keeps that chance at or below
{{ pct0(s.target) }}.</p>
<table class="pbrsim-stress-table">
<thead><tr><th>Stress</th><th>Runs out of cash</th><th>Change</th><th>Lowest cash: median (5th pct)</th><th>Trough month</th>
<th>Working capital needed (95% interval)</th><th>Break-even month</th><th>Margin: median (5th pct)</th></tr></thead>
<tbody>
{% for r in s.stresses %}<tr>
<td>{{ r.label }}<br><small>{{ r.name }}{% if r.note %} — {{ r.note }}{% endif %}</small></td>
{% if r.applicable and r.get("replications") %}
<td>{{ pct(r.ran_out_of_cash.mean) }} ({{ pct(r.ran_out_of_cash.lo) }}–{{ pct(r.ran_out_of_cash.hi) }})</td>
<td>{% if r.get("change") %}{{ pp(r.change.ran_out_of_cash) }}{% else %}base{% endif %}</td>
<td>{{ m(r.lowest_cash.p50) }} ({{ m(r.lowest_cash.p5) }})</td>
<td>{{ "%.0f"|format(r.trough_month.median) }}</td>
<td>{{ m(r.working_capital.estimate) }} ({{ m(r.working_capital.lo) }}–{{ m(r.working_capital.hi) if r.working_capital.hi is not none else "more" }})</td>
<td>{{ "not reached" if r.break_even_month.median is none else "%.0f"|format(r.break_even_month.median) }}</td>
<td>{{ m(r.margin.p50) }} ({{ m(r.margin.p5) }})</td>
{% else %}<td colspan="7">{{ r.note }}</td>{% endif %}
</tr>
{% endfor %}</tbody></table>
{% if ue and ue.segments %}
<table class="pbrsim-stress-table pbrsim-unit-economics" id="unit-economics">
<caption>Unit economics of the unstressed bid: money per client referred to {{ s.organisation }}, by segment (pooled over
the runs). Income is what the contract pays for service and results; the contribution is income less delivery and payments
passed to subcontractors. Block fees, cohort payments, overhead and finance are not tied to a segment.</caption>
<thead><tr><th>Segment</th><th>Clients a run</th><th>Income a client</th><th>Delivery a client</th><th>Passed on a client</th>
<th>Contribution a client (95% interval)</th></tr></thead>
<tbody>
{% for r in ue.segments %}<tr><td>{{ r.segment }}</td><td>{{ "%.0f"|format(r.clients) }}</td><td>{{ m(r.income_per_client) }}</td>
<td>{{ m(r.delivery_per_client) }}</td><td>{{ m(r.passed_on_per_client) }}</td>
<td>{{ m(r.contribution_per_client.mean) }}{% if r.contribution_per_client.lo is not none %} ({{ m(r.contribution_per_client.lo) }} to {{ m(r.contribution_per_client.hi) }}){% endif %}</td></tr>
{% endfor %}<tr><td>not by segment</td><td></td><td>{{ m(ue.not_by_segment.income_per_client) }}</td><td></td><td></td>
<td>overhead {{ m(ue.not_by_segment.overhead_per_client) }}, finance {{ m(ue.not_by_segment.finance_per_client) }}</td></tr>
<tr><th>All clients</th><th>{{ "%.0f"|format(ue.clients) }}</th><th>{{ m(ue.income_per_client) }}</th><th colspan="2">costs {{ m(ue.cost_per_client) }}</th>
<th>net {{ m(ue.net_per_client.mean) }}{% if ue.net_per_client.lo is not none %} ({{ m(ue.net_per_client.lo) }} to {{ m(ue.net_per_client.hi) }}){% endif %}</th></tr>
</tbody></table>
{% endif %}
{% if s.stresses|selectattr("investors", "defined")|list %}
<table class="pbrsim-stress-table pbrsim-stress-investors">
<caption>How each stress leaves the investors (docs/social-investment.md). Same runs, with the overdraft extended as far as
needed: where the organisation would have run out of cash, the investors' money had it carried on.</caption>
<thead><tr><th>Stress</th><th>IRR a year: median (5th to 95th pct)</th><th>Investors lost capital (share of runs)</th><th>Change</th>
<th>Money multiple</th></tr></thead>
<tbody>
{% for r in s.stresses if r.applicable and r.get("investors") %}<tr>
<td>{{ r.label }}<br><small>{{ r.name }}</small></td>
<td>{{ pct(r.investors.irr.median) }} ({{ pct(r.investors.irr.p5) }} to {{ pct(r.investors.irr.p95) }})</td>
<td>{{ pct(r.investors.lost_capital.mean) }} ({{ pct(r.investors.lost_capital.lo) }}–{{ pct(r.investors.lost_capital.hi) }})</td>
<td>{% if r.get("change") and r.change.get("investors_lost_capital") %}{{ pp(r.change.investors_lost_capital) }}{% else %}base{% endif %}</td>
<td>{{ "–" if r.investors.multiple.mean is none else "%.2f"|format(r.investors.multiple.mean) }}</td>
</tr>
{% endfor %}</tbody></table>
{% endif %}
<ul class="pbrsim-stress-sentences">{% for r in s.stresses %}<li>{{ r.sentence }}</li>{% endfor %}</ul>
{% for c in charts %}<figure class="pbrsim-chart">
<img src="{{ src(c) }}" alt="{{ c.alt }}">
<figcaption><strong>{{ c.title }}.</strong> {{ c.note }}</figcaption>
</figure>
{% endfor %}
{% if rev and rev.get("results") %}<h{{ h + 1 }}>Reverse stress test: what would sink the bid?</h{{ h + 1 }}>
<ul class="pbrsim-stress-sentences">{% for line in rev_lines %}<li>{{ line }}</li>{% endfor %}</ul>
<p><small>{{ rev.replications }} runs per shock; each run is searched for the shock at which it first runs out of cash
(on a grid of 1 percentage point, or 1 month), and the answer is checked by running every run at the shock found and one step
below. Intervals are 95%.</small></p>{% endif %}
{% if rev and rev.get("note") %}<p>{{ rev.note }}.</p>{% endif %}
</section>
"""

def _env():
    from .html_text import environment

    return environment()


def stress_section(summary: dict, *, heading_level: int = 2, charts: list[Chart] | None = None,
                   image_src: str = "inline") -> str:
    """An HTML fragment (``<section id="stress-test">``) for the report. ``image_src``: ``inline`` (data URIs,
    self-contained) or ``files`` (``<name>.png`` beside the page)."""
    from ..stress.reverse import reverse_lines
    from .headlines import stress_headlines

    charts = stress_charts(summary) if charts is None else charts
    cur = summary["currency"]
    terms = summary["organisation_terms"]
    limit = ("no overdraft limit" if terms["credit_limit"] is None else
             f"overdraft limit {money(terms['credit_limit'], cur)} at {100 * terms['monthly_interest']:.1f}% a month")
    rev = summary.get("reverse")

    def pct(x):
        return "–" if x is None else f"{100 * x:.1f}%"

    def pp(c):  # a minus sign, as in money
        if c["diff"] is None:
            return "–"
        if c["lo"] is None or c["lo"] == c["hi"]:
            return f"{100 * c['diff']:+.1f} pp".replace("-", "\u2212")
        return f"{100 * c['diff']:+.1f} pp ({100 * c['lo']:+.1f} to {100 * c['hi']:+.1f})".replace("-", "\u2212")

    return _env().from_string(_TEMPLATE).render(
        s=summary, h=heading_level, terms=terms, limit=limit, charts=charts, rev=rev, headlines=stress_headlines(summary),
        ue=summary.get("unit_economics"),
        rev_lines=reverse_lines(rev, summary["organisation"]) if rev and rev.get("results") else [],
        m=lambda x: _Markup(f'<span class="n">{money(x, cur)}</span>'), pct=pct, pct0=lambda x: f"{100 * x:.0f}%", pp=pp,
        src=(lambda c: c.data_uri) if image_src == "inline" else (lambda c: c.file),
    )


def write_stress_report(summary: dict, out_dir: str | Path, *, overwrite: bool = False, source: str | Path | None = None) -> Path:
    """Write ``out_dir/stress.html`` (self-contained: images inline) and the charts as PNG files beside it,
    by the output rule of ``pbrsim.store`` (an earlier report there is replaced, nothing else is touched)."""
    from .html_text import standalone_page
    from ..store import KIND_REPORT, check_out, manifest, write_files

    out_dir = Path(out_dir)
    check_out(out_dir, KIND_REPORT, overwrite=overwrite)  # before the charts are drawn
    cash = None
    if source is not None and (Path(source) / "cash.parquet").exists():
        import pandas as pd

        from ..engine.records import with_current_names

        cash = with_current_names(pd.read_parquet(Path(source) / "cash.parquet"))
    charts = stress_charts(summary, cash)
    body = stress_section(summary, heading_level=1, charts=charts)
    page = standalone_page(f"Stress test: {summary['organisation']} in {summary['scenario']}", body, summary["scenario_file"])
    files = {c.file: c.png for c in charts}
    files["stress.html"] = page.encode("utf-8")
    made_from = {"made_from": str(source)} if source is not None else {}
    write_files(out_dir, files, manifest(None, None, made_from), kind=KIND_REPORT, overwrite=overwrite)
    return out_dir / "stress.html"


def _Markup(text: str):
    import markupsafe

    return markupsafe.Markup(text)
