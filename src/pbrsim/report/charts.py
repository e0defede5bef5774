"""Charts of the report (matplotlib, Agg backend): PNG bytes plus a text alternative with key numbers.

Every chart is readable without colour: series differ by line style, marker or hatching as well as by
colour (the Okabe–Ito palette, safe for the common colour-vision deficiencies), and lines are labelled
directly or in a legend that shows the style.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from . import fmt, style  # noqa: E402
from .style import legend_label, percent_formatter  # noqa: E402

COLOURS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]
LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (5, 3, 1, 3))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p"]
HATCHES = ["", "///", "\\\\\\", "xx", "..", "oo", "++", "--"]
KIND_STYLE = {  # payment kind -> (colour, hatch)
    "service_fee": (COLOURS[0], ""),
    "attachment": (COLOURS[5], "///"),
    "milestone": (COLOURS[1], "\\\\\\"),
    "outcome": (COLOURS[2], "xx"),
    "sustainment": (COLOURS[4], ".."),
    "fee_for_service": (COLOURS[3], "oo"),
}
DPI = 110
MAX_PANELS = 12

style.apply(plt)  # shared with the stress charts; names are drawn as written (no mathtext)


@dataclass
class Chart:
    name: str  # file stem (the PNG is written as <name>.png)
    title: str
    alt: str  # text alternative: what the chart shows, with its key numbers
    note: str  # how to read it, in plain language
    png: bytes
    width: int = 0
    height: int = 0
    problems: tuple[str, ...] = ()  # text a reader could not read (style.layout_problems); none in a sound chart

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    @property
    def file(self) -> str:
        return f"{self.name}.png"


def _render(fig, name: str, title: str, alt: str, note: str) -> Chart:
    style.literal_text(fig)
    fig.set_dpi(DPI)  # drawn once, at the resolution saved: the layout check reads the very pixels written
    problems = tuple(style.layout_problems(fig))
    png = style.drawn_png(fig, title)
    w, h = fig.get_size_inches() * DPI
    plt.close(fig)
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    return Chart(name, title, alt, note, png, width or int(w), height or int(h), problems)


def safe_name(text: str) -> str:
    """A chart's file name part for a name read from a scenario (the output rule of ``pbrsim.store``)."""
    from ..store import safe_name as slug

    return slug(text, limit=60)


def _money_axis(ax, currency: str, axis: str = "y"):
    """Money ticks in £, £k or £m with as many decimals as the tick spacing needs (no two ticks alike, no "−£0")."""
    import math

    symbol = "£" if currency == "GBP" else ""
    which = ax.yaxis if axis == "y" else ax.xaxis

    def f(x, _pos):
        locs = list(which.get_majorticklocs())
        step = min((abs(b - a) for a, b in zip(locs, locs[1:]) if b != a), default=1.0) or 1.0
        if abs(x) < step / 2:
            return f"{symbol}0"
        top = max((abs(v) for v in locs), default=abs(x))
        scale, suffix = (1e6, "m") if top >= 1e6 else (1e3, "k") if top >= 1e3 else (1.0, "")
        decimals = max(0, min(2, -math.floor(math.log10(step / scale) + 1e-9)))
        sign = "−" if x < 0 else ""
        return f"{sign}{symbol}{abs(x) / scale:,.{decimals}f}{suffix}"

    which.set_major_formatter(FuncFormatter(f))


