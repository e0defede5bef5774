"""Metrics: per-replication figures from the tidy tables, then summaries with 95% intervals.

Replications are independent, so every interval is across replications (``analysis.estimators``): a mean
with a Student-t interval, a pooled ratio (e.g. outcome rate = Σ outcomes / Σ referrals) with a delta-method
Student-t interval, a Wilson interval for a share of replications, or empirical quantiles. docs/metrics.md
defines every metric and its estimator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import numpy as np

from ..engine.ledger import KINDS
from . import investors, returns
from .columns import Batch, Groups, and_
from .estimators import Z95, few_replications_warning, mean_ci, quantiles, ratio_ci, wilson  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    import pandas as pd

PAYMENT_KINDS = ("service_fee", "attachment", "milestone", "outcome", "sustainment")


def per_replication(model, clients, ledger, monthly, settlements, failures) -> pd.DataFrame:
    """One row per replication (those present in ``monthly``) with every figure the summary needs (pounds).

    Tables are DataFrames or the engine's columns; ``figures`` computes the same from a ``Batch``.
    """
    batch = Batch(model, {"clients": clients, "ledger": ledger, "monthly": monthly, "settlements": settlements,
                          "failures": failures})
    return frame(batch.labels, figures(batch))


def frame(labels: np.ndarray, cols: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-replication figures as a DataFrame indexed by replication."""
    import pandas as pd

    return pd.DataFrame(cols, index=pd.Index(labels, name="replication"))


def arrow_frame(labels: np.ndarray, cols: dict[str, np.ndarray]):
    """``frame(labels, cols).reset_index()`` as Arrow for ``replications.parquet``, built without pandas."""
    from ..engine import arrow

    return arrow.table({"replication": arrow.plain(labels), **{k: arrow.plain(v) for k, v in cols.items()}})


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
            out[f"milestones_{milestone}[{g}]"] = batch.count(pos, keep, sel & (cl[f"first_{milestone}"] >= 0))
    out["referrals"] = _row_sum(out, [f"referrals[{g}]" for g in segs], batch.n)
    if primary:
        out["outcomes"] = _row_sum(out, [f"outcomes[{g}]" for g in segs], batch.n)
    if milestone:  # named by its state, so that designs with different milestones are never set side by side
        out[f"milestones_{milestone}"] = _row_sum(out, [f"milestones_{milestone}[{g}]" for g in segs], batch.n)

    pos, keep = batch.rows("ledger")
    amount = led["amount_pence"]
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
        out["capped_total"] = batch.total(pos, keep, st["amount_capped_pence"]) / 100
    else:
        out["capped_total"] = np.zeros(batch.n)
    cap = model.contract.cap
    reached = out["capped_total"] > 0
    if cap is not None:
        reached = reached | (np.round(out["paid_total"] * 100) >= cap)
    out["cap_reached"] = reached.astype(np.int64)

    income_cols = [f"income_{k}_pence" for k in PAYMENT_KINDS + ("fee_for_service",)]
    cost_cols = ["cost_delivery_pence", "cost_overhead_pence", "cost_interest_pence", "cost_clawback_pence", "paid_to_subcontractors_pence"]
    fpos, fkeep = batch.rows("failures") if len(fl) else (None, None)
    for org in model.organisations:
        name = org.name
        m = Groups(batch, "monthly", "organisation", mon.code("organisation", name))
        out[f"income[{name}]"] = sum(m.total(col, np.nan) for col in income_cols) / 100
        out[f"costs[{name}]"] = sum(m.total(col, np.nan) for col in cost_cols) / 100
        out[f"interest[{name}]"] = m.total("cost_interest_pence", np.nan) / 100
        out[f"lowest_cash[{name}]"] = np.minimum(m.minimum("cash_pence", np.nan), org.opening_cash) / 100
        out[f"trough_month[{name}]"] = mon["month"][m.first_argmin("cash_pence")]
        out[f"months_below_zero[{name}]"] = m.total(m.values("cash_pence") < 0, np.nan)
        out[f"final_cash[{name}]"] = m.last("cash_pence", np.nan) / 100
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
    if fin is not None:  # investors: drawn, repaid, multiple, loss, IRR, payback (analysis/investors.py)
        parties = model.vocab.parties
        pos, keep = batch.rows("ledger")
        cols = [led[c] for c in ("payer", "payee", "month", "amount_pence")]
        if keep is not None:
            pos, cols = pos[keep], [c[keep] for c in cols]
        payer, payee, month, amount = cols
        F = investors.flows(fin, parties, payer, payee, month.astype(np.int64), amount, pos, batch.n, model.horizon)
        out.update(investors.figures(fin, F))
        n = batch.n
        if fin.guarantor is not None:
            out["investor_guaranteed"] = investors.paid_by(parties, fin.guarantor, payer, amount, pos, n) / 100
        if fin.intermediary is not None:
            out["intermediary_fees"] = investors.paid_to(parties, fin.intermediary, payee, amount, pos, n) / 100
        if fin.top_up_funder is not None:  # what the top-up funder paid (to the commissioner)
            out["topped_up"] = investors.paid_by(parties, fin.top_up_funder, payer, amount, pos, n) / 100
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


