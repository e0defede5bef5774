"""Tidy tables for the Python API: one row per figure, plain column names, units said in words.

Every figure comes from the same summary the command line prints (``analysis.compare.summary_table``), so
a number means the same in a notebook, a terminal table and a report. Money is in pounds (the scenario's
currency), never pence; rates and shares are fractions between 0 and 1.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd

from ..experiments.long_format import key_columns

TIDY_COLUMNS = ["design", "metric", "organisation", "segment", "item", "label", "unit", "mean", "lo", "hi", "p5", "p50",
                "diff", "diff_lo", "diff_hi", "pairs", "baseline", "in_table", "figure"]


def money_unit(currency: str) -> str:
    """The word for money amounts in tables: 'pounds' for GBP, else the currency code (major units)."""
    return "pounds" if currency == "GBP" else currency


def unit_words(unit: str, currency: str) -> str:
    """A summary unit (pct, money, count, months) as said in tidy tables."""
    return {"pct": "fraction", "money": money_unit(currency)}.get(unit, unit)


def tidy_summary(summary: pd.DataFrame, segments: Iterable[str], organisations: Iterable[str], currency: str) -> pd.DataFrame:
    """``summary_table`` rows as a tidy table: the bracketed figure name split into metric, organisation,
    segment and item, the unit in words; ``figure`` keeps the name used in summary files. Columns the
    summary has beyond the standard ones (a dataset's sweep values) stay, at the end."""
    from ..analysis.compare import SUMMARY_COLUMNS

    extra = [c for c in summary.columns if c not in SUMMARY_COLUMNS]
    keys = key_columns(summary["metric"].unique(), segments, organisations).rename(columns={"name": "figure"})
    out = summary.rename(columns={"metric": "figure"}).merge(keys, on="figure", how="left")
    out["unit"] = [unit_words(u, currency) for u in out["unit"]]
    for col in ("organisation", "segment", "item"):
        out[col] = out[col].astype("string")
    return out[TIDY_COLUMNS + extra].reset_index(drop=True)


def headline(table: pd.DataFrame) -> pd.DataFrame:
    """The figures the terminal shows (``in_table``), one row per figure, for short displays."""
    return table[table["in_table"]].reset_index(drop=True)


def format_value(x: float, unit: str) -> str:
    """A figure as people read it: 31.3%, £52,550, 18.8."""
    import math

    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if unit == "fraction":
        return f"{100 * x:.1f}%"
    if unit == "pounds":
        return f"£{x:,.0f}" if x >= 0 else f"−£{-x:,.0f}"
    if unit in ("count", "months"):
        return f"{x:,.1f}"
    return f"{x:,.0f} {unit}"


def html_table(rows: pd.DataFrame, columns: list[str], title: str) -> str:
    """A small HTML table of formatted figures (for ``_repr_html_``); values are escaped."""
    from html import escape

    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in r) + "</tr>" for r in rows[columns].itertuples(index=False))
    return (f"<div><strong>{escape(title)}</strong><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")