def _horizontal() -> dict:
    """Horizontal box plots in this matplotlib's words (``orientation`` from 3.10, ``vert`` before)."""
    major, minor = (int(p) for p in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def _style(i: int) -> dict:
    """Colour, line style and marker of series i: no two of the first 64 series look the same."""
    return {"color": COLOURS[i % len(COLOURS)], "linestyle": LINESTYLES[(i + i // len(COLOURS)) % len(LINESTYLES)],
            "marker": MARKERS[i % len(MARKERS)]}


def _markevery(n: int) -> int:
    return max(1, n // 8)


# ---------------------------------------------------------------------------------------------
# Cash


def _credit_line(ax, limit, limit_known: bool, currency: str):
    """Draw the lowest balance allowed (minus the credit limit); return its description."""
    if not limit_known:
        return "credit limit unknown (scenario file not found)"
    if limit is None:
        return "no credit limit (unlimited overdraft)"
    ax.axhline(-limit, color=COLOURS[3], linestyle=(0, (6, 2)), linewidth=1.6,
               label=f"credit limit: lowest balance allowed ({fmt.money(-limit, currency)})")
    return f"the credit limit lets the balance go down to {fmt.money(-limit, currency)}"


def cash_fan(q: pd.DataFrame, org: str, opening, limit, limit_known: bool, currency: str, replications: int,
             name: str | None = None, title: str | None = None) -> Chart:
    fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
    x = q.index.to_numpy()
    ax.fill_between(x, q["p5"], q["p95"], color=COLOURS[0], alpha=0.15, hatch="..", edgecolor=COLOURS[0], linewidth=0,
                    label="90% of runs (5th–95th percentile)")
    ax.fill_between(x, q["p25"], q["p75"], color=COLOURS[0], alpha=0.35, edgecolor=COLOURS[0], linewidth=0,
                    label="middle 50% of runs")
    ax.plot(x, q["p50"], color="black", linewidth=2, marker="o", markersize=3, markevery=_markevery(len(x)), label="median run")
    if opening is not None:
        ax.axhline(opening, color="0.35", linestyle=":", linewidth=1.3, label=f"opening cash ({fmt.money(opening, currency)})")
    ax.axhline(0, color="0.2", linewidth=0.8)
    credit = _credit_line(ax, limit, limit_known, currency)
    _money_axis(ax, currency)
    ax.set_xlabel("month of the contract (balance at the end of the month)")
    ax.set_ylabel("cash balance")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="best", fontsize=8.5)
    title = title or f"Cash balance of {org}, month by month"
    ax.set_title(title)
    low = int(q["p50"].idxmin()) if len(q) else 0
    alt = (f"Fan chart of the month-end cash balance of {org} over {len(x)} months, across {replications} runs. "
           f"The median run starts at {fmt.money(q['p50'].iloc[0], currency)} after month {int(x[0])}, is lowest at "
           f"{fmt.money(q['p50'].min(), currency)} in month {low} and ends at {fmt.money(q['p50'].iloc[-1], currency)}. "
           f"In the worst 5% of runs the balance falls to {fmt.money(q['p5'].min(), currency)} or below; "
           f"{credit}." + (f" Opening cash is {fmt.money(opening, currency)}." if opening is not None else ""))
    note = ("The black line is the median run: half the runs had more cash that month, half less. The dark band holds "
            "the middle half of the runs and the light dotted band 90% of them, so the bottom of the light band is a bad "
            "but not extreme run (1 in 20 did worse). Where the bands reach the dashed credit-limit line, the organisation "
            "is out of money in those runs; a band that stays low for many months means a long wait for payments.")
    return _render(fig, name or f"cash_{safe_name(org)}", title, alt, note)


def lowest_cash_hist(values: pd.Series, org: str, limit, limit_known: bool, failure_share, currency: str,
                     name: str | None = None) -> Chart:
    v = values.dropna().to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
    bins = min(30, max(5, int(math.sqrt(len(v))) * 2)) if len(v) else 5
    ax.hist(v, bins=bins, color=COLOURS[0], alpha=0.55, edgecolor="black", hatch="//", linewidth=0.6, label="runs")
    p50, p5 = (float(np.median(v)), float(np.quantile(v, 0.05))) if len(v) else (float("nan"), float("nan"))
    ax.axvline(p50, color="black", linewidth=2, label=f"median {fmt.money(p50, currency)}")
    ax.axvline(p5, color="black", linestyle="--", linewidth=1.5, label=f"5th percentile {fmt.money(p5, currency)}")
    if limit_known and limit is not None:
        ax.axvline(-limit, color=COLOURS[3], linestyle=(0, (6, 2)), linewidth=1.6,
                   label=f"credit limit ({fmt.money(-limit, currency)})")
    _money_axis(ax, currency, "x")
    ax.set_xlabel("lowest cash balance during the contract")
    ax.set_ylabel("number of runs")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8.5)
    title = f"Lowest cash balance of {org}"
    ax.set_title(title)
    alt = (f"Histogram of the lowest cash balance {org} reached in each of {len(v)} runs. Median "
           f"{fmt.money(p50, currency)}, 5th percentile {fmt.money(p5, currency)}, lowest "
           f"{fmt.money(v.min() if len(v) else None, currency)}, highest {fmt.money(v.max() if len(v) else None, currency)}. "
           f"It ran out of cash in {fmt.pct(failure_share)} of runs.")
    note = ("Each bar counts the runs whose lowest balance fell in that range. The solid line is the median; the "
            "dashed line the 5th percentile (1 run in 20 went lower). Bars left of the credit-limit line are runs in "
            "which the organisation could not pay its way.")
    return _render(fig, name or f"lowest_cash_{safe_name(org)}", title, alt, note)


def cash_fans_by_design(cash: dict[str, pd.DataFrame], designs: list, org: str, currency: str, fan) -> Chart:
    """Small multiples: one fan chart per design for one organisation (designs without it are skipped)."""
    names = [d.name for d in designs if d.name in cash and (cash[d.name]["organisation"] == org).any()][:MAX_PANELS]
    n = len(names)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols + 0.8, 2.7 * nrows + 0.6), sharey=True, squeeze=False, layout="constrained")
    parts = []
    for ax, name in zip(axes.flat, names):
        info = next(d for d in designs if d.name == name)
        q = fan(cash[name][cash[name]["organisation"] == org], "cash")
        x = q.index.to_numpy()
        ax.fill_between(x, q["p5"], q["p95"], color=COLOURS[0], alpha=0.15, hatch="..", edgecolor=COLOURS[0], linewidth=0)
        ax.fill_between(x, q["p25"], q["p75"], color=COLOURS[0], alpha=0.35, linewidth=0)
        ax.plot(x, q["p50"], color="black", linewidth=1.8)
        ax.axhline(0, color="0.2", linewidth=0.7)
        o = next((o for o in info.orgs if o.name == org), None)
        if o and o.limit_known and o.credit_limit is not None:
            ax.axhline(-o.credit_limit, color=COLOURS[3], linestyle=(0, (6, 2)), linewidth=1.4)
        if o and o.opening_cash is not None:
            ax.axhline(o.opening_cash, color="0.35", linestyle=":", linewidth=1.1)
        ax.set_title(name + (" (baseline)" if info.baseline else ""), fontsize=9.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        _money_axis(ax, currency)
        parts.append(f"{name}: median lowest {fmt.money(q['p50'].min(), currency)}, 5th percentile low "
                     f"{fmt.money(q['p5'].min(), currency)}")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color="black", linewidth=1.8, label="median run"),
               Patch(facecolor=COLOURS[0], alpha=0.35, label="middle 50% of runs"),
               Patch(facecolor=COLOURS[0], alpha=0.15, hatch="..", label="90% of runs"),
               Line2D([], [], color="0.35", linestyle=":", label="opening cash"),
               Line2D([], [], color=COLOURS[3], linestyle=(0, (6, 2)), label="credit limit (lowest balance allowed)")]
    for ax in axes[-1]:
        ax.set_xlabel("month of the contract", fontsize=9)
    for row in axes[:-1]:
        for i, ax in enumerate(row):
            if i + ncols * (nrows - 1) >= n:  # no panel below this one: label its axis too
                ax.set_xlabel("month of the contract", fontsize=9)
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8.5)
    title = f"Cash balance of {org}, month by month, by design"
    fig.suptitle(title, fontsize=11)
    alt = (f"Fan charts of the month-end cash balance of {org}, one panel per design ({n} designs), all on the same "
           "scale. " + "; ".join(parts) + ".")
    note = ("Each panel is one design. The black line is the median run, the dark band the middle half of the runs, the "
            "light dotted band 90% of them; the dashed line is the credit limit and the dotted line the opening cash. "
            "Panels share the vertical scale, so a design whose bands sit lower leaves the organisation shorter of cash.")
    return _render(fig, f"cash_{safe_name(org)}", title, alt, note)


