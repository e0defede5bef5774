"""Comparing designs: summaries with 95% intervals and paired differences against the baseline.

Input: for each design, its per-replication figures (``metrics.per_replication`` rows, indexed by
replication). The metrics compared come from an ordered list of column families (``FAMILIES``); a family
is used wherever its columns exist, so new per-replication columns named like ``parking_rate[<segment>]``
or ``lowest_cash[<organisation>]`` appear without code changes, and missing ones are skipped.

Estimators (over replications, which are independent; Student-t 95% intervals with n - 1 degrees of
freedom, from ``pbrsim.analysis.estimators``, the same functions ``pbrsim run`` uses, so a figure is the
same number in every command; docs/metrics.md):

- ``ratio`` (outcome, milestone, parking and dropped rates, cost per outcome): pooled ratio
  sum(num)/sum(den) with a delta-method interval. The paired difference R_design - R_baseline uses the
  **paired delta method**: per replication r, z_r = (num_d,r - R_d den_d,r)/mean(den_d) - (num_b,r - R_b
  den_b,r)/mean(den_b), and se = sqrt(sum z_r^2 / (n (n-1))). Its point estimate is exactly the difference
  of the two pooled ratios.
- ``ratio_of_ratios`` (equity ratio): (Σa/Σb)/(Σc/Σd), its influence values by the delta method, paired as above.
- ``mean`` (spend, counts): mean with a Student-t interval; the paired difference is the mean of the
  per-replication differences d_r = x_d,r - x_b,r.
- ``share`` (failure): share of replications with a Wilson interval; the paired difference is the mean of
  d_r in {-1, 0, 1} with a normal interval (zero width when every replication agrees).
- ``distribution`` (lowest cash): mean with interval plus the median and 5th percentile; the paired
  difference is the mean per-replication difference.

Pairs use the replications present for both designs. ``diff_se_unpaired`` is the standard error the same
difference would have if the designs had been run on independent random numbers (sqrt(se_d^2 + se_b^2)):
common random numbers make ``diff_se`` smaller whenever the designs' results move together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .estimators import few_replications_warning, ratio_of_ratios_parts, ratio_parts, se_mean, t95, wilson
from ..model.money import money

if TYPE_CHECKING:
    from rich.console import Console

SUMMARY_COLUMNS = ["design", "baseline", "metric", "label", "unit", "estimator", "direction", "in_table", "replications", "mean", "lo", "hi",
                   "p5", "p50", "diff", "diff_lo", "diff_hi", "diff_se", "diff_se_unpaired", "pairs"]


# Which way is better, per metric family (None: no "best" — a matter of perspective, or just a count).
DIRECTION = {
    "outcome_rate": "higher", "milestone_rate": "higher", "outcomes": "higher",
    "cost_per_outcome": "lower", "paid_total": "lower",
    "parking_rate": "lower", "dropped": "lower", "dropped_failure": "lower", "dropped_service": "lower",
    "dropped_rate": "lower", "equity_ratio": "higher",
    "lowest_cash": "higher", "margin": "higher", "failed": "lower", "failed_any": "lower",
    "months_below_zero": "lower", "capped_total": None, "cap_reached": None,
    "net_public_value": "higher", "benefit_cost_ratio": "higher", "fiscal_return": "higher",
}


def family(metric: str) -> str:
    """The family of a metric name: ``parking_rate[complex]`` -> ``parking_rate``, ``milestone_rate_<state>`` -> ``milestone_rate``."""
    base = metric.split("[", 1)[0]
    return "milestone_rate" if base.startswith("milestone_rate_") else base


def direction(metric: str) -> str | None:
    """"higher", "lower" or None (no better way) for a metric name."""
    return DIRECTION.get(family(metric))


@dataclass(frozen=True)
class Metric:
    name: str  # name in the summary, e.g. outcome_rate[complex]
    label: str
    estimator: str  # ratio | ratio_of_ratios | mean | share | distribution
    unit: str  # pct | money | count | months | ratio
    column: str  # the per-replication column (numerator of a ratio)
    den: str | None = None
    in_table: bool = True  # shown by `pbrsim compare` (every metric is in summary.parquet)
    num2: str | None = None  # ratio_of_ratios: (column / den) / (num2 / den2)
    den2: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in (self.column, self.den, self.num2, self.den2) if c)


def _bracketed(columns, base: str) -> list[str]:
    """Keys k of columns named ``base[k]``, in column order."""
    return [c[len(base) + 1:-1] for c in columns if c.startswith(base + "[") and c.endswith("]")]


def _family(columns, base, label, estimator, unit, in_table=True, plain=True) -> list[Metric]:
    """``base`` itself (when ``plain``) and every ``base[key]`` column."""
    out = [Metric(base, label, estimator, unit, base, None, in_table)] if plain and base in columns else []
    out += [Metric(f"{base}[{k}]", f"{label}: {k}", estimator, unit, f"{base}[{k}]", None, in_table) for k in _bracketed(columns, base)]
    return out


def metric_list(columns) -> list[Metric]:
    """The metrics these per-replication columns support, in the order of the comparison table."""
    cols = list(columns)
    have = set(cols)
    m: list[Metric] = []
    segments = _bracketed(cols, "referrals")
    # commissioner: outcomes
    for g in segments:
        if f"outcomes[{g}]" in have:
            m.append(Metric(f"outcome_rate[{g}]", f"outcome rate: {g}", "ratio", "pct", f"outcomes[{g}]", f"referrals[{g}]"))
    if {"outcomes", "referrals"} <= have:
        m.append(Metric("outcome_rate", "outcome rate: all", "ratio", "pct", "outcomes", "referrals"))
    for col in cols:  # milestones_<state>: named by the state, so that only the same state is set side by side
        if col.startswith("milestones_") and "[" not in col and "referrals" in have:
            state = col[len("milestones_"):]
            for g in segments:
                if f"{col}[{g}]" in have:
                    m.append(Metric(f"milestone_rate_{state}[{g}]", f"milestone rate ({state}): {g}", "ratio", "pct", f"{col}[{g}]",
                                    f"referrals[{g}]", False))
            m.append(Metric(f"milestone_rate_{state}", f"milestone rate ({state}): all", "ratio", "pct", col, "referrals"))
    m += _family(cols, "outcomes", "outcomes", "mean", "count", in_table=False)
    m += _family(cols, "referrals", "referrals", "mean", "count", in_table=False)
    # commissioner: money
    if "paid_total" in have:
        m.append(Metric("paid_total", "commissioner spend", "mean", "money", "paid_total"))
    if {"paid_total", "outcomes"} <= have:
        m.append(Metric("cost_per_outcome", "cost per outcome", "ratio", "money", "paid_total", "outcomes"))
    m += _value_metrics(cols, have)
    m += _family(cols, "paid", "paid", "mean", "money", in_table=False, plain=False)
    m += _family(cols, "capped_total", "not paid: over the cap", "mean", "money", in_table=False)
    m += _family(cols, "cap_reached", "cap reached", "share", "pct", in_table=False)
    # clients: parking, dropping, equity
    for key in [""] + [f"[{g}]" for g in _bracketed(cols, "service_months")]:
        if {f"minimal_months{key}", f"service_months{key}"} <= have:
            label = "parking rate" + (f": {key[1:-1]}" if key else "")
            m.append(Metric(f"parking_rate{key}", label, "ratio", "pct", f"minimal_months{key}", f"service_months{key}"))
    for k in _bracketed(cols, "class_service_months"):  # latent classes: parking and outcomes of each class
        m.append(Metric(f"class_parking_rate[{k}]", f"parking rate: {k}", "ratio", "pct", f"class_minimal_months[{k}]",
                        f"class_service_months[{k}]", False))
        m.append(Metric(f"class_outcome_rate[{k}]", f"outcome rate: {k}", "ratio", "pct", f"class_outcomes[{k}]",
                        f"class_referrals[{k}]", False))
    for key in [""] + [f"[{g}]" for g in _bracketed(cols, "outcomes_followed")]:  # how long outcomes last
        if {f"months_after_outcome{key}", f"outcomes_followed{key}"} <= have:
            label = "months in the outcome in the year after it" + (f": {key[1:-1]}" if key else "")
            m.append(Metric(f"mean_months_after_outcome{key}", label, "ratio", "months", f"months_after_outcome{key}",
                            f"outcomes_followed{key}", not key))
    m += _family(cols, "dropped", "dropped clients (total)", "mean", "count")
    m += _family(cols, "dropped_failure", "dropped: provider failed", "mean", "count")
    m += _family(cols, "dropped_service", "dropped: little full service", "mean", "count", in_table=False)
    for key in [""] + [f"[{g}]" for g in segments]:
        if {f"dropped{key}", f"referrals{key}"} <= have:
            label = "dropped rate" + (f": {key[1:-1]}" if key else "")
            m.append(Metric(f"dropped_rate{key}", label, "ratio", "pct", f"dropped{key}", f"referrals{key}"))
    if {"outcomes_complex", "referrals_complex", "outcomes_least", "referrals_least"} <= have:
        m.append(Metric("equity_ratio", "equity ratio (complex ÷ least complex outcome rate)", "ratio_of_ratios", "ratio",
                        "outcomes_complex", "referrals_complex", True, "outcomes_least", "referrals_least"))
    # organisations
    m += _family(cols, "lowest_cash", "lowest cash", "distribution", "money")
    fails = _family(cols, "failed", "ran out of cash", "share", "pct")
    m += fails
    if "failed_any" in have:
        m.append(Metric("failed_any", "any organisation ran out of cash", "share", "pct", "failed_any", None, len(fails) > 1))
    m += _family(cols, "margin", "margin", "distribution", "money")
    m += _family(cols, "income", "income", "mean", "money", in_table=False)
    m += _family(cols, "costs", "costs", "mean", "money", in_table=False)
    m += _family(cols, "months_below_zero", "months below zero", "mean", "months", in_table=False)
    m += _family(cols, "paid_to_subcontractors", "paid to subcontractors", "mean", "money", in_table=False)
    m += _family(cols, "prime_kept", "kept by the prime", "mean", "money", in_table=False)
    # contract features present only in some designs
    m += _family(cols, "clawed_back", "clawed back (volume band)", "mean", "money")
    m += _investor_metrics(cols, have)
    return m


def _investor_metrics(cols, have) -> list[Metric]:
    """Investors (docs/social-investment.md): all of them, then each tranche where there are several."""
    m: list[Metric] = []
    for key in [""] + [f"[{k}]" for k in _bracketed(cols, "investor_drawn")]:
        name = key[1:-1] + ": " if key else ""
        if {f"investor_repaid{key}", f"investor_drawn{key}"} <= have:
            m.append(Metric(f"investor_multiple{key}", f"investor money multiple{': ' + key[1:-1] if key else ''}", "ratio", "ratio",
                            f"investor_repaid{key}", f"investor_drawn{key}"))
        for col, label, est, unit, shown in (("investor_irr", "investor IRR a year", "distribution", "pct", True),
                                             ("investor_lost", "investors lost capital", "share", "pct", True),
                                             ("investor_below_hurdle", "investor IRR below the hurdle", "share", "pct", False),
                                             ("investor_loss", "investor capital lost", "mean", "money", not key)):
            if col + key in have:
                m.append(Metric(col + key, (name + label) if key else label, est, unit, col + key, None, shown))
    return m


def _value_metrics(cols, have) -> list[Metric]:
    """Public value against the counterfactual (``pbrsim.value``), present when the scenario has a value section."""
    m = _family(cols, "net_public_value", "net present public value", "mean", "money", plain=True)
    m = [Metric(x.name, x.label, x.estimator, x.unit, x.column, None, x.name == "net_public_value") for x in m]
    if {"value_benefits", "value_costs"} <= have:
        m.append(Metric("benefit_cost_ratio", "benefit-cost ratio", "ratio", "ratio", "value_benefits", "value_costs"))
    if {"value_public_benefits", "value_costs"} <= have:
        m.append(Metric("fiscal_return", "fiscal return", "ratio", "ratio", "value_public_benefits", "value_costs", False))
    return m


# ---------------------------------------------------------------------------------------------
# Estimates


class _Design:
    """One design's per-replication figures as float arrays by column (converted once, not per metric)."""

    def __init__(self, df: pd.DataFrame):
        self.index = df.index
        self.columns = set(df.columns)
        self._df = df
        self._cols: dict[str, np.ndarray] = {}

    def __contains__(self, col: str) -> bool:
        return col in self.columns

    def __getitem__(self, col: str) -> np.ndarray:
        x = self._cols.get(col)
        if x is None:
            x = self._cols[col] = self._df[col].to_numpy(dtype=float)
        return x


