"""The per-replication figures as first written in pandas, kept as the reference the numpy implementation
(``metrics.figures``, ``parking.figures`` over ``analysis.columns``) must reproduce exactly: same columns,
same dtypes, same values.

A verbatim copy of ``metrics.per_replication``, ``parking.per_replication_columns``, ``metrics.summarise``
and ``parking.summary`` as they were before the numpy rewrite, and of how ``simulate.summarise_tables``
joined and summarised them. A deliberate change to a figure's definition changes this file and the
library in the same commit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pbrsim.analysis import returns
from pbrsim.analysis.estimators import few_replications_warning, ratio_of_ratios_ci
from pbrsim.analysis.metrics import PAYMENT_KINDS, mean_ci, quantiles, ratio_ci, wilson
from pbrsim.analysis.parking import complexity_groups
from pbrsim.engine.behaviour import complexity


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
            out[f"milestones_{milestone}[{g}]"] = sel[f"first_{milestone}"].notna().groupby(sel.replication).sum().reindex(reps, fill_value=0)
    out["referrals"] = out[[f"referrals[{g}]" for g in segs]].sum(axis=1)
    if primary:
        out["outcomes"] = out[[f"outcomes[{g}]" for g in segs]].sum(axis=1)
    if milestone:
        out[f"milestones_{milestone}"] = out[[f"milestones_{milestone}[{g}]" for g in segs]].sum(axis=1)

    comm = ledger[ledger.payer == c.commissioner]
    for kind in PAYMENT_KINDS:
        out[f"paid[{kind}]"] = comm[comm.kind == kind].groupby("replication").amount_pence.sum().reindex(reps, fill_value=0) / 100
    out["paid_total"] = comm.groupby("replication").amount_pence.sum().reindex(reps, fill_value=0) / 100
    if c.volume_band is not None:  # fee clawed back at year-end reconciliation: the commissioner's spend is net of it
        back = ledger[(ledger.payee == c.commissioner) & (ledger.kind == "clawback")]
        out["clawed_back"] = back.groupby("replication").amount_pence.sum().reindex(reps, fill_value=0) / 100
        out["paid_total"] -= out["clawed_back"]
    out["capped_total"] = settlements.groupby("replication").amount_capped_pence.sum().reindex(reps, fill_value=0) / 100 if len(settlements) else 0.0
    cap = model.contract.cap
    out["cap_reached"] = ((out["capped_total"] > 0) | ((out["paid_total"] * 100).round() >= cap if cap is not None else False)).astype(int)

    income_cols = [f"income_{k}_pence" for k in PAYMENT_KINDS + ("fee_for_service",)]
    cost_cols = ["cost_delivery_pence", "cost_overhead_pence", "cost_interest_pence", "cost_clawback_pence", "paid_to_subcontractors_pence"]
    fail_rows = failures if len(failures) else pd.DataFrame(columns=["replication", "organisation", "failure_month"])
    for org in model.organisations:
        name = org.name
        m = monthly[monthly.organisation == name]
        g = m.groupby("replication")
        out[f"income[{name}]"] = g[income_cols].sum().sum(axis=1).reindex(reps) / 100
        out[f"costs[{name}]"] = g[cost_cols].sum().sum(axis=1).reindex(reps) / 100
        out[f"interest[{name}]"] = g["cost_interest_pence"].sum().reindex(reps) / 100
        out[f"lowest_cash[{name}]"] = np.minimum(g["cash_pence"].min().reindex(reps), org.opening_cash) / 100
        out[f"trough_month[{name}]"] = m.loc[g["cash_pence"].idxmin().reindex(reps), "month"].to_numpy()
        out[f"months_below_zero[{name}]"] = (m.cash_pence < 0).groupby(m.replication).sum().reindex(reps)
        out[f"final_cash[{name}]"] = g["cash_pence"].last().reindex(reps) / 100
        out[f"margin[{name}]"] = out[f"final_cash[{name}]"] - org.opening_cash / 100
        rows = fail_rows[fail_rows.organisation == name].set_index("replication")
        f = rows["failure_month"].reindex(reps)
        out[f"clients_affected[{name}]"] = rows["clients_affected"].reindex(reps).astype(float) if len(rows) else np.nan
        out[f"failed[{name}]"] = f.notna().astype(int)
        out[f"failure_month[{name}]"] = f.astype(float)
    fin = model.finance
    if fin is not None:  # investors: money put in and received by tranche and month, from the ledger
        H = model.horizon
        tranches = [("", list(fin.investors))] + ([(f"[{n}]", [n]) for n in fin.investors] if len(fin.investors) > 1 else [])
        for key, names in tranches:
            got = ledger[ledger.payee.isin(names)].groupby(["replication", "month"]).amount_pence.sum()
            put = ledger[ledger.payer.isin(names)].groupby(["replication", "month"]).amount_pence.sum()
            full = pd.MultiIndex.from_product([reps, range(H)], names=["replication", "month"])
            net = (got.reindex(full, fill_value=0) - put.reindex(full, fill_value=0)).to_numpy().reshape(len(reps), H)
            drawn = put.groupby(level=0).sum().reindex(reps, fill_value=0) / 100
            repaid = got.groupby(level=0).sum().reindex(reps, fill_value=0) / 100
            out[f"investor_drawn{key}"] = drawn.astype(float)
            out[f"investor_repaid{key}"] = repaid.astype(float)
            out[f"investor_multiple{key}"] = out[f"investor_repaid{key}"] / out[f"investor_drawn{key}"].where(out[f"investor_drawn{key}"] > 0)
            out[f"investor_loss{key}"] = (out[f"investor_drawn{key}"] - out[f"investor_repaid{key}"]).clip(lower=0)
            out[f"investor_lost{key}"] = (out[f"investor_drawn{key}"] - out[f"investor_repaid{key}"] > 0.005).astype(np.int64)
            rate, status = returns.irr(net)
            out[f"investor_irr{key}"] = rate
            out[f"investor_irr_status{key}"] = status
            out[f"investor_below_hurdle{key}"] = (~np.isnan(rate) & (rate < fin.hurdle)).astype(np.int64)
            out[f"investor_payback_month{key}"] = returns.payback_month(net)
        for col, party, side in (("investor_guaranteed", fin.guarantor, "payer"), ("intermediary_fees", fin.intermediary, "payee"),
                                 ("topped_up", fin.top_up_funder, "payer")):
            if party is not None:
                out[col] = (ledger[ledger[side] == party].groupby("replication").amount_pence.sum().reindex(reps, fill_value=0) / 100).astype(float)
    names = [o.name for o in model.organisations]
    out["failed_any"] = out[[f"failed[{n}]" for n in names]].max(axis=1)
    if len(names) > 1:
        out["paid_to_subcontractors"] = sum(out[f"income[{n}]"] for n in names[1:])
        out["prime_kept"] = out["paid_total"] - out["paid_to_subcontractors"]
    return out


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
    failure = cl["first_dropped_provider_failure"].notna()
    by_service = left & ~outcome & ~failure & (service > 0) & (full_share < threshold)
    by_failure = left & ~outcome & failure
    seg = cl["segment"].astype(str)

    for g in segs + [None]:
        sel = seg == g if g else pd.Series(True, index=cl.index)
        key = f"[{g}]" if g else ""
        out[f"service_months{key}"] = _by_rep(service[sel], reps)
        out[f"minimal_months{key}"] = _by_rep(minimal[sel], reps)
        out[f"parking_rate{key}"] = out[f"minimal_months{key}"] / out[f"service_months{key}"].where(out[f"service_months{key}"] > 0)
        out[f"referrals{key}"] = _by_rep(sel.astype(np.int64), reps)
        out[f"dropped_service{key}"] = _by_rep((by_service & sel).astype(np.int64), reps)
        out[f"dropped_failure{key}"] = _by_rep((by_failure & sel).astype(np.int64), reps)
        out[f"dropped{key}"] = out[f"dropped_service{key}"] + out[f"dropped_failure{key}"]
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
        out["equity_ratio"] = rate_c / rate_l.where(rate_l > 0)
        comm = ledger[ledger["payer"].astype(str) == c.commissioner]
        comm_seg = comm["segment"].astype(object)
        direct = comm[comm_seg.isin(most)].groupby("replication")["amount_pence"].sum().reindex(reps, fill_value=0)
        fee = comm[comm_seg.isna()].groupby("replication")["amount_pence"].sum().reindex(reps, fill_value=0)
        fee_share = out["referrals_complex"] / out["referrals"].where(out["referrals"] > 0)
        out["paid_complex"] = (direct + fee * fee_share.fillna(0.0)) / 100
    else:
        for col in ("referrals_complex", "outcomes_complex", "referrals_least", "outcomes_least"):
            out[col] = 0
        out["equity_ratio"] = np.nan
        out["paid_complex"] = 0.0
    # latent classes: the same figures for the clients of each class of a segment with two or more classes
    if "latent_class" in cl:
        cls = cl["latent_class"]
        for gi, g in enumerate(segs):
            names = pw.class_names[gi]
            if len(names) < 2:
                continue
            for k, name in enumerate(names):
                sel = (seg == g) & (cls == k)
                key = f"[{g}/{name}]"
                out[f"class_service_months{key}"] = _by_rep(service.where(sel, 0), reps)
                out[f"class_minimal_months{key}"] = _by_rep(minimal.where(sel, 0), reps)
                svc = out[f"class_service_months{key}"]
                out[f"class_parking_rate{key}"] = out[f"class_minimal_months{key}"] / svc.where(svc > 0)
                out[f"class_referrals{key}"] = _by_rep(sel.astype(np.int64), reps)
                out[f"class_outcomes{key}"] = _by_rep((sel & outcome).astype(np.int64), reps)
    # pathways that keep clients in the primary outcome state: months still there in the year after it
    if primary and not pw.absorbing[c.primary_outcome]:
        window, last = 12, model.months - 1
        first = cl[f"first_{primary}"].astype("float64")
        end = cl["end_month"].astype("float64")
        still = cl["final_state"].astype(str) == primary
        seen = first.notna() & (first + window <= last)
        stayed = np.where(end.notna() & ~still, end - first - 1, last - first)
        months = pd.Series(np.clip(np.nan_to_num(stayed), 0, window), index=cl.index).astype(np.int64)
        for g in segs + [None]:
            sel = seen if g is None else seen & (seg == g)
            key = "" if g is None else f"[{g}]"
            out[f"outcomes_followed{key}"] = _by_rep(sel.astype(np.int64), reps)
            out[f"months_after_outcome{key}"] = _by_rep(months.where(sel, 0), reps)
    return out


def reference_per_replication(model, tables: dict) -> pd.DataFrame:
    """The per-replication table exactly as ``simulate.summarise_tables`` built it with the pandas code."""
    per_rep = per_replication(model, tables["clients"], tables["ledger"], tables["monthly"], tables["settlements"], tables["failures"])
    cols = per_replication_columns(model, tables["clients"], tables["monthly"], tables["ledger"])
    return per_rep.join(cols.loc[:, ~cols.columns.isin(per_rep.columns)]).copy()


def summarise(model, per_rep: pd.DataFrame, seed: int) -> dict:
    """Summary figures with 95% intervals, as a JSON-ready dict."""
    pw = model.pathway
    R = len(per_rep)
    has_outcome = "outcomes" in per_rep
    milestone = pw.states[model.contract.milestone] if model.contract.milestone >= 0 else None
    has_milestone = milestone is not None
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
    if model.scenario.contract.value:
        commissioner["service_fee_share_of_value"] = float(model.contract.fee_due.sum()) / 100 / model.scenario.contract.value
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
        fin = model.finance
        inv = {"investor": fin.investor, "organisation": model.organisations[fin.organisation].name,
               "commitment": fin.commitment / 100, "hurdle_rate": fin.hurdle}
        rows = []
        for key, name in [("", fin.investor)] + ([(f"[{n}]", n) for n in fin.investors] if len(fin.investors) > 1 else []):
            invested = per_rep[f"investor_drawn{key}"] > 0
            irr = per_rep[f"investor_irr{key}"][invested].dropna()
            status = per_rep[f"investor_irr_status{key}"][invested]
            payback = per_rep[f"investor_payback_month{key}"][invested]
            rows.append({
                "tranche": name,
                "drawn": mean_ci(per_rep[f"investor_drawn{key}"]),
                "repaid": mean_ci(per_rep[f"investor_repaid{key}"]),
                "multiple": ratio_ci(per_rep[f"investor_repaid{key}"], per_rep[f"investor_drawn{key}"]),
                "loss": mean_ci(per_rep[f"investor_loss{key}"]),
                "lost_money": wilson(int(per_rep[f"investor_lost{key}"][invested].sum()), int(invested.sum())),
                "irr": {**({"median": float(irr.median()), **quantiles(irr, (0.05, 0.25, 0.75, 0.95)),
                            "min": float(irr.min()), "max": float(irr.max())} if len(irr) else {"median": None}),
                        "runs": int(len(irr))},
                "irr_below_hurdle": wilson(int((irr < fin.hurdle).sum()), int(len(irr))),
                "irr_status": {returns.STATUS_NAMES[k]: int((status == k).sum()) for k in returns.STATUS_NAMES},
                "payback_month": {"median": float(payback.dropna().median()) if payback.notna().any() else None,
                                  "never": wilson(int(payback.isna().sum()), int(invested.sum()))},
            })
        inv.update({k: v for k, v in rows[0].items() if k != "tranche"})
        if len(rows) > 1:
            inv["tranches"] = rows[1:]
        for col, name in (("investor_guaranteed", "guaranteed"), ("intermediary_fees", "intermediary_fees"), ("topped_up", "topped_up")):
            if col in per_rep:
                inv[name] = mean_ci(per_rep[col])
        extra["investor"] = inv
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
        "warnings": [few_replications_warning(R)] if few_replications_warning(R) else [],
        "segments": segments,
        "commissioner": commissioner,
        "organisations": orgs,
    }


def _names(per_rep: pd.DataFrame, prefix: str) -> list[str]:
    p = f"{prefix}["
    return [col[len(p):-1] for col in per_rep.columns if col.startswith(p) and col.endswith("]")]


def parking_summary(per_rep: pd.DataFrame, model=None) -> dict:
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
    if classes:
        out["classes"] = []
        for k in classes:
            g, name = k.split("/", 1)
            out["classes"].append({"segment": g, "latent_class": name, "referrals": mean_ci(per_rep[f"class_referrals[{k}]"]),
                                   "parking_rate": ratio_ci(per_rep[f"class_minimal_months[{k}]"], per_rep[f"class_service_months[{k}]"]),
                                   "outcome_rate": ratio_ci(per_rep[f"class_outcomes[{k}]"], per_rep[f"class_referrals[{k}]"])})
    if model is not None:
        most, least = complexity_groups(model)
        out["most_complex"], out["least_complex"] = most, least
        out["dropped_full_service_share"] = model.scenario.reporting.dropped_full_service_share
    return out


def reference_summary(model, per_rep: pd.DataFrame, seed: int) -> dict:
    """The summary exactly as ``simulate.summarise_tables`` built it."""
    out = summarise(model, per_rep, seed)
    out["parking"] = parking_summary(per_rep, model)
    if "outcomes_followed" in per_rep:
        segs = _names(per_rep, "outcomes_followed")
        out["outcome_duration"] = {
            "window_months": 12,
            "months_after_outcome": ratio_ci(per_rep["months_after_outcome"], per_rep["outcomes_followed"]),
            "segments": [{"segment": g, "months_after_outcome": ratio_ci(per_rep[f"months_after_outcome[{g}]"],
                                                                         per_rep[f"outcomes_followed[{g}]"])} for g in segs]}
    return out