def lowest_cash_box(values: dict[str, pd.Series], org: str, baseline: str, limit_by_design: dict, currency: str) -> Chart:
    names = list(values)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.6), layout="constrained")
    data = [values[n].dropna().to_numpy(dtype=float) for n in names]
    pos = np.arange(len(names))[::-1]
    bp = ax.boxplot(data, positions=pos, **_horizontal(), whis=(5, 95), widths=0.55, patch_artist=True, showfliers=True,
                    medianprops={"color": "black", "linewidth": 2}, flierprops={"marker": "x", "markersize": 4})
    for i, box in enumerate(bp["boxes"]):
        box.set_facecolor(COLOURS[0] if names[i] != baseline else COLOURS[1])
        box.set_alpha(0.5)
        box.set_hatch("//" if names[i] == baseline else "")
    limits = {v for v in limit_by_design.values() if v is not None}
    if len(limits) == 1:
        lim = limits.pop()
        ax.axvline(-lim, color=COLOURS[3], linestyle=(0, (6, 2)), linewidth=1.5, label=f"credit limit ({fmt.money(-lim, currency)})")
        ax.legend(fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.22 if len(names) > 2 else -0.35))
    ax.set_yticks(pos, [n + (" (baseline)" if n == baseline else "") for n in names])
    _money_axis(ax, currency, "x")
    ax.set_xlabel("lowest cash balance during the contract\n(box: middle 50% of runs; whiskers: 5th–95th percentile)")
    title = f"Lowest cash balance of {org}, by design"
    ax.set_title(title)
    parts = [f"{n} median {fmt.money(np.median(d) if len(d) else None, currency)}, 5th percentile "
             f"{fmt.money(np.quantile(d, 0.05) if len(d) else None, currency)}" for n, d in zip(names, data)]
    alt = f"Box plots of the lowest cash balance of {org} in each run, one row per design: " + "; ".join(parts) + "."
    note = ("One row per design (the baseline is hatched). The thick line in each box is the median run's lowest balance; "
            "the box holds the middle half of the runs and the whiskers reach the 5th and 95th percentiles; crosses are "
            "single runs beyond them. Rows further left mean deeper cash troughs.")
    return _render(fig, f"lowest_cash_{safe_name(org)}", title, alt, note)


