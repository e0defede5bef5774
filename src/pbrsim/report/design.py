"""The design section of the report: the Pareto chart of a design search, or the curve a goal seek walked.

Input is the ``summary.json`` of ``pbrsim design`` (``pbrsim.design.summary``), so the section can be built
from files on disk::

    summary = json.loads(Path("results/design/<problem>/summary.json").read_text())
    html = design_section(summary)                      # an HTML fragment, images inline
    write_design_report(summary, Path("out/report"))    # a standalone design.html plus the PNG files

Charts follow the report's conventions (``report.charts``, ``report.stress``): matplotlib (Agg), the
Okabe–Ito palette, series told apart by marker as well as colour, and a text alternative for every chart.
"""

from __future__ import annotations

from pathlib import Path

from .charts import Chart
from .stress import COLOURS, _env, _plt, _render


def _fmt(x, unit: str, cur: str) -> str:
    from ..design.summary import fmt

    return fmt(x, unit, cur)


def _est(e: dict | None, unit: str, cur: str) -> str:
    from ..design.summary import fmt_estimate

    return fmt_estimate(e, unit, cur)


def pareto_chart(summary: dict) -> Chart:
    """Spend against complex-client outcomes: the finalists, the Pareto front (labelled with failure), the chosen
    design and any comparison scenarios, with 95% intervals."""
    plt = _plt()
    cur = summary["currency"]
    axes = summary["problem"]["pareto_axes"]
    sx, sy, sf = axes
    fig, ax = plt.subplots(figsize=(7.5, 4.8))

    def xy(d):
        e = d["estimates"]
        return e[sx]["mean"] / 1000, e[sy]["mean"]

    def err(d, key, scale=1.0):
        e = d["estimates"][key]
        if e["lo"] is None or e["hi"] is None or e["lo"] == e["hi"]:
            return [[0], [0]]
        return [[max(0.0, (e["mean"] - e["lo"]) / scale)], [max(0.0, (e["hi"] - e["mean"]) / scale)]]

    front_ids = {d["id"] for d in summary["pareto"]}
    others = [d for d in summary.get("finalists", []) if d["id"] not in front_ids and d["valid"]]
    for ok, marker, label in ((True, "+", "other finalists meeting every constraint"), (False, "x", "finalists missing a constraint")):
        group = [d for d in others if d["feasible"] == ok]
        if group:
            ax.plot([xy(d)[0] for d in group], [xy(d)[1] for d in group], ls="none", marker=marker, color="#888888", ms=7,
                    label=label)
    for i, d in enumerate(summary["pareto"]):
        x, y = xy(d)
        ax.errorbar(x, y, xerr=err(d, sx, 1000), yerr=err(d, sy), fmt="o", color=COLOURS[2], ms=6, capsize=2, lw=0.8,
                    label="Pareto front" if i == 0 else None)
        ax.annotate(f"{d['id']} · fails {_fmt(d['estimates'][sf]['mean'], 'pct', cur)}", (x, y), xytext=(5, 4 if i % 2 == 0 else -11),
                    textcoords="offset points", fontsize=7.5)
    ch = summary.get("chosen")
    if ch:
        x, y = xy(ch)
        ax.plot([x], [y], marker="*", color=COLOURS[1], ms=16, ls="none", label=f"chosen ({ch['id']})", zorder=5)
    for j, c in enumerate(summary.get("comparisons") or []):
        e = c["estimates"]
        if sx in e and sy in e and e[sx]["mean"] is not None:
            ax.plot([e[sx]["mean"] / 1000], [e[sy]["mean"]], marker="s", color=COLOURS[0], ms=6, ls="none",
                    label="compared scenarios" if j == 0 else None)
            ax.annotate(c["scenario"] or Path(c["file"]).stem, (e[sx]["mean"] / 1000, e[sy]["mean"]), xytext=(5, -10),
                        textcoords="offset points", fontsize=7.5, color=COLOURS[0])
    for c in summary["problem"]["constraints"]:
        if c["figure"] == sx:
            ax.axvline(c["bound"] / 1000, color="#555555", ls=":", lw=1)
            ax.text(c["bound"] / 1000, ax.get_ylim()[1], f" {c['text']}", fontsize=7.5, va="top", color="#555555")
        if c["figure"] == sy:
            ax.axhline(c["bound"], color="#555555", ls=":", lw=1)
    f = summary["figures"]
    ax.set_xlabel(f"{f[sx]['label']} ({'£' if cur == 'GBP' else cur} thousand)")
    ax.set_ylabel(f[sy]["label"])
    ax.set_title(f"Designs for {summary['problem']['name']}: what each costs and buys", loc="left")
    ax.legend(fontsize=8, loc="best")
    pts = "; ".join(f"{d['id']}: spend {_fmt(d['estimates'][sx]['mean'], 'money', cur)}, {f[sy]['label']} "
                    f"{d['estimates'][sy]['mean']:.1f}, fails {_fmt(d['estimates'][sf]['mean'], 'pct', cur)}" for d in summary["pareto"])
    alt = (f"Scatter chart of {f[sx]['label']} against {f[sy]['label']} for the designs evaluated. Pareto front: {pts}."
           + (f" Chosen: {ch['id']}." if ch else " No design met every constraint."))
    note = ("Each point is a design on the same simulated runs; whiskers are 95% intervals. Designs on the Pareto front "
            "(circles) meet every constraint and cannot be bettered on spend, complex-client outcomes and failure at once by "
            "another finalist; the label gives each one's chance of running out of cash. The star is the design chosen for "
            "the objective; crosses are finalists that miss a constraint (which one is in designs.csv); squares are the "
            "scenarios compared.")
    return _render(fig, "design_pareto", "Spend against complex-client outcomes", alt, note)