def investor_summary(model, per_rep, R: int) -> dict:
    """The investors' figures across replications: means with intervals, shares of runs (Wilson) and the
    IRR distribution (quantiles over runs where it has a value; docs/social-investment.md)."""
    fin = model.finance
    out = {"investor": fin.investor, "organisation": model.organisations[fin.organisation].name,
           "commitment": fin.commitment / 100, "hurdle_rate": fin.hurdle}
    groups = [("", fin.investor)] + ([(f"[{n}]", n) for n in fin.investors] if len(fin.investors) > 1 else [])
    rows = []
    for key, name in groups:
        drawn = np.asarray(per_rep[f"investor_drawn{key}"], dtype=float)
        invested = drawn > 0
        irr = np.asarray(per_rep[f"investor_irr{key}"], dtype=float)
        status = np.asarray(per_rep[f"investor_irr_status{key}"])
        has = invested & ~np.isnan(irr)
        payback = np.asarray(per_rep[f"investor_payback_month{key}"], dtype=float)
        paid_back = invested & ~np.isnan(payback)
        rows.append({
            "tranche": name,
            "drawn": mean_ci(drawn),
            "repaid": mean_ci(per_rep[f"investor_repaid{key}"]),
            "multiple": ratio_ci(per_rep[f"investor_repaid{key}"], drawn),
            "loss": mean_ci(per_rep[f"investor_loss{key}"]),
            "lost_money": wilson(int(np.asarray(per_rep[f"investor_lost{key}"])[invested].sum()), int(invested.sum())),
            "irr": {**({"median": float(np.median(irr[has])), **quantiles(irr[has], (0.05, 0.25, 0.75, 0.95)),
                        "min": float(irr[has].min()), "max": float(irr[has].max())} if has.any() else {"median": None}),
                    "runs": int(has.sum())},
            "irr_below_hurdle": wilson(int((irr[has] < fin.hurdle).sum()), int(has.sum())),
            "irr_status": {returns.STATUS_NAMES[s]: int((status[invested] == s).sum()) for s in returns.STATUS_NAMES},
            "payback_month": {"median": float(np.median(payback[paid_back])) if paid_back.any() else None,
                              "never": wilson(int((invested & np.isnan(payback)).sum()), int(invested.sum()))},
        })
    out.update({k: v for k, v in rows[0].items() if k != "tranche"})
    if len(rows) > 1:
        out["tranches"] = rows[1:]
    for col, name in (("investor_guaranteed", "guaranteed"), ("intermediary_fees", "intermediary_fees"), ("topped_up", "topped_up")):
        if col in per_rep:
            out[name] = mean_ci(per_rep[col])
    return out


def summarise(model, per_rep, seed: int) -> dict:
    """Summary figures with 95% intervals, as a JSON-ready dict (from a per-replication DataFrame or ``figures``)."""
    pw = model.pathway
    per_rep, R = columns_of(per_rep)
    has_outcome = "outcomes" in per_rep
    milestone = pw.states[model.contract.milestone] if model.contract.milestone >= 0 else None
    has_milestone = milestone is not None and f"milestones_{milestone}" in per_rep
    segments = []
    for g in list(pw.segments) + ["all"]:
        key = "" if g == "all" else f"[{g}]"
        row = {"segment": g, "referrals": mean_ci(per_rep[f"referrals{key}"])}
        if has_outcome:
            row["outcomes"] = mean_ci(per_rep[f"outcomes{key}"])
            row["outcome_rate"] = ratio_ci(per_rep[f"outcomes{key}"], per_rep[f"referrals{key}"])
        if has_milestone:
            row["milestone_rate"] = ratio_ci(per_rep[f"milestones_{milestone}{key}"], per_rep[f"referrals{key}"])
        segments.append(row)
    commissioner = {
        "paid_by_kind": {k: mean_ci(per_rep[f"paid[{k}]"]) for k in PAYMENT_KINDS},
        "paid_total": mean_ci(per_rep["paid_total"]),
        "capped_total": mean_ci(per_rep["capped_total"]),
        "cap_reached": wilson(int(per_rep["cap_reached"].sum()), R),
        "cost_per_outcome": ratio_ci(per_rep["paid_total"], per_rep["outcomes"]) if has_outcome else None,
    }
    value = model.scenario.contract.value
    if value:  # the contract's terms, beside the share of actual spend paid upfront (docs/metrics.md)
        commissioner["service_fee_share_of_value"] = float(model.contract.fee_due.sum()) / 100 / value
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
        extra["investor"] = investor_summary(model, per_rep, R)
    warning = few_replications_warning(R)
    return {
        **extra,
        "scenario": model.scenario.name,
        "seed": seed,
        "replications": R,
        "months": model.months,
        "horizon": model.horizon,
        "currency": model.scenario.currency,
        "primary_outcome": pw.states[model.contract.primary_outcome] if model.contract.primary_outcome >= 0 else None,
        "milestone_state": milestone,
        "interval": "95%: Student's t with n-1 degrees of freedom (means, pooled ratios); Wilson (shares of runs)",
        "warnings": [warning] if warning else [],
        "segments": segments,
        "commissioner": commissioner,
        "organisations": orgs,
    }