# ---------------------------------------------------------------------------------------------
# Dot-and-whisker charts (rates with intervals)


def _dots(ax, y, mean, lo, hi, style: dict, label: str, unit: str, annotate=True):
    mean, lo, hi = (np.asarray(a, dtype=float) for a in (mean, lo, hi))
    # an interval that does not contain its estimate (e.g. a degenerate or rounded one) is drawn as a point
    err = np.vstack([np.where(np.isnan(lo), 0, mean - lo), np.where(np.isnan(hi), 0, hi - mean)])
    err = np.clip(np.nan_to_num(err), 0, None)
    ax.errorbar(mean, y, xerr=err, fmt=style.get("marker", "o"), color=style.get("color", "black"), capsize=3,
                markersize=6, linewidth=1.4, label=legend_label(label), markerfacecolor=style.get("face", style.get("color", "black")))
    if annotate:
        for m, h, yy in zip(mean, hi, y):
            if not np.isnan(m):
                ax.annotate(fmt.value(m, unit), (h if not np.isnan(h) else m, yy), xytext=(4, 0), textcoords="offset points",
                            va="center", fontsize=8)


def _right(rows: list[dict], keys) -> float:
    """Right end of a rate axis: room for the value labels after the highest whisker."""
    top = 0.0
    for r in rows:
        for k in keys:
            ci = fmt.clean(r.get(k)) or {}
            for v in (ci.get("mean"), ci.get("hi")):
                if v is not None:
                    top = max(top, v)
    return min(1.12, top * 1.15 + 0.03) if top > 0 else 1.0


def _segment_rate_dots(rows: list[dict], series, xlabel: str, legend_cols: int, title: str, short_alt: bool = False):
    """Dot-and-whisker chart of per-segment rates (each series: key, label, style, vertical offset).

    Returns the figure and, per series drawn, an alt-text part naming each segment's rate and interval
    (with ``short_alt``, the series label without its parenthesised explanation)."""
    names = [r["segment"] for r in rows]
    y = np.arange(len(rows))[::-1].astype(float)
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.8), layout="constrained")
    parts = []
    get = lambda v, k: np.nan if v.get(k) is None else v[k]  # noqa: E731
    for key, label, style, off in series:
        vals = [fmt.clean(r.get(key)) or {} for r in rows]
        if not any(v.get("mean") is not None for v in vals):
            continue
        _dots(ax, y + off, [get(v, "mean") for v in vals], [get(v, "lo") for v in vals], [get(v, "hi") for v in vals],
              style, label, "pct")
        parts.append(f"{label.split(' (')[0] if short_alt else label}: "
                     + ", ".join(f"{n} {fmt.interval(v)}" for n, v in zip(names, vals)))
    ax.set_yticks(y, names)
    ax.xaxis.set_major_formatter(percent_formatter(ax.xaxis))
    ax.set_xlim(0, _right(rows, tuple(k for k, *_ in series)))
    ax.set_xlabel(xlabel)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2 if len(rows) > 3 else -0.3), ncol=legend_cols, fontsize=8.5)
    ax.set_title(title)
    return fig, parts


