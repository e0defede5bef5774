"""Parking, dropped clients and equity: per-replication figures from the run tables, and their summary.

Pure functions of the tidy tables (``clients``, ``monthly``, ``ledger``); docs/behaviour.md defines
each figure. Column names (all per replication):

* ``service_months[<seg>]``, ``minimal_months[<seg>]``: client-months in a service state, and those at
  minimal service, by segment (no segment suffix: all segments);
  ``parking_rate[<seg>]`` = minimal / service months (NaN when there were none).
* ``org_service_months[<org>]``, ``org_minimal_months[<org>]``, ``org_parking_rate[<org>]``: the same by
  organisation, from the monthly table.
* ``referrals[<seg>]``; ``dropped[<seg>]``: clients who left (absorbing final state) without reaching
  the primary outcome and had full service in less than ``reporting.dropped_full_service_share`` of
  their in-service months; ``dropped_rate[<seg>]`` = dropped / referrals.
* ``referrals_complex``, ``outcomes_complex``, ``referrals_least``, ``outcomes_least``: the most and the
  least complex segments (ties pooled); ``equity_gap`` = outcome rate of the most complex / of the
  least complex (NaN when undefined).
* ``paid_complex`` (pounds): commissioner payments for the most complex segments' clients, plus the
  service fee shared out by their share of referrals; with ``outcomes_complex`` it gives the cost to the
  commissioner per complex-client outcome.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..engine.behaviour import complexity
from .metrics import Z95, mean_ci, ratio_ci


def complexity_groups(model) -> tuple[list[str], list[str]]:
    """(most complex segments, least complex segments); both empty when all segments rank equal."""
    segs = list(model.pathway.segments)
    rank = complexity(model)
    if len(segs) < 2 or rank.max() == rank.min():
        return [], []
    return [g for g, r in zip(segs, rank) if r == rank.max()], [g for g, r in zip(segs, rank) if r == rank.min()]


def _by_rep(values: pd.Series, reps: pd.Index) -> pd.Series:
    return values.groupby(level=0).sum().reindex(reps, fill_value=0)


def per_replication_columns(model, clients: pd.DataFrame, monthly: pd.DataFrame, ledger: pd.DataFrame) -> pd.DataFrame:
    """Parking, dropped-client and equity figures, one row per replication (those present in ``monthly``)."""
    pw, c = model.pathway, model.contract
    reps = pd.Index(np.sort(monthly["replication"].unique()), name="replication")
    segs = list(pw.segments)
    out = pd.DataFrame(index=reps)
    cl = clients.set_index("replication")
    full = cl["months_full"].astype(np.int64)
    minimal = cl["months_minimal"].astype(np.int64)
    service = full + minimal
    primary = pw.states[c.primary_outcome] if c.primary_outcome >= 0 else None
    outcome = cl[f"first_{primary}"].notna() if primary else pd.Series(False, index=cl.index)
    left = cl["end_month"].notna()
    threshold = model.scenario.reporting.dropped_full_service_share
    with np.errstate(invalid="ignore", divide="ignore"):
        full_share = full / service.where(service > 0)
    dropped = left & ~outcome & (service > 0) & (full_share < threshold)
    seg = cl["segment"].astype(str)

    for g in segs + [None]:
        sel = seg == g if g else pd.Series(True, index=cl.index)
        key = f"[{g}]" if g else ""
        out[f"service_months{key}"] = _by_rep(service[sel], reps)
        out[f"minimal_months{key}"] = _by_rep(minimal[sel], reps)
        out[f"parking_rate{key}"] = out[f"minimal_months{key}"] / out[f"service_months{key}"].where(out[f"service_months{key}"] > 0)
        out[f"referrals{key}"] = _by_rep(sel.astype(np.int64), reps)
        out[f"dropped{key}"] = _by_rep((dropped & sel).astype(np.int64), reps)
        out[f"dropped_rate{key}"] = out[f"dropped{key}"] / out[f"referrals{key}"].where(out[f"referrals{key}"] > 0)

    for org in monthly["organisation"].astype(str).unique():
        m = monthly[monthly["organisation"].astype(str) == org]
        n_full = m.groupby("replication")["n_full"].sum().reindex(reps, fill_value=0)
        n_min = m.groupby("replication")["n_minimal"].sum().reindex(reps, fill_value=0)
        out[f"org_service_months[{org}]"] = n_full + n_min
        out[f"org_minimal_months[{org}]"] = n_min
        out[f"org_parking_rate[{org}]"] = n_min / (n_full + n_min).where(n_full + n_min > 0)

    most, least = complexity_groups(model)
    if most:
        in_most, in_least = seg.isin(most), seg.isin(least)
        out["referrals_complex"] = _by_rep(in_most.astype(np.int64), reps)
        out["outcomes_complex"] = _by_rep((in_most & outcome).astype(np.int64), reps)
        out["referrals_least"] = _by_rep(in_least.astype(np.int64), reps)
        out["outcomes_least"] = _by_rep((in_least & outcome).astype(np.int64), reps)
        rate_c = out["outcomes_complex"] / out["referrals_complex"].where(out["referrals_complex"] > 0)
        rate_l = out["outcomes_least"] / out["referrals_least"].where(out["referrals_least"] > 0)
        out["equity_gap"] = rate_c / rate_l.where(rate_l > 0)
        comm = ledger[ledger["payer"].astype(str) == c.commissioner]
        comm_seg = comm["segment"].astype(object)
        direct = comm[comm_seg.isin(most)].groupby("replication")["amount"].sum().reindex(reps, fill_value=0)
        fee = comm[comm_seg.isna()].groupby("replication")["amount"].sum().reindex(reps, fill_value=0)
        fee_share = out["referrals_complex"] / out["referrals"].where(out["referrals"] > 0)
        out["paid_complex"] = (direct + fee * fee_share.fillna(0.0)) / 100
    else:
        for col in ("referrals_complex", "outcomes_complex", "referrals_least", "outcomes_least"):
            out[col] = 0
        out["equity_gap"] = np.nan
        out["paid_complex"] = 0.0
    return out


def ratio_of_ratios_ci(a, b, c, d) -> dict:
    """(Σa/Σb) / (Σc/Σd) over replications, with a delta-method 95% interval."""
    a, b, c, d = (np.asarray(x, dtype=float) for x in (a, b, c, d))
    n = len(a)
    if n == 0 or b.sum() == 0 or d.sum() == 0 or c.sum() == 0:
        return {"mean": None, "lo": None, "hi": None}
    r1, r2 = a.sum() / b.sum(), c.sum() / d.sum()
    r = r1 / r2
    if n < 2:
        return {"mean": float(r), "lo": None, "hi": None}
    z = (a - r1 * b) / b.mean() / r2 - r1 * (c - r2 * d) / d.mean() / r2**2
    se = math.sqrt((z**2).sum() / (n * (n - 1)))
    return {"mean": float(r), "lo": float(r - Z95 * se), "hi": float(r + Z95 * se)}


def _names(per_rep: pd.DataFrame, prefix: str) -> list[str]:
    p = f"{prefix}["
    return [col[len(p):-1] for col in per_rep.columns if col.startswith(p) and col.endswith("]")]


def summary(per_rep: pd.DataFrame, model=None) -> dict:
    """Parking, dropped clients, equity gap and cost per complex outcome with 95% intervals (JSON-ready).

    Rates pooled over replications (ratio estimators with delta-method intervals); counts as means.
    With ``model``, segments carry their complexity rank and the most / least complex are named.
    """
    ranks = dict(zip(model.pathway.segments, complexity(model))) if model is not None else {}
    segments = []
    for g in _names(per_rep, "service_months") + ["all"]:
        key = "" if g == "all" else f"[{g}]"
        row = {
            "segment": g,
            "parking_rate": ratio_ci(per_rep[f"minimal_months{key}"], per_rep[f"service_months{key}"]),
            "dropped": mean_ci(per_rep[f"dropped{key}"]),
            "dropped_rate": ratio_ci(per_rep[f"dropped{key}"], per_rep[f"referrals{key}"]),
        }
        if g in ranks:
            row["complexity"] = float(ranks[g])
        segments.append(row)
    organisations = [
        {"organisation": o, "parking_rate": ratio_ci(per_rep[f"org_minimal_months[{o}]"], per_rep[f"org_service_months[{o}]"])}
        for o in _names(per_rep, "org_service_months")
    ]
    out = {
        "parking_rate": ratio_ci(per_rep["minimal_months"], per_rep["service_months"]),
        "segments": segments,
        "organisations": organisations,
        "outcome_rate_most_complex": ratio_ci(per_rep["outcomes_complex"], per_rep["referrals_complex"]),
        "outcome_rate_least_complex": ratio_ci(per_rep["outcomes_least"], per_rep["referrals_least"]),
        "equity_gap": ratio_of_ratios_ci(per_rep["outcomes_complex"], per_rep["referrals_complex"],
                                         per_rep["outcomes_least"], per_rep["referrals_least"]),
        "cost_per_complex_outcome": ratio_ci(per_rep["paid_complex"], per_rep["outcomes_complex"]),
    }
    if model is not None:
        most, least = complexity_groups(model)
        out["most_complex"], out["least_complex"] = most, least
        out["dropped_full_service_share"] = model.scenario.reporting.dropped_full_service_share
    return out
