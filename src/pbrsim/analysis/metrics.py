"""Metrics: per-replication figures from the tidy tables, then summaries with 95% intervals.

Replications are independent, so every interval is across replications: a mean with its standard
error, a ratio estimator (e.g. outcome rate = outcomes / referrals) with a delta-method standard
error, a Wilson interval for a share of replications, or empirical quantiles.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import investors, returns

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


def per_replication(model, clients: pd.DataFrame, ledger: pd.DataFrame, monthly: pd.DataFrame,
                    settlements: pd.DataFrame, failures: pd.DataFrame) -> pd.DataFrame:
    """One row per replication (those present in ``monthly``) with every figure the summary needs (pounds)."""
    pw, c = model.pathway, model.contract
    reps = pd.Index(np.sort(monthly["replication"].unique()), name="replication")
    out = pd.DataFrame(index=reps)
    segs = list(pw.segments)
    primary = pw.states[c.primary_outcome] if c.primary_outcome >= 0 else None
    milestone = pw.states[c.milestone] if c.milestone >= 0 else None
    cl = clients
    for g in segs:
        sel = cl[cl.segment == g]
        out[f"referrals[{g}]"] = sel.groupby("replication").size().reindex(reps, fill_value=0)
        if primary:
            out[f"outcomes[{g}]"] = sel[f"first_{primary}"].notna().groupby(sel.replication).sum().reindex(reps, fill_value=0)
        if milestone:
            out[f"milestones[{g}]"] = sel[f"first_{milestone}"].notna().groupby(sel.replication).sum().reindex(reps, fill_value=0)
    out["referrals"] = out[[f"referrals[{g}]" for g in segs]].sum(axis=1)
    if primary:
        out["outcomes"] = out[[f"outcomes[{g}]" for g in segs]].sum(axis=1)
    if milestone:
        out["milestones"] = out[[f"milestones[{g}]" for g in segs]].sum(axis=1)

    comm = ledger[ledger.payer == c.commissioner]
    for kind in PAYMENT_KINDS:
        out[f"paid[{kind}]"] = comm[comm.kind == kind].groupby("replication").amount.sum().reindex(reps, fill_value=0) / 100
    out["paid_total"] = comm.groupby("replication").amount.sum().reindex(reps, fill_value=0) / 100
    if c.volume_band is not None:  # fee clawed back at year-end reconciliation: the commissioner's spend is net of it
        back = ledger[(ledger.payee == c.commissioner) & (ledger.kind == "clawback")]
        out["clawed_back"] = back.groupby("replication").amount.sum().reindex(reps, fill_value=0) / 100
        out["paid_total"] -= out["clawed_back"]
    out["capped_total"] = settlements.groupby("replication").amount_capped.sum().reindex(reps, fill_value=0) / 100 if len(settlements) else 0.0
    cap = model.contract.cap
    out["cap_reached"] = ((out["capped_total"] > 0) | ((out["paid_total"] * 100).round() >= cap if cap is not None else False)).astype(int)

    income_cols = [f"income_{k}" for k in PAYMENT_KINDS + ("fee_for_service",)]
    cost_cols = ["cost_delivery", "cost_overhead", "cost_interest", "cost_clawback", "paid_to_subcontractors"]
    fail_rows = failures if len(failures) else pd.DataFrame(columns=["replication", "organisation", "failure_month"])
    for org in model.organisations:
        name = org.name
        m = monthly[monthly.organisation == name]
        g = m.groupby("replication")
        out[f"income[{name}]"] = g[income_cols].sum().sum(axis=1).reindex(reps) / 100
        out[f"costs[{name}]"] = g[cost_cols].sum().sum(axis=1).reindex(reps) / 100
        out[f"interest[{name}]"] = g["cost_interest"].sum().reindex(reps) / 100
        out[f"lowest_cash[{name}]"] = np.minimum(g["cash"].min().reindex(reps), org.opening_cash) / 100
        out[f"trough_month[{name}]"] = m.loc[g["cash"].idxmin().reindex(reps), "month"].to_numpy()
        out[f"months_below_zero[{name}]"] = (m.cash < 0).groupby(m.replication).sum().reindex(reps)
        out[f"final_cash[{name}]"] = g["cash"].last().reindex(reps) / 100
        out[f"margin[{name}]"] = out[f"final_cash[{name}]"] - org.opening_cash / 100
        rows = fail_rows[fail_rows.organisation == name].set_index("replication")
        f = rows["failure_month"].reindex(reps)
        out[f"clients_affected[{name}]"] = rows["clients_affected"].reindex(reps).astype(float) if len(rows) else np.nan
        out[f"failed[{name}]"] = f.notna().astype(int)
        out[f"failure_month[{name}]"] = f.astype(float)
    fin = model.finance
    if fin is not None:  # investors: drawn, repaid, multiple, loss, IRR, payback (analysis/investors.py)
        parties = model.vocab.parties
        codes = {col: pd.Categorical(ledger[col].astype(object), categories=list(parties)).codes.astype(np.int64)
                 for col in ("payer", "payee")}
        pos = np.searchsorted(reps.to_numpy(), ledger["replication"].to_numpy())
        keep = (pos < len(reps)) & (reps.to_numpy()[np.minimum(pos, len(reps) - 1)] == ledger["replication"].to_numpy())
        payer, payee, pos = codes["payer"][keep], codes["payee"][keep], pos[keep]
        month, amount = ledger["month"].to_numpy()[keep].astype(np.int64), ledger["amount"].to_numpy()[keep]
        F = investors.flows(fin, parties, payer, payee, month, amount, pos, len(reps), model.horizon)
        for col, values in investors.figures(fin, F).items():
            out[col] = values
        out["investor_guaranteed"] = investors.received_from(fin, parties, payer, payee, amount, pos, len(reps), fin.guarantor) / 100
        out["intermediary_fees"] = investors.received_from(fin, parties, payer, payee, amount, pos, len(reps), fin.intermediary, False) / 100
        if fin.top_up_funder is not None:  # what the top-up funder paid (to the commissioner)
            out["topped_up"] = _paid_by(fin.top_up_funder, parties, payer, amount, pos, len(reps)) / 100
    names = [o.name for o in model.organisations]
    out["failed_any"] = out[[f"failed[{n}]" for n in names]].max(axis=1)
    if len(names) > 1:
        out["paid_to_subcontractors"] = sum(out[f"income[{n}]"] for n in names[1:])
        out["prime_kept"] = out["paid_total"] - out["paid_to_subcontractors"]
    return out


def _paid_by(party: str, parties, payer: np.ndarray, amount: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
    sel = payer == parties.index(party)
    return np.bincount(pos[sel], weights=amount[sel].astype(np.float64), minlength=n)


def investor_summary(model, per_rep, R: int) -> dict:
    """The investors' figures across replications: means with intervals, shares of runs (Wilson) and the
    IRR distribution (quantiles over runs where it has a value; docs/social-investment.md)."""
    fin = model.finance
    out = {"investor": fin.investor, "organisation": model.organisations[fin.organisation].name,
           "commitment": fin.commitment / 100, "hurdle_rate": fin.hurdle}
    groups = [("", fin.investor)] + ([(f"[{n}]", n) for n in fin.investors] if len(fin.investors) > 1 else [])
    tranches = []
    for key, name in groups:
        drawn = np.asarray(per_rep[f"investor_drawn{key}"], dtype=float)
        invested = drawn > 0
        irr = np.asarray(per_rep[f"investor_irr{key}"], dtype=float)
        status = np.asarray(per_rep[f"investor_irr_status{key}"])
        has = invested & ~np.isnan(irr)
        payback = np.asarray(per_rep[f"investor_payback_month{key}"], dtype=float)
        row = {
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
            "payback_month": {"median": float(np.median(payback[invested & ~np.isnan(payback)])) if (invested & ~np.isnan(payback)).any() else None,
                              "never": wilson(int((invested & np.isnan(payback)).sum()), int(invested.sum()))},
        }
        tranches.append(row)
    out.update({k: v for k, v in tranches[0].items() if k != "tranche"})
    if len(tranches) > 1:
        out["tranches"] = tranches[1:]
    for col, name in (("investor_guaranteed", "guaranteed"), ("intermediary_fees", "intermediary_fees"), ("topped_up", "topped_up")):
        if col in per_rep:
            out[name] = mean_ci(per_rep[col])
    return out


def summarise(model, per_rep: pd.DataFrame, seed: int) -> dict:
    """Summary figures with 95% intervals, as a JSON-ready dict."""
    pw = model.pathway
    R = len(per_rep)
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
            "failure_month": {"median": float(per_rep[f"failure_month[{n}]"].median()) if fails else None},
            "clients_affected": {"mean": float(per_rep[f"clients_affected[{n}]"].mean()) if fails else None},
        })
    extra = {}
    if "investor_drawn" in per_rep:
        extra["investor"] = investor_summary(model, per_rep, R)
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