def rates_by_segment(segments: list[dict], primary: str | None, milestone: str | None = None) -> Chart:
    """Run report: outcome and milestone rates by segment with 95% intervals, each named by its state."""
    series = [("outcome_rate", f"outcome rate ({primary or 'primary outcome'})", {"color": COLOURS[2], "marker": "o"}, 0.14),
              ("milestone_rate", f"milestone rate ({milestone or 'first milestone'})", {"color": COLOURS[1], "marker": "s", "face": "white"}, -0.14)]
    title = "Outcome and milestone rates by client segment"
    fig, parts = _segment_rate_dots(segments, series, "share of referred clients (95% interval)", 2, title)
    alt = "Dot-and-whisker chart of rates by segment with 95% intervals. " + "; ".join(parts) + "."
    note = ("Each dot is the share of referred clients in that segment who reached the outcome (filled circle) or, "
            "where the contract has one, the milestone (open square); the whiskers are 95% intervals, the range the true rate is likely to lie in given the "
            "number of runs. Segments whose whiskers do not overlap clearly differ.")
    return _render(fig, "outcome_rates", title, alt, note)


def by_design_panels(exp, metrics: list[tuple[str, str]], unit: str, name: str, title: str, xlabel: str, note: str,
                     direction_note: str = "") -> Chart:
    """Experiment: one panel per metric (label), one row per design, dot with its 95% interval; baseline marked."""
    metrics = [(m, label) for m, label in metrics if exp.has(m)]
    designs = exp.names
    n = len(metrics)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.9 * ncols + 1.6, (0.34 * len(designs) + 1.1) * nrows + 0.4),
                             sharey=True, squeeze=False, layout="constrained")
    y = np.arange(len(designs))[::-1].astype(float)
    parts = []
    for ax, (metric, label) in zip(axes.flat, metrics):
        rows = exp.rows(metric).reindex(designs)
        base = rows.index == exp.baseline
        for mask, style in ((~base, {"color": COLOURS[0], "marker": "o"}), (base, {"color": COLOURS[1], "marker": "D"})):
            if mask.any():
                _dots(ax, y[mask], rows["mean"][mask], rows["lo"][mask], rows["hi"][mask], style, "", unit, annotate=False)
        if unit == "pct":
            ax.xaxis.set_major_formatter(percent_formatter(ax.xaxis))
        elif unit == "money":
            _money_axis(ax, exp.currency, "x")
        ax.set_title(label, fontsize=9.5)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        parts.append(f"{label}: " + ", ".join(f"{d} {fmt.estimate(r['mean'], r['lo'], r['hi'], unit, exp.currency)}"
                                             for d, r in rows.iterrows() if not fmt.missing(r["mean"])))
    axes[0][0].set_yticks(y, [d + (" (baseline)" if d == exp.baseline else "") for d in designs])
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.supxlabel(xlabel, fontsize=9)
    fig.suptitle(title, fontsize=11)
    alt = f"{title}: dot-and-whisker panels, one row per design, 95% intervals. " + "; ".join(parts) + "."
    return _render(fig, name, title, alt, note + (" " + direction_note if direction_note else ""))


# ---------------------------------------------------------------------------------------------
# Over time


def _end_labels(ax, ends: list[tuple[float, float, str]]):
    """Label lines at their right end, nudged apart vertically so that equal end values stay readable."""
    if not ends:
        return
    lo, hi = ax.get_ylim()
    gap = 0.05 * (hi - lo)
    groups: dict[tuple[float, str], list[str]] = {}  # lines ending on the same value share one label
    for x, y, text in ends:
        name, value = text.strip().rsplit(" ", 1)
        groups.setdefault((x, value, round(y, 6)), []).append(name)
    merged = []
    for (x, value, y), names in groups.items():
        shown = ", ".join(names) if len(names) <= 3 else f"{', '.join(names[:2])} and {len(names) - 2} more"
        merged.append((x, y, f" {shown} {value}"))
    ends = sorted(merged, key=lambda e: e[1])
    placed = []
    for x, y, text in ends:
        y_text = max(y, placed[-1] + gap) if placed else y
        placed.append(y_text)
        ax.annotate(text, (x, y), xytext=(x, y_text), textcoords="data", va="center", fontsize=8,
                    xycoords="data", annotation_clip=False)


