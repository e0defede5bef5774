"""Metrics: per-replication figures from the tidy tables, then summaries with 95% intervals.

Replications are independent, so every interval is across replications: a mean with its standard
error, a ratio estimator (e.g. outcome rate = outcomes / referrals) with a delta-method standard
error, a Wilson interval for a share of replications, or empirical quantiles.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from ..engine.ledger import KINDS
from .columns import Batch, Groups, and_

Z95 = 1.959963984540054
PAYMENT_KINDS = ("service_fee", "attachment", "milestone", "outcome", "sustainment")


def mean_ci(x) -> dict:
    x = np.asarray(x, dtype=float)
    n = len(x)
    m = float(x.mean()) if n else float("nan")
    if n < 2:
        return {"mean": m, "lo": None, "hi": None}
    se = float(x.std(ddof=1) / math.sqrt(n))
    return {"mean": m, "lo": m - Z95 * se, "hi": m + Z95 * se}


def ratio_ci(num, den) -> dict:
    """Pooled ratio sum(num)/sum(den) with a delta-method interval over replications."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    n = len(num)
    if n == 0 or den.sum() == 0:
        return {"mean": None, "lo": None, "hi": None}
    r = num.sum() / den.sum()
    if n < 2:
        return {"mean": float(r), "lo": None, "hi": None}
    d = num - r * den
    se = math.sqrt((d**2).sum() / (n * (n - 1))) / den.mean()
    return {"mean": float(r), "lo": float(r - Z95 * se), "hi": float(r + Z95 * se)}


def wilson(k: int, n: int) -> dict:
    """Share k/n with a Wilson 95% interval (sound near 0 and 1, where failure shares often sit)."""
    if n == 0:
        return {"mean": None, "lo": None, "hi": None}
    p = k / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2)) / denom
    return {"mean": p, "lo": max(0.0, centre - half), "hi": min(1.0, centre + half)}


def quantiles(x, qs=(0.05, 0.5)) -> dict:
    x = np.asarray(x, dtype=float)
    return {f"p{int(q * 100)}": float(np.quantile(x, q)) for q in qs}


def per_replication(model, clients, ledger, monthly, settlements, failures) -> pd.DataFrame:
    """One row per replication (those present in ``monthly``) with every figure the summary needs (pounds).

    Tables are DataFrames or the engine's columns; ``figures`` computes the same from a ``Batch``.
    """
    batch = Batch(model, {"clients": clients, "ledger": ledger, "monthly": monthly, "settlements": settlements,
                          "failures": failures})
    return frame(batch.labels, figures(batch))