def curve_chart(summary: dict) -> Chart:
    """A goal seek's figure against the lever: every value run with its 95% interval, the target and the answer."""
    plt = _plt()
    cur = summary["currency"]
    t = summary["target"]
    f = summary["figures"][t["figure"]]
    lv = summary["lever"]
    scale = 100 if f["unit"] == "pct" else 1
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    pts = sorted((c for c in summary["curve"] if c["estimate"]["mean"] is not None), key=lambda c: c["value"])
    xs = [c["value"] for c in pts]
    ys = [scale * c["estimate"]["mean"] for c in pts]
    lo = [max(0.0, scale * (c["estimate"]["mean"] - (c["estimate"]["lo"] if c["estimate"]["lo"] is not None else c["estimate"]["mean"])))
          for c in pts]
    hi = [max(0.0, scale * ((c["estimate"]["hi"] if c["estimate"]["hi"] is not None else c["estimate"]["mean"]) - c["estimate"]["mean"]))
          for c in pts]
    ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", color=COLOURS[2], capsize=3, lw=1.2, ms=5, label="values run (95% interval)")
    for i, c in enumerate(summary["curve"], start=1):
        if c["estimate"]["mean"] is not None:
            ax.annotate(str(i), (c["value"], scale * c["estimate"]["mean"]), xytext=(4, 4), textcoords="offset points", fontsize=7.5)
    ax.axhline(scale * t["bound"], color="#555555", ls=":", lw=1)
    ax.text(ax.get_xlim()[1], scale * t["bound"], f"target {t['text']}", ha="right", va="bottom", fontsize=8, color="#555555")
    a = summary.get("answer")
    if a and summary["status"] != "not_met":
        ax.plot([a["value"]], [scale * a["estimate"]["mean"]], marker="*", color=COLOURS[1], ms=15, ls="none",
                label=f"answer: {a['value']}", zorder=5)
    ax.set_xlabel(lv["label"])
    ax.set_ylabel(f["label"] + (" (%)" if scale == 100 else ""))
    ax.set_title(f"Goal seek: {lv['label']}", loc="left")
    ax.legend(fontsize=8, loc="best")
    alt = (f"{f['label']} against {lv['label']} at each value the bisection ran: "
           + "; ".join(f"{c['value']}: {_fmt(c['estimate']['mean'], f['unit'], cur)}" for c in pts)
           + (f". The target {t['text']} is met from {a['value']}." if a and summary["status"] == "found" else "."))
    note = ("Each value was run on the same simulated runs (common random numbers), so the curve moves only because the "
            "lever does. Numbers give the order in which the bisection ran them; whiskers are 95% intervals; the target "
            "counts as met when the whole interval is on its side of the dotted line.")
    return _render(fig, "design_curve", "The curve the goal seek walked", alt, note)


def design_charts(summary: dict) -> list[Chart]:
    return [curve_chart(summary)] if summary["kind"] == "goal_seek" else [pareto_chart(summary)]


def design_chart_files(summary: dict) -> dict[str, bytes]:
    """The chart PNG files of a design run (``design_pareto.png`` or ``design_curve.png``): name -> bytes."""
    return {c.file: c.png for c in design_charts(summary)}