def cumulative_lines(curves: dict[str, pd.DataFrame], title: str, name: str, ylabel: str, alt_what: str, note: str,
                     band_key: str | None = "all", baseline: str | None = None, currency: str | None = None) -> Chart:
    fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
    parts, ends = [], []
    keys = list(curves)[:MAX_PANELS]
    for i, key in enumerate(keys):
        q = curves[key]
        x = q.index.to_numpy()
        st = _style(i)
        if key == band_key:
            ax.fill_between(x, q["p5"], q["p95"], color="0.5", alpha=0.2, hatch="..", linewidth=0,
                            label=legend_label(f"{key}: 90% of runs"))
            st = {"color": "black", "linestyle": "-", "marker": "o"}
        lw = 2.4 if key in (band_key, baseline) else 1.6
        label = key + (" (baseline)" if key == baseline else "") + (": median" if key == band_key else "")
        ax.plot(x, q["p50"], linewidth=lw, markersize=4, markevery=_markevery(len(x)), label=legend_label(label), **st)
        end = fmt.money(q["p50"].iloc[-1], currency) if currency else f"{q['p50'].iloc[-1]:,.0f}"
        ends.append((x[-1], float(q["p50"].iloc[-1]), f" {key} {end}"))
        parts.append(f"{key} {end}")
    ax.set_xlabel("month of the contract")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    if currency:
        _money_axis(ax, currency)
    _end_labels(ax, ends)
    if keys:
        x0, x1 = curves[keys[0]].index.min(), curves[keys[0]].index.max()
        ax.set_xlim(x0 - 0.5, x1 + (x1 - x0) * 0.16 + 1)
    ax.legend(fontsize=8.5, loc="upper left")
    ax.set_title(title)
    alt = f"{alt_what} By the end, median per run: " + ", ".join(parts) + "."
    return _render(fig, name, title, alt, note)


def spend_over_time(spend: pd.DataFrame, currency: str, name: str = "spend_over_time", title: str | None = None) -> Chart:
    fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
    x = spend.index.to_numpy()
    bottom = np.zeros(len(x))
    totals = []
    for kind in spend.columns:
        colour, hatch = KIND_STYLE.get(kind, ("0.5", ""))
        vals = spend[kind].to_numpy(dtype=float)
        ax.bar(x, vals, bottom=bottom, color=colour, hatch=hatch, edgecolor="black", linewidth=0.3, width=0.85,
               label=fmt.label(kind), alpha=0.85)
        bottom += vals
        totals.append(f"{fmt.label(kind)} {fmt.money(vals.sum(), currency)}")
    _money_axis(ax, currency)
    ax.set_xlabel("month of the contract")
    ax.set_ylabel("paid that month (mean over runs)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8.5, loc="upper left", ncol=min(3, max(1, len(spend.columns))))
    title = title or "What the commissioner pays each month, by payment type"
    ax.set_title(title)
    peak = int(x[np.argmax(bottom)]) if len(x) else 0
    alt = (f"Stacked bar chart of commissioner payments per month by payment type, mean over runs. Totals over the "
           f"contract: {'; '.join(totals)}. Spending peaks in month {peak} at {fmt.money(bottom.max() if len(x) else None, currency)}.")
    note = ("Each bar is one month's payments, split by type (colour and hatching; see the legend). Upfront money — service "
            "fees and attachment fees — arrives from the start; milestone and outcome payments build up later, because "
            "clients take months to reach them and claims are paid in arrears. The gap between the two is what the "
            "provider has to finance.")
    return _render(fig, name, title, alt, note)


def spend_shares_bar(rows: dict[str, dict], name: str, title: str, currency: str) -> Chart:
    """Horizontal stacked 100% bars: share of spend upfront / milestones / outcomes, one bar per run or design."""
    groups = [("upfront", COLOURS[0], ""), ("milestones", COLOURS[1], "\\\\\\"), ("outcomes", COLOURS[2], "xx")]
    names = list(rows)
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(names) + 1.6), layout="constrained")
    y = np.arange(len(names))[::-1]
    left = np.zeros(len(names))
    for g, colour, hatch in groups:
        vals = np.array([rows[n].get(g) or 0.0 for n in names])
        ax.barh(y, vals, left=left, color=colour, hatch=hatch, edgecolor="black", linewidth=0.4, label=g, alpha=0.85, height=0.6)
        for yy, l, v in zip(y, left, vals):
            if v >= 0.06:
                ax.text(l + v / 2, yy, f"{100 * v:.0f}%", ha="center", va="center", fontsize=8.5,
                        bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0, "pad": 1})
        left += vals
    ax.set_yticks(y, names)
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(percent_formatter(ax.xaxis))
    ax.set_xlabel("share of what the commissioner paid")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8.5)
    ax.grid(False)
    ax.set_title(title)
    parts = [f"{n}: upfront {fmt.pct(rows[n].get('upfront'))}, milestones {fmt.pct(rows[n].get('milestones'))}, "
             f"outcomes {fmt.pct(rows[n].get('outcomes'))}" for n in names]
    alt = "Stacked bars of the share of commissioner spend by type of payment. " + "; ".join(parts) + "."
    note = ("Each bar adds up to everything the commissioner paid. Upfront = service fees and attachment fees (paid "
            "whatever happens next); milestones = payments for steps on the way; outcomes = outcome and sustainment "
            "payments. The larger the outcomes share, the more of the financial risk the provider carries.")
    return _render(fig, name, title, alt, note)