def _estimate(metric: Metric, df: _Design) -> dict:
    x = df[metric.column]
    n = len(x)
    row = {"replications": n, "mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "p5": float("nan"), "p50": float("nan")}
    if n == 0:
        return row
    if metric.estimator in ("ratio", "ratio_of_ratios"):
        r, _, se = _ratio(metric, df, slice(None))
        half = t95(n) * se
        row.update(mean=r, lo=r - half, hi=r + half)
        return row
    if metric.estimator == "share":
        w = wilson(int(np.nansum(x)), n)
        row.update(mean=w["mean"], lo=w["lo"], hi=w["hi"])
        return row
    x = x[~np.isnan(x)]  # a figure with no value in some runs (an IRR where nothing was put in)
    if not len(x):
        return row
    m, se = float(np.mean(x)), se_mean(x)
    p5, p50 = np.quantile(x, [0.05, 0.5])
    row.update(mean=m, lo=m - t95(n) * se, hi=m + t95(n) * se, p5=float(p5), p50=float(p50))
    return row


def _ratio(metric: Metric, df: _Design, rows):
    """Pooled ratio (or ratio of ratios) of ``df``'s replications ``rows``: estimate, influence values, standard error."""
    if metric.estimator == "ratio_of_ratios":
        return ratio_of_ratios_parts(*(df[c][rows] for c in metric.columns))
    return ratio_parts(df[metric.column][rows], df[metric.den][rows])


def _pairs(d: _Design, b: _Design) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``d`` and in ``b`` of the replications both have, in ``d``'s order."""
    common = d.index.intersection(b.index)
    return d.index.get_indexer(common), b.index.get_indexer(common)


def _difference(metric: Metric, d: _Design, b: _Design, pairs: tuple[np.ndarray, np.ndarray]) -> dict:
    """Paired difference design - baseline over the replications both have, and the unpaired standard error."""
    di, bi = pairs
    n = len(di)
    nan = float("nan")
    out = {"diff": nan, "diff_lo": nan, "diff_hi": nan, "diff_se": nan, "diff_se_unpaired": nan, "pairs": n}
    if n == 0:
        return out
    xd, xb = d[metric.column][di], b[metric.column][bi]
    if metric.estimator in ("ratio", "ratio_of_ratios"):
        rd, zd, sed = _ratio(metric, d, di)
        rb, zb, seb = _ratio(metric, b, bi)
        if zd is None or zb is None:
            return out
        diff = rd - rb
        z = zd - zb
        se = math.sqrt((z**2).sum() / (n * (n - 1))) if n > 1 else nan
        unpaired = math.sqrt(sed**2 + seb**2)
    else:
        both = ~(np.isnan(xd) | np.isnan(xb))  # pairs where both runs have a value
        if not both.all():
            xd, xb, n = xd[both], xb[both], int(both.sum())
            out["pairs"] = n
            if n == 0:
                return out
        delta = xd - xb
        diff = float(delta.mean())
        se = se_mean(delta)
        unpaired = math.sqrt(se_mean(xd) ** 2 + se_mean(xb) ** 2)
    lo, hi = diff - t95(n) * se, diff + t95(n) * se
    if metric.estimator == "share":  # a difference of two shares lies in [-1, 1]
        lo, hi = max(lo, -1.0), min(hi, 1.0)
    out.update(diff=diff, diff_lo=lo, diff_hi=hi, diff_se=se, diff_se_unpaired=unpaired)
    return out


def summary_table(per_rep: dict[str, pd.DataFrame], designs: list[str], baseline: str) -> pd.DataFrame:
    """One row per design x metric (designs in the given order, metrics in table order).

    ``per_rep[design]`` is that design's per-replication frame indexed by replication. A metric whose
    columns a design lacks (say milestone rates in a design without milestones) has no row for it.
    """
    order: dict[str, Metric] = {}
    for name in designs:
        for metric in metric_list(per_rep[name].columns):
            order.setdefault(metric.name, metric)
    data = {name: _Design(per_rep[name]) for name in designs}
    base = data.get(baseline)
    if base is None and baseline in per_rep:
        base = _Design(per_rep[baseline])
    pairs = {name: _pairs(data[name], base) for name in designs if base is not None and name != baseline}
    rows = []
    for metric in order.values():
        for name in designs:
            df = data[name]
            if any(c not in df for c in metric.columns):
                continue
            row = {"design": name, "baseline": name == baseline, "metric": metric.name, "label": metric.label, "unit": metric.unit,
                   "estimator": metric.estimator, "direction": direction(metric.name), "in_table": metric.in_table,
                   **_estimate(metric, df)}
            if name != baseline and base is not None and all(c in base for c in metric.columns):
                row.update(_difference(metric, df, base, pairs[name]))
            rows.append(row)
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    table["pairs"] = table["pairs"].astype("Int64")
    return table


CLIENT_FAMILIES = ("outcome_rate", "milestone_rate", "outcomes", "parking_rate", "dropped", "dropped_failure",
                   "dropped_service", "dropped_rate", "equity_ratio")

PRICE_ONLY_NOTE = ("the same clients reach the same states in every replication as in the baseline: the design changes "
                   "only what is paid, and the providers' policy does not respond to prices (a price-blind policy such as "
                   "holistic or needs_first, docs/behaviour.md), so only the money and the providers' cash differ "
                   "unless a provider runs out of cash.")


def same_outcomes_as_baseline(summary: pd.DataFrame) -> list[str]:
    """Designs whose every client outcome (rates, counts, parking, dropped) equals the baseline's in every replication."""
    rows = summary[~summary["baseline"].astype(bool) & summary["metric"].map(family).isin(CLIENT_FAMILIES)]
    out = []
    for design, g in rows.groupby("design", sort=False):
        same = (g["diff"].fillna(1) == 0) & (g["diff_se"].fillna(1) == 0)
        if len(g) and bool(same.all()):
            out.append(str(design))
    return out


# ---------------------------------------------------------------------------------------------
# Printing


def _fmt(x: float, unit: str, currency: str = "GBP") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if unit == "pct":
        return f"{100 * x:.1f}%"
    if unit == "money":
        return money(x, currency)
    if unit == "ratio":
        return f"{x:.2f}"
    return f"{x:,.1f}"


def _bare(x: float, unit: str, signed: bool = False) -> str:
    """A number without its unit (interval bounds), signed for differences."""
    v = 100 * x if unit == "pct" else x
    digits = 0 if unit == "money" else 2 if unit == "ratio" else 1
    return f"{v:+,.{digits}f}" if signed else f"{v:,.{digits}f}"


def _diff(x: float, unit: str, currency: str) -> str:
    if unit == "pct":
        return f"{100 * x:+.1f} pp"
    if unit == "money":
        return ("+" if x > 0 else "") + money(x, currency)
    if unit == "ratio":
        return f"{x:+.2f}"
    return f"{x:+,.1f}"


def _cell(row: pd.Series, currency: str) -> str:
    unit = row["unit"]
    if row["estimator"] == "distribution":
        text = f"median {_fmt(row['p50'], unit, currency)}\np5 {_fmt(row['p5'], unit, currency)}"
    elif pd.isna(row["lo"]):
        text = _fmt(row["mean"], unit, currency)
    else:
        text = f"{_fmt(row['mean'], unit, currency)} ({_bare(row['lo'], unit)}–{_bare(row['hi'], unit)})"
    if row["baseline"] or pd.isna(row["diff"]):
        return text
    lead = "Δ mean " if row["estimator"] == "distribution" else "Δ "
    if row["diff_se"] == 0:
        if row["diff"] == 0:
            return text + "\nΔ 0 in every run"
        return text + f"\n{lead}{_diff(row['diff'], unit, currency)} in every run"
    if pd.isna(row["diff_lo"]):
        return text + f"\n{lead}{_diff(row['diff'], unit, currency)}"
    return text + (f"\n{lead}{_diff(row['diff'], unit, currency)} "
                   f"({_bare(row['diff_lo'], unit, True)} to {_bare(row['diff_hi'], unit, True)})")


def print_comparison(summary: pd.DataFrame, console: Console | None = None, *, title: str = "", currency: str = "GBP",
                     replications: int | None = None, seed: int | None = None, per_table: int | None = None) -> None:
    """Side-by-side tables: metrics as rows, the baseline and up to ``per_table`` other designs as columns."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    per_table = per_table or max(1, min(4, (console.width - 24) // 22 - 1))
    shown = summary[summary["in_table"]]
    designs = list(dict.fromkeys(summary["design"]))
    baseline = next((d for d in designs if summary.loc[summary.design == d, "baseline"].any()), designs[0])
    others = [d for d in designs if d != baseline]
    metrics = list(dict.fromkeys(shown["metric"]))
    labels = dict(zip(shown["metric"], shown["label"]))
    cells = {(r.design, r.metric): _cell(pd.Series(r._asdict()), currency) for r in shown.itertuples(index=False)}
    head = f"[bold]{title}[/bold]: " if title else ""
    reps = f"{replications} replications of each design" if replications else "replications"
    console.print(f"{head}{len(designs)} designs, {reps}{f', seed {seed}' if seed is not None else ''}; baseline "
                  f"[bold]{baseline}[/bold]. Means over replications with 95% intervals.")
    n_reps = replications or (int(summary["replications"].min()) if len(summary) else 0)
    warning = few_replications_warning(n_reps) if n_reps else None
    if warning:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    groups = [others[i:i + per_table] for i in range(0, len(others), per_table)] or [[]]
    for group in groups:
        t = Table(show_lines=True)
        t.add_column("", overflow="fold", min_width=12)
        t.add_column(f"{baseline}\n(baseline)", justify="right")
        for d in group:
            t.add_column(d, justify="right")
        for metric in metrics:
            t.add_row(labels[metric], *[cells.get((d, metric), "–") for d in [baseline] + group])
        console.print(t)
    console.print(
        "Δ = paired difference from the baseline: the same replications (common random numbers), mean and 95% interval. "
        "Rates, the equity ratio and cost per outcome are pooled ratios (their Δ by the paired delta method); "
        "pp = percentage points. Intervals: Student's t with n-1 degrees of freedom; shares of runs: Wilson. "
        "Lowest cash and margin: median and 5th percentile over replications; their Δ is the mean paired difference. "
        "Dropped clients include those lost when their provider failed. docs/metrics.md defines every row.",
        style="dim",
    )
    same = same_outcomes_as_baseline(summary)
    if same:
        console.print(f"Prices only: {', '.join(same)}: " + PRICE_ONLY_NOTE, highlight=False)
