"""Charts for the Python API (matplotlib): a cash fan, outcome rates by segment, a comparison of designs.

Each function draws on ``ax`` when given (else a new figure) and returns the Axes, so charts compose in a
notebook. Money is in pounds; rates are shown as percentages of fractions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _axes(ax, size=(7, 4)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size, layout="constrained")[1]  # room for long labels


def cash_fan(monthly: pd.DataFrame, organisation: str, opening: float, ax=None, title: str | None = None):
    """Month-end cash of ``organisation`` (pounds): median line, 50% and 90% bands over replications."""
    ax = _axes(ax)
    m = monthly[monthly["organisation"] == organisation]
    cash = m.pivot_table(index="month", columns="replication", values="cash_pence", aggfunc="last", observed=True) / 100
    months = np.concatenate([[-1], cash.index.to_numpy()])  # month -1: the opening balance
    q = {p: np.concatenate([[opening], np.nanpercentile(cash.to_numpy(), p, axis=1)]) for p in (5, 25, 50, 75, 95)}
    ax.fill_between(months, q[5], q[95], alpha=0.2, color="C0", label="90% of replications")
    ax.fill_between(months, q[25], q[75], alpha=0.4, color="C0", label="50% of replications")
    ax.plot(months, q[50], color="C0", label="median")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("month")
    ax.set_ylabel("cash at month end (£)")
    ax.set_title(title or f"Cash of {organisation}")
    ax.legend(loc="best", fontsize="small")
    return ax


def outcomes_by_segment(table: pd.DataFrame, ax=None, title: str | None = None):
    """Outcome rate of each segment (and all) with its 95% interval, from a tidy summary of one design."""
    ax = _axes(ax)
    rows = table[table["metric"] == "outcome_rate"]
    labels = [s if isinstance(s, str) else "all" for s in rows["segment"].fillna("all")]
    y = np.arange(len(rows))
    mean = rows["mean"].to_numpy(float) * 100
    err = np.vstack([mean - rows["lo"].to_numpy(float) * 100, rows["hi"].to_numpy(float) * 100 - mean])
    ax.barh(y, mean, xerr=err, color="C2", alpha=0.8, capsize=3)
    ax.set_yticks(y, labels)
    ax.set_xlabel("outcome rate (%), 95% interval")
    ax.set_title(title or "Outcomes by segment")
    return ax


def comparison(table: pd.DataFrame, figure: str, label: str, unit: str, ax=None, differences: bool = True):
    """One figure across designs: each design's paired difference from the baseline (or its value) with 95% intervals."""
    ax = _axes(ax, size=(7, 0.5 * max(3, table["design"].nunique()) + 1))
    rows = table[table["figure"] == figure]
    if differences:
        rows = rows[~rows["baseline"]]
        mid, lo, hi = (rows[c].to_numpy(float) for c in ("diff", "diff_lo", "diff_hi"))
    else:
        mid, lo, hi = (rows[c].to_numpy(float) for c in ("mean", "lo", "hi"))
    scale = 100 if unit == "fraction" else 1
    y = np.arange(len(rows))
    ax.errorbar(mid * scale, y, xerr=[(mid - lo) * scale, (hi - mid) * scale], fmt="o", color="C1", capsize=3)
    ax.set_yticks(y, rows["design"].tolist())
    ax.invert_yaxis()
    if differences:
        ax.axvline(0, color="grey", lw=0.8)
    what = {"fraction": " (percentage points)" if differences else " (%)", "pounds": " (£)"}.get(unit, f" ({unit})")
    ax.set_xlabel(("difference from the baseline in " if differences else "") + label + what + ", 95% interval")
    return ax


def tornado(rows: pd.DataFrame, ax=None, title: str | None = None):
    """Stress test: each stress's share of replications in which the organisation ran out of cash, against the base."""
    ax = _axes(ax, size=(7, 0.4 * max(4, len(rows)) + 1))
    base = float(rows.loc[rows["kind"] == "base", "failure"].iloc[0]) if (rows["kind"] == "base").any() else 0.0
    rows = rows[rows["kind"] != "base"].sort_values("failure")
    y = np.arange(len(rows))
    ax.barh(y, (rows["failure"].to_numpy(float) - base) * 100, left=base * 100, color="C3", alpha=0.8)
    ax.axvline(base * 100, color="black", lw=1, label=f"base {base:.1%}")
    ax.set_yticks(y, rows["label"].tolist())
    ax.set_xlabel("replications in which it ran out of cash (%)")
    ax.set_title(title or "Stress test")
    ax.legend(loc="lower right", fontsize="small")
    return ax