def frame(labels: np.ndarray, cols: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-replication figures as a DataFrame indexed by replication."""
    return pd.DataFrame(cols, index=pd.Index(labels, name="replication"))


def figures(batch: Batch) -> dict[str, np.ndarray]:
    """Every figure the summary needs (pounds), one value per replication of the batch, by column name.

    Each figure is one grouped sum over the whole batch (``analysis.columns``), not a pass per replication.
    """
    model = batch.model
    pw, c = model.pathway, model.contract
    cl, led, mon, st, fl = (batch.table(t) for t in ("clients", "ledger", "monthly", "settlements", "failures"))
    out: dict[str, np.ndarray] = {}
    segs = list(pw.segments)
    primary = pw.states[c.primary_outcome] if c.primary_outcome >= 0 else None
    milestone = pw.states[c.milestone] if c.milestone >= 0 else None
    pos, keep = batch.rows("clients")
    seg = cl["segment"]
    for gi, g in enumerate(segs):
        sel = seg == gi
        out[f"referrals[{g}]"] = batch.count(pos, keep, sel)
        if primary:
            out[f"outcomes[{g}]"] = batch.count(pos, keep, sel & (cl[f"first_{primary}"] >= 0))
        if milestone:
            out[f"milestones[{g}]"] = batch.count(pos, keep, sel & (cl[f"first_{milestone}"] >= 0))
    out["referrals"] = _row_sum(out, [f"referrals[{g}]" for g in segs], batch.n)
    if primary:
        out["outcomes"] = _row_sum(out, [f"outcomes[{g}]" for g in segs], batch.n)
    if milestone:
        out["milestones"] = _row_sum(out, [f"milestones[{g}]" for g in segs], batch.n)

    pos, keep = batch.rows("ledger")
    amount = led["amount"]
    comm = led["payer"] == led.code("payer", c.commissioner)
    kind = led["kind"]
    for k in PAYMENT_KINDS:
        out[f"paid[{k}]"] = batch.total(pos, keep, amount, comm & (kind == KINDS.index(k))) / 100
    out["paid_total"] = batch.total(pos, keep, amount, comm) / 100
    if c.volume_band is not None:  # fee clawed back at year-end reconciliation: the commissioner's spend is net of it
        back = (led["payee"] == led.code("payee", c.commissioner)) & (kind == KINDS.index("clawback"))
        out["clawed_back"] = batch.total(pos, keep, amount, back) / 100
        out["paid_total"] = out["paid_total"] - out["clawed_back"]
    if len(st):
        pos, keep = batch.rows("settlements")
        out["capped_total"] = batch.total(pos, keep, st["amount_capped"]) / 100
    else:
        out["capped_total"] = np.zeros(batch.n)
    cap = model.contract.cap
    reached = out["capped_total"] > 0
    if cap is not None:
        reached = reached | (np.round(out["paid_total"] * 100) >= cap)
    out["cap_reached"] = reached.astype(np.int64)

    income_cols = [f"income_{k}" for k in PAYMENT_KINDS + ("fee_for_service",)]
    cost_cols = ["cost_delivery", "cost_overhead", "cost_interest", "cost_clawback", "paid_to_subcontractors"]
    fpos, fkeep = batch.rows("failures") if len(fl) else (None, None)
    for org in model.organisations:
        name = org.name
        m = Groups(batch, "monthly", "organisation", mon.code("organisation", name))
        out[f"income[{name}]"] = sum(m.total(col, np.nan) for col in income_cols) / 100
        out[f"costs[{name}]"] = sum(m.total(col, np.nan) for col in cost_cols) / 100
        out[f"interest[{name}]"] = m.total("cost_interest", np.nan) / 100
        out[f"lowest_cash[{name}]"] = np.minimum(m.minimum("cash", np.nan), org.opening_cash) / 100
        out[f"trough_month[{name}]"] = mon["month"][m.first_argmin("cash")]
        out[f"months_below_zero[{name}]"] = m.total(m.values("cash") < 0, np.nan)
        out[f"final_cash[{name}]"] = m.last("cash", np.nan) / 100
        out[f"margin[{name}]"] = out[f"final_cash[{name}]"] - org.opening_cash / 100
        month = np.full(batch.n, np.nan)
        affected = np.full(batch.n, np.nan)
        if fpos is not None:
            sel = and_(fkeep, fl["organisation"] == fl.code("organisation", name))
            month[fpos[sel]] = fl["failure_month"][sel]
            affected[fpos[sel]] = fl["clients_affected"][sel]
        out[f"clients_affected[{name}]"] = affected
        out[f"failed[{name}]"] = (~np.isnan(month)).astype(np.int64)
        out[f"failure_month[{name}]"] = month
    fin = model.finance
    if fin is not None:  # investor: drawn, repaid, money multiple, loss
        m = Groups(batch, "monthly", "organisation", mon.code("organisation", model.organisations[fin.organisation].name))
        drawn = out["investor_drawn"] = m.total("finance_in", np.nan) / 100
        repaid = out["investor_repaid"] = m.total("finance_out", np.nan) / 100
        out["investor_multiple"] = repaid / np.where(drawn > 0, drawn, np.nan)
        loss = drawn - repaid
        out["investor_loss"] = np.where(loss < 0, 0.0, loss)
    names = [o.name for o in model.organisations]
    out["failed_any"] = np.max([out[f"failed[{n}]"] for n in names], axis=0)
    if len(names) > 1:
        out["paid_to_subcontractors"] = sum(out[f"income[{n}]"] for n in names[1:])
        out["prime_kept"] = out["paid_total"] - out["paid_to_subcontractors"]
    return out


def _row_sum(out: dict, cols: list[str], n: int) -> np.ndarray:
    total = np.zeros(n, dtype=np.int64)
    for col in cols:
        total += out[col]
    return total


def columns_of(per_rep) -> tuple[dict[str, np.ndarray], int]:
    """Per-replication figures as arrays by column name, and the number of replications
    (from a DataFrame, or the dict ``figures`` returns)."""
    if isinstance(per_rep, Mapping):
        return per_rep, len(next(iter(per_rep.values()))) if per_rep else 0
    return {col: per_rep[col].to_numpy() for col in per_rep.columns}, len(per_rep)


def nan_median(x: np.ndarray) -> float:
    """Median of the values that are not NaN (as pandas ``Series.median``)."""
    return float(np.median(x[~np.isnan(x)]))


def nan_mean(x: np.ndarray) -> float:
    """Mean of the values that are not NaN (as pandas ``Series.mean``)."""
    missing = np.isnan(x)
    return float(np.where(missing, 0.0, x).sum() / (len(x) - missing.sum()))


def summarise(model, per_rep, seed: int) -> dict:
    """Summary figures with 95% intervals, as a JSON-ready dict (from a per-replication DataFrame or ``figures``)."""
    pw = model.pathway
    per_rep, R = columns_of(per_rep)
    has_outcome = "outcomes" in per_rep
    has_milestone = "milestones" in per_rep
    segments = []
    for g in list(pw.segments) + ["all"]:
        key = "" if g == "all" else f"[{g}]"
        row = {"segment": g, "referrals": mean_ci(per_rep[f"referrals{key}"])}
        if has_outcome:
            row["outcomes"] = mean_ci(per_rep[f"outcomes{key}"])
            row["outcome_rate"] = ratio_ci(per_rep[f"outcomes{key}"], per_rep[f"referrals{key}"])
        if has_milestone:
            row["milestone_rate"] = ratio_ci(per_rep[f"milestones{key}"], per_rep[f"referrals{key}"])
        segments.append(row)
    commissioner = {
        "paid_by_kind": {k: mean_ci(per_rep[f"paid[{k}]"]) for k in PAYMENT_KINDS},
        "paid_total": mean_ci(per_rep["paid_total"]),
        "capped_total": mean_ci(per_rep["capped_total"]),
        "cap_reached": wilson(int(per_rep["cap_reached"].sum()), R),
        "cost_per_outcome": ratio_ci(per_rep["paid_total"], per_rep["outcomes"]) if has_outcome else None,
    }
    if "clawed_back" in per_rep:
        commissioner["clawed_back"] = mean_ci(per_rep["clawed_back"])
    if "prime_kept" in per_rep:
        commissioner["prime_kept"] = mean_ci(per_rep["prime_kept"])
        commissioner["paid_to_subcontractors"] = mean_ci(per_rep["paid_to_subcontractors"])
    orgs = []
    for o in model.organisations:
        n = o.name
        fails = int(per_rep[f"failed[{n}]"].sum())
        orgs.append({
            "organisation": n,
            "role": o.role,
            "income": mean_ci(per_rep[f"income[{n}]"]),
            "costs": mean_ci(per_rep[f"costs[{n}]"]),
            "margin": {**mean_ci(per_rep[f"margin[{n}]"]), **quantiles(per_rep[f"margin[{n}]"])},
            "lowest_cash": {**mean_ci(per_rep[f"lowest_cash[{n}]"]), **quantiles(per_rep[f"lowest_cash[{n}]"])},
            "trough_month": {"median": float(np.median(per_rep[f"trough_month[{n}]"]))},
            "months_below_zero": mean_ci(per_rep[f"months_below_zero[{n}]"]),
            "ran_out_of_cash": wilson(fails, R),
            "failure_month": {"median": nan_median(per_rep[f"failure_month[{n}]"]) if fails else None},
            "clients_affected": {"mean": nan_mean(per_rep[f"clients_affected[{n}]"]) if fails else None},
        })
    extra = {}
    if "investor_drawn" in per_rep:
        fin = model.finance
        lost = int((per_rep["investor_loss"] > 0.005).sum())
        extra["investor"] = {
            "investor": fin.investor,
            "organisation": model.organisations[fin.organisation].name,
            "drawn": mean_ci(per_rep["investor_drawn"]),
            "repaid": mean_ci(per_rep["investor_repaid"]),
            "multiple": ratio_ci(per_rep["investor_repaid"], per_rep["investor_drawn"]),
            "loss": mean_ci(per_rep["investor_loss"]),
            "lost_money": wilson(lost, R),
        }
    return {
        **extra,
        "scenario": model.scenario.name,
        "seed": seed,
        "replications": R,
        "months": model.months,
        "horizon": model.horizon,
        "currency": model.scenario.currency,
        "primary_outcome": pw.states[model.contract.primary_outcome] if model.contract.primary_outcome >= 0 else None,
        "segments": segments,
        "commissioner": commissioner,
        "organisations": orgs,
    }
