"""Parking, dropped clients and equity: per-replication figures from the run tables, and their summary.

Pure functions of the tidy tables (``clients``, ``monthly``, ``ledger``); docs/behaviour.md defines
each figure. Column names (all per replication):

* ``service_months[<seg>]``, ``minimal_months[<seg>]``: client-months in a service state, and those at
  minimal service, by segment (no segment suffix: all segments);
  ``parking_rate[<seg>]`` = minimal / service months (NaN when there were none).
* ``org_service_months[<org>]``, ``org_minimal_months[<org>]``, ``org_parking_rate[<org>]``: the same by
  organisation, from the monthly table.
* ``referrals[<seg>]``; clients who left without reaching the primary outcome, either
  ``dropped_failure[<seg>]``: taken off the caseload when their provider failed, or
  ``dropped_service[<seg>]``: left otherwise, having had full service in less than
  ``reporting.dropped_full_service_share`` of their in-service months;
  ``dropped[<seg>]`` = dropped_service + dropped_failure; ``dropped_rate[<seg>]`` = dropped / referrals.
* ``referrals_complex``, ``outcomes_complex``, ``referrals_least``, ``outcomes_least``: the most and the
  least complex segments (ties pooled); ``equity_ratio`` = outcome rate of the most complex / of the
  least complex (NaN when undefined): 1 is parity, higher is better.
* ``paid_complex`` (pounds): commissioner payments for the most complex segments' clients, plus the
  service fee shared out by their share of referrals; with ``outcomes_complex`` it gives the cost to the
  commissioner per complex-client outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..engine.behaviour import complexity
from .columns import Batch, Groups
from ..scenario.schema import DROPPED_STATE
from .estimators import mean_ci, ratio_ci, ratio_of_ratios_ci
from .metrics import columns_of, frame

if TYPE_CHECKING:
    import pandas as pd


def complexity_groups(model) -> tuple[list[str], list[str]]:
    """(most complex segments, least complex segments); both empty when all segments rank equal."""
    segs = list(model.pathway.segments)
    rank = complexity(model)
    if len(segs) < 2 or rank.max() == rank.min():
        return [], []
    return [g for g, r in zip(segs, rank) if r == rank.max()], [g for g, r in zip(segs, rank) if r == rank.min()]


def per_replication_columns(model, clients, monthly, ledger) -> pd.DataFrame:
    """Parking, dropped-client and equity figures, one row per replication (those present in ``monthly``).

    Tables are DataFrames or the engine's columns; ``figures`` computes the same from a ``Batch``.
    """
    batch = Batch(model, {"clients": clients, "monthly": monthly, "ledger": ledger})
    return frame(batch.labels, figures(batch))


def figures(batch: Batch) -> dict[str, np.ndarray]:
    """Parking, dropped-client and equity figures, one value per replication of the batch, by column name."""
    model = batch.model
    pw, c = model.pathway, model.contract
    cl, mon, led = (batch.table(t) for t in ("clients", "monthly", "ledger"))
    segs = list(pw.segments)
    out: dict[str, np.ndarray] = {}
    pos, keep = batch.rows("clients")
    full = cl["months_full"].astype(np.int64)
    minimal = cl["months_minimal"].astype(np.int64)
    service = full + minimal
    primary = pw.states[c.primary_outcome] if c.primary_outcome >= 0 else None
    outcome = cl[f"first_{primary}"] >= 0 if primary else np.zeros(len(cl), dtype=bool)
    left = cl["end_month"] >= 0
    threshold = model.scenario.reporting.dropped_full_service_share
    with np.errstate(invalid="ignore", divide="ignore"):
        full_share = full / np.where(service > 0, service, np.nan)
    failure = cl[f"first_{DROPPED_STATE}"] >= 0  # taken off the caseload when the provider failed
    gone = left & ~outcome
    by_failure = gone & failure
    by_service = gone & ~failure & (service > 0) & (full_share < threshold)
    seg = cl["segment"]

    for gi, g in enumerate(segs + [None]):
        sel = seg == gi if g else None
        key = f"[{g}]" if g else ""
        out[f"service_months{key}"] = batch.total(pos, keep, service, sel)
        out[f"minimal_months{key}"] = batch.total(pos, keep, minimal, sel)
        out[f"parking_rate{key}"] = _rate(out[f"minimal_months{key}"], out[f"service_months{key}"])
        out[f"referrals{key}"] = batch.count(pos, keep, sel)
        out[f"dropped_service{key}"] = batch.count(pos, keep, by_service if sel is None else by_service & sel)
        out[f"dropped_failure{key}"] = batch.count(pos, keep, by_failure if sel is None else by_failure & sel)
        out[f"dropped{key}"] = out[f"dropped_service{key}"] + out[f"dropped_failure{key}"]
        out[f"dropped_rate{key}"] = _rate(out[f"dropped{key}"], out[f"referrals{key}"])

    orgs = mon["organisation"]
    _, first = np.unique(orgs, return_index=True)
    for code in orgs[np.sort(first)]:  # organisations in order of appearance
        org = mon.vocab["organisation"][code]
        m = Groups(batch, "monthly", "organisation", code)
        n_full, n_min = m.total("n_full"), m.total("n_minimal")
        out[f"org_service_months[{org}]"] = n_full + n_min
        out[f"org_minimal_months[{org}]"] = n_min
        out[f"org_parking_rate[{org}]"] = _rate(n_min, n_full + n_min)

    most, least = complexity_groups(model)
    if most:
        in_most = np.isin(seg, [segs.index(g) for g in most])
        in_least = np.isin(seg, [segs.index(g) for g in least])
        out["referrals_complex"] = batch.count(pos, keep, in_most)
        out["outcomes_complex"] = batch.count(pos, keep, in_most & outcome)
        out["referrals_least"] = batch.count(pos, keep, in_least)
        out["outcomes_least"] = batch.count(pos, keep, in_least & outcome)
        rate_c = _rate(out["outcomes_complex"], out["referrals_complex"])
        rate_l = _rate(out["outcomes_least"], out["referrals_least"])
        out["equity_ratio"] = rate_c / np.where(rate_l > 0, rate_l, np.nan)
        lpos, lkeep = batch.rows("ledger")
        comm = led["payer"] == led.code("payer", c.commissioner)
        lseg = led["segment"]
        direct = batch.total(lpos, lkeep, led["amount_pence"], comm & np.isin(lseg, [segs.index(g) for g in most]))
        fee = batch.total(lpos, lkeep, led["amount_pence"], comm & (lseg < 0))
        fee_share = _rate(out["referrals_complex"], out["referrals"])
        out["paid_complex"] = (direct + fee * np.where(np.isnan(fee_share), 0.0, fee_share)) / 100
    else:
        for col in ("referrals_complex", "outcomes_complex", "referrals_least", "outcomes_least"):
            out[col] = np.zeros(batch.n, dtype=np.int64)
        out["equity_ratio"] = np.full(batch.n, np.nan)
        out["paid_complex"] = np.zeros(batch.n)
    out.update(class_figures(batch))
    return out


def class_columns(model, clients, monthly) -> pd.DataFrame:
    """Parking and outcomes by latent class, one row per replication (``class_figures`` of these tables)."""
    batch = Batch(model, {"clients": clients, "monthly": monthly})
    return frame(batch.labels, class_figures(batch))


def class_figures(batch: Batch) -> dict[str, np.ndarray]:
    """Scenarios with latent classes: for each ``<segment>/<class>``, ``class_service_months``,
    ``class_minimal_months``, ``class_parking_rate`` (minimal ÷ service months), ``class_referrals`` and
    ``class_outcomes`` (clients who entered the primary outcome), per replication; nothing without classes."""
    model = batch.model
    pw, c = model.pathway, model.contract
    cl = batch.table("clients")
    if "latent_class" not in cl:  # the clients table has the column only where some segment has classes
        return {}
    pos, keep = batch.rows("clients")
    full = cl["months_full"].astype(np.int64)
    minimal = cl["months_minimal"].astype(np.int64)
    primary = pw.states[c.primary_outcome] if c.primary_outcome >= 0 else None
    outcome = cl[f"first_{primary}"] >= 0 if primary else np.zeros(len(cl), dtype=bool)
    seg, cls = cl["segment"], cl["latent_class"]
    out: dict[str, np.ndarray] = {}
    for gi, g in enumerate(pw.segments):
        if len(pw.class_names[gi]) < 2:  # one class is the segment itself
            continue
        for k, name in enumerate(pw.class_names[gi]):
            sel = (seg == gi) & (cls == k)
            key = f"[{g}/{name}]"
            out[f"class_service_months{key}"] = batch.total(pos, keep, full + minimal, sel)
            out[f"class_minimal_months{key}"] = batch.total(pos, keep, minimal, sel)
            out[f"class_parking_rate{key}"] = _rate(out[f"class_minimal_months{key}"], out[f"class_service_months{key}"])
            out[f"class_referrals{key}"] = batch.count(pos, keep, sel)
            out[f"class_outcomes{key}"] = batch.count(pos, keep, sel & outcome)
    return out


def _rate(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den per replication, NaN where den is 0."""
    return num / np.where(den > 0, den, np.nan)