_TEMPLATE = """
<section class="pbrsim-design" id="design">
<h{{ h }}>{% if s.kind == "search" %}Contract design: {{ s.problem.name }}{% else %}Goal seek: {{ s.lever.label }} in {{ s.problem.base_scenario }}{% endif %}</h{{ h }}>
{% if headlines %}<div class="headlines" id="design-headlines"><p><strong>Headline findings</strong></p><ul>{% for line in headlines %}<li>{{ line | nowrap_money }}</li>{% endfor %}</ul></div>{% endif %}
{% if s.problem.description %}<p>{{ s.problem.description }}</p>{% endif %}
<p>Base scenario <em>{{ s.problem.base_scenario }}</em>. {% if s.kind == "search" %}Objective: {{ s.problem.objective.sense }}
{{ s.figures[s.problem.objective.figure].label }}{% if s.problem.constraints %}, subject to
{% for c in s.problem.constraints %}<code>{{ c.text }}</code>{% if not loop.last %}, {% endif %}{% endfor %}{% endif %}.
{{ s.method_note }}.{% else %}Goal seek: the value of {{ s.lever.label }} at which <code>{{ s.target.text }}</code> starts to
hold ({{ s.replications }} simulated runs of each value, the same runs for every value).{% endif %}
A constraint counts as met when its whole 95% interval is on the right side of the bound.</p>
<table class="pbrsim-design-levers"><thead><tr><th>Lever</th><th>Range searched</th><th>Base</th><th>{{ "Chosen" if s.kind == "search" else "Answer" }}</th></tr></thead><tbody>
{% for lv in s.problem.levers %}<tr><td>{{ lv.label }}{% if lv.label != lv.path %}<br><small>{{ lv.path }}</small>{% endif %}</td>
<td>{% if lv.kind == "choices" %}{{ lv["values"]|join(", ") }}{% else %}{{ lv.lowest }} to {{ lv.highest }}, step {{ lv.step }}{% endif %}</td>
<td>{{ lv.base_value if lv.base_value is not none else "–" }}</td><td>{{ pick[lv.path] if pick else "–" }}</td></tr>
{% endfor %}</tbody></table>
{% if s.kind == "search" and design %}<table class="pbrsim-design-figures"><thead><tr><th>Figure</th><th>{{ "Chosen design" if s.chosen else "Closest design" }} ({{ reps }})</th><th>Target</th></tr></thead><tbody>
{% for k in keys %}<tr><td>{{ s.figures[k].label }}</td><td>{{ est(design.estimates[k], k) }}</td><td>{{ targets.get(k, "") }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
{% for v in s.verification %}<p><strong>Out-of-sample check{% if v.attempt > 1 %} (attempt {{ v.attempt }}){% endif %}</strong>: {{ v.replications }}
fresh runs with seed {{ v.seed }} — {{ "holds" if v.passed else "does not hold" }}.</p>
<ul>{% for c in v.checks %}<li>{{ check(c) }}</li>{% endfor %}</ul>{% endfor %}
{% if not s.feasible %}<p><strong>No design met every constraint.</strong> {{ infeasible }}</p>{% endif %}
{% if s.kind == "search" and s.pareto %}<h{{ h + 1 }}>Pareto front</h{{ h + 1 }}>
<table class="pbrsim-design-pareto"><thead><tr><th>Design</th>{% for lv in s.problem.levers %}<th>{{ lv.label }}</th>{% endfor %}
{% for k in s.problem.pareto_axes %}<th>{{ s.figures[k].label }}</th>{% endfor %}<th>Scenario file</th></tr></thead><tbody>
{% for d in s.pareto %}<tr><td>{{ d.id }}{% if s.chosen and d.id == s.chosen.id %} (chosen){% endif %}</td>
{% for lv in s.problem.levers %}<td>{{ d.levers[lv.path] }}</td>{% endfor %}
{% for k in s.problem.pareto_axes %}<td>{{ est(d.estimates[k], k) }}</td>{% endfor %}<td>{{ d.file or "" }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
{% if s.kind == "search" and s.comparisons %}<h{{ h + 1 }}>Against other designs</h{{ h + 1 }}>
<table class="pbrsim-design-compare"><thead><tr><th>Scenario</th>{% for k in cmp_keys %}<th>{{ s.figures[k].label }}</th>{% endfor %}<th>Dominated by the chosen design</th></tr></thead><tbody>
{% for c in s.comparisons %}<tr><td>{{ c.scenario }}</td>{% for k in cmp_keys %}<td>{{ est(c.estimates[k], k) }}</td>{% endfor %}<td>{{ "yes" if c.dominated else "no" }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
{% if s.kind == "goal_seek" %}<table class="pbrsim-design-curve"><thead><tr><th>Order</th><th>{{ s.lever.label }}</th><th>{{ s.figures[s.target.figure].label }}</th><th>Target</th></tr></thead><tbody>
{% for c in s.curve %}<tr><td>{{ loop.index }}</td><td>{{ c.value }}</td><td>{{ est(c.estimate, s.target.figure) }}</td><td>{{ "met" if c.met else "not met" }}</td></tr>
{% endfor %}</tbody></table>{% if s.status == "found" %}<p>Answer: <strong>{{ s.answer.value }}</strong>, precise to one step ({{ s.precision }}).</p>{% endif %}{% endif %}
{% for c in charts %}<figure class="pbrsim-chart">
<img src="{{ src(c) }}" alt="{{ c.alt }}">
<figcaption><strong>{{ c.title }}.</strong> {{ c.note }}</figcaption>
</figure>
{% endfor %}
</section>
"""

