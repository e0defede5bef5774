"""Tidy (long) tables: per-replication figures as one row per figure, and sweep values as typed columns.

The per-replication table is wide, with bracketed column names (``failed[charity]``) that SQL must quote.
The long table has one row per design x replication x figure, with plain columns that need no quoting::

    design | <sweep columns> | replication | metric | organisation | segment | item | value

``metric`` is the figure's family (``failed``, ``outcomes``, ``paid``); a bracketed key goes to
``organisation`` when it names an organisation, to ``segment`` when it names a segment and to ``item``
otherwise (a payment kind in ``paid[outcome]``). Money is in pounds, as in the wide table.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd

LONG_COLUMNS = ["replication", "metric", "organisation", "segment", "item", "value"]


def split_metric(name: str) -> tuple[str, str | None]:
    """``failed[charity]`` -> (``failed``, ``charity``); ``paid_total`` -> (``paid_total``, None)."""
    if name.endswith("]") and "[" in name:
        family, _, key = name[:-1].partition("[")
        return family, key
    return name, None


def key_columns(names: Iterable[str], segments: Iterable[str], organisations: Iterable[str]) -> pd.DataFrame:
    """metric, organisation, segment and item of each name (a key naming both a segment and an organisation
    counts as the organisation)."""
    segments, organisations = set(segments), set(organisations)
    rows = []
    for name in names:
        family, key = split_metric(name)
        rows.append({"name": name, "metric": family,
                     "organisation": key if key in organisations else None,
                     "segment": key if key in segments and key not in organisations else None,
                     "item": key if key is not None and key not in organisations and key not in segments else None})
    return pd.DataFrame(rows, columns=["name", "metric", "organisation", "segment", "item"])


def long_replications(per_rep: pd.DataFrame, segments: Iterable[str], organisations: Iterable[str]) -> pd.DataFrame:
    """One design's per-replication figures (indexed or with a ``replication`` column) as the long table.

    Figures that are missing for a replication (a failure month when nobody failed) are left out.
    """
    wide = per_rep.reset_index() if "replication" not in per_rep.columns else per_rep
    value_cols = [c for c in wide.columns if c not in ("replication", "design")]
    melted = wide.melt(id_vars=["replication"], value_vars=value_cols, var_name="name", value_name="value")
    melted = melted.dropna(subset=["value"])
    melted["value"] = melted["value"].astype("float64")
    keys = key_columns(value_cols, segments, organisations)
    out = melted.merge(keys, on="name", how="left")
    out["replication"] = out["replication"].astype("int64")
    return out[LONG_COLUMNS].sort_values(["replication"], kind="stable").reset_index(drop=True)


def with_sweep_columns(df: pd.DataFrame, design_col: str, sweeps: dict[str, dict], at_end: bool = False) -> pd.DataFrame:
    """``df`` with one typed column per swept value (by label), placed after ``design_col`` (or, ``at_end``,
    after the last column); designs that are
    not sweep points (or points of another sweep) have nulls there. A label that clashes with a column of
    the summary or the long table (``value``, say) is prefixed ``sweep_`` in both."""
    from ..analysis.compare import SUMMARY_COLUMNS

    labels = list(dict.fromkeys(label for values in sweeps.values() for label in values))
    if not labels:
        return df
    reserved = set(out_columns := list(df.columns)) | set(SUMMARY_COLUMNS) | set(LONG_COLUMNS)  # the same name in every table
    out = df.copy()
    pos = len(out_columns) if at_end else out_columns.index(design_col) + 1
    for label in reversed(labels):
        col = f"sweep_{label}" if label in reserved else label
        values = [sweeps.get(d, {}).get(label) for d in out[design_col]]
        out.insert(pos, col, _typed(values))
    return out


def _typed(values: list) -> pd.Series:
    """Sweep values as the narrowest column type that holds them: boolean, integer, float, else text."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="boolean")
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="Int64")
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.Series([float(v) if v is not None else None for v in values], dtype="Float64")
    return pd.Series([None if v is None else (v if isinstance(v, str) else str(v)) for v in values], dtype="string")