def spend_by_design(exp) -> Chart:
    from ..analysis.metrics import PAYMENT_KINDS

    designs = exp.names
    kinds = [k for k in PAYMENT_KINDS if exp.has(f"paid[{k}]") and (exp.rows(f"paid[{k}]")["mean"].fillna(0) > 0).any()]
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(designs) + 1.8), layout="constrained")
    y = np.arange(len(designs))[::-1]
    left = np.zeros(len(designs))
    for kind in kinds:
        colour, hatch = KIND_STYLE.get(kind, ("0.5", ""))
        vals = exp.rows(f"paid[{kind}]").reindex(designs)["mean"].fillna(0).to_numpy(dtype=float)
        ax.barh(y, vals, left=left, color=colour, hatch=hatch, edgecolor="black", linewidth=0.4, label=fmt.label(kind),
                alpha=0.85, height=0.6)
        left += vals
    for yy, total in zip(y, left):
        ax.text(total, yy, " " + fmt.money(total, exp.currency), va="center", fontsize=8)
    ax.set_yticks(y, [d + (" (baseline)" if d == exp.baseline else "") for d in designs])
    _money_axis(ax, exp.currency, "x")
    ax.margins(x=0.15)
    ax.set_xlabel("paid per contract (mean over runs)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8.5)
    title = "What the commissioner pays, by payment type and design"
    ax.set_title(title)
    alt = ("Stacked bars of mean commissioner spend per contract by payment type, one bar per design: "
           + "; ".join(f"{d} {fmt.money(t, exp.currency)}" for d, t in zip(designs, left)) + ".")
    note = ("Each bar is one design's total spend, split by payment type (colour and hatching, see the legend). Compare "
            "bar lengths for the total and the segments for how the money is paid.")
    return _render(fig, "spend_by_design", title, alt, note)


def parking_by_segment(parking: dict) -> Chart:
    series = [("parking_rate", "parking rate (share of service months at minimal service)", {"color": COLOURS[3], "marker": "o"}, 0.14),
              ("dropped_rate", "dropped-client rate (share of referrals)", {"color": COLOURS[4], "marker": "s", "face": "white"}, -0.14)]
    title = "Who gets parked and dropped, by client segment"
    fig, parts = _segment_rate_dots(parking["segments"], series, "share (95% interval)", 1, title, short_alt=True)
    alt = "Dot-and-whisker chart of parking and dropped-client rates by segment with 95% intervals. " + "; ".join(parts) + "."
    note = ("Parking rate: of the months clients spent in service, the share in which they got only minimal service. "
            "Dropped-client rate: the share of referred clients who left without an outcome after getting full service in "
            "less than a quarter (by default) of their months. Higher dots for the harder segments mean the contract "
            "pushes the provider to concentrate on the easier clients.")
    return _render(fig, "parking", title, alt, note)