def design_section(summary: dict, *, heading_level: int = 2, charts: list[Chart] | None = None, image_src: str = "inline") -> str:
    """An HTML fragment (``<section id="design">``) for the report. ``image_src``: ``inline`` (data URIs) or ``files``."""
    from ..design.summary import check_text, lever_text

    charts = design_charts(summary) if charts is None else charts
    cur = summary["currency"]
    s = summary
    if s["kind"] == "search":
        design = s["chosen"] or s.get("closest")
        pick = design["levers"] if design else None
        p = s["problem"]
        keys = list(dict.fromkeys(([p["objective"]["figure"]] if p["objective"] else []) + [c["figure"] for c in p["constraints"]]
                                  + p["pareto_axes"]))
        targets = {}
        for c in p["constraints"]:
            targets[c["figure"]] = (targets.get(c["figure"], "") + " " + f"{c['op']} {_fmt(c['bound'], s['figures'][c['figure']]['unit'], cur)}").strip()
        if p["objective"]:
            targets[p["objective"]["figure"]] = (targets.get(p["objective"]["figure"], "") + f" ({p['objective']['sense']})").strip()
        reps = "exact" if design and design["replications"] is None else f"{design['replications']} runs" if design else ""
        b = s.get("binding") or {}
        infeasible = (f"Binding constraint: {b.get('constraint')}. Closest design: {lever_text(s, design['levers'])}."
                      if design and not s["feasible"] else "")
        rate = "complex_outcome_rate" if "complex_outcome_rate" in s["figures"] else "outcome_rate"
        cmp_keys = [k for k in ("spend", rate, p["pareto_axes"][-1]) if k in s["figures"]]
    else:
        design = None
        pick = {s["lever"]["path"]: s["answer"]["value"]} if s.get("answer") else None
        keys, targets, reps, cmp_keys = [], {}, "", []
        infeasible = ("" if s["feasible"] else
                      f"No value from {s['lever']['lowest']} to {s['lever']['highest']} meets {s['target']['text']}.")
    from .headlines import design_headlines

    return _env().from_string(_TEMPLATE).render(
        s=s, h=heading_level, headlines=design_headlines(s), design=design, pick=pick, keys=keys, targets=targets, reps=reps, infeasible=infeasible,
        cmp_keys=cmp_keys, charts=charts, check=lambda c: check_text(c, s),
        est=lambda e, k: _est(e, s["figures"][k]["unit"], cur),
        src=(lambda c: c.data_uri) if image_src == "inline" else (lambda c: c.file),
    )


def write_design_report(summary: dict, out_dir: str | Path, *, overwrite: bool = False, source: str | Path | None = None) -> Path:
    """Write ``out_dir/design.html`` (self-contained) and its charts as PNG files by the output rule of
    ``pbrsim.store`` (an earlier report there is replaced, nothing else is touched); returns the page's path."""
    from .html_text import standalone_page
    from ..store import KIND_REPORT, check_out, manifest, write_files

    out_dir = Path(out_dir)
    check_out(out_dir, KIND_REPORT, overwrite=overwrite)  # before the charts are drawn
    charts = design_charts(summary)
    body = design_section(summary, heading_level=1, charts=charts)
    title = f"{'Contract design' if summary['kind'] == 'search' else 'Goal seek'}: {summary['problem']['name']}"
    page = standalone_page(title, body, summary["problem"]["file"])
    files = {c.file: c.png for c in charts}
    files["design.html"] = page.encode("utf-8")
    made_from = {"made_from": str(source)} if source is not None else {}
    write_files(out_dir, files, manifest(None, None, made_from), kind=KIND_REPORT, overwrite=overwrite)
    return out_dir / "design.html"