def _names(per_rep: dict, prefix: str) -> list[str]:
    p = f"{prefix}["
    return [col[len(p):-1] for col in per_rep if col.startswith(p) and col.endswith("]")]


def summary(per_rep, model=None) -> dict:
    """Parking, dropped clients, equity ratio and cost per complex outcome with 95% intervals (JSON-ready).

    Rates pooled over replications (ratio estimators with delta-method intervals); counts as means.
    With ``model``, segments carry their complexity rank and the most / least complex are named.
    """
    per_rep, _ = columns_of(per_rep)
    ranks = dict(zip(model.pathway.segments, complexity(model))) if model is not None else {}
    segments = []
    for g in _names(per_rep, "service_months") + ["all"]:
        key = "" if g == "all" else f"[{g}]"
        row = {
            "segment": g,
            "parking_rate": ratio_ci(per_rep[f"minimal_months{key}"], per_rep[f"service_months{key}"]),
            "dropped": mean_ci(per_rep[f"dropped{key}"]),
            "dropped_service": mean_ci(per_rep[f"dropped_service{key}"]),
            "dropped_failure": mean_ci(per_rep[f"dropped_failure{key}"]),
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
        "equity_ratio": ratio_of_ratios_ci(per_rep["outcomes_complex"], per_rep["referrals_complex"],
                                         per_rep["outcomes_least"], per_rep["referrals_least"]),
        "cost_per_complex_outcome": ratio_ci(per_rep["paid_complex"], per_rep["outcomes_complex"]),
    }
    classes = _names(per_rep, "class_service_months")
    if classes:  # latent classes: parking and outcomes of each class inside its segment
        out["classes"] = [{"segment": k.split("/", 1)[0], "latent_class": k.split("/", 1)[1],
                           "referrals": mean_ci(per_rep[f"class_referrals[{k}]"]),
                           "parking_rate": ratio_ci(per_rep[f"class_minimal_months[{k}]"], per_rep[f"class_service_months[{k}]"]),
                           "outcome_rate": ratio_ci(per_rep[f"class_outcomes[{k}]"], per_rep[f"class_referrals[{k}]"])}
                          for k in classes]
    if model is not None:
        most, least = complexity_groups(model)
        out["most_complex"], out["least_complex"] = most, least
        out["dropped_full_service_share"] = model.scenario.reporting.dropped_full_service_share
    return out
