"""The value-for-money summary: net present public value, who pays and who saves, the benefit-cost ratio,
the fiscal return, payback, deadweight and the tariff check, with 95% intervals over replications.

Definitions (docs/value.md): present values are Green Book discounted, in base-year prices; costs are
the commissioner's spend with the optimism-bias uplift; "public" gains are every holder's but the
person's. Net present public value = public gains - costs. Benefit-cost ratio = all gains (the person's
included) / costs. Fiscal return = public gains / costs.
"""

from __future__ import annotations

import math

import pandas as pd

from ..analysis.metrics import mean_ci, quantiles, ratio_ci, wilson
from ..engine.run import Model
from .appraisal import appraiser
from .greenbook import STPR_SCHEDULE


def _pooled(num: pd.Series, den: pd.Series) -> dict:
    return ratio_ci(num.to_numpy(dtype=float), den.to_numpy(dtype=float))


def summarise(model: Model, per_rep: pd.DataFrame) -> dict:
    """JSON-ready value summary from the per-replication frame (it must hold the columns of ``appraisal``)."""
    vm = appraiser(model).vm
    v = vm.spec
    R = len(per_rep)
    costs = per_rep["value_costs"]
    holders = []
    for h in vm.holders:
        pays = costs if h == vm.commissioner else pd.Series(0.0, index=per_rep.index)
        saves = per_rep[f"value_saves[{h}]"]
        holders.append({"holder": h, "public": h in vm.public, "pays": mean_ci(pays), "saves": mean_ci(saves),
                        "net": mean_ci(saves - pays)})
    pb = per_rep["payback_months"]
    never = int(pb.isna().sum())
    payback = {"median": float(pb.median()) if never < R else None, "never": wilson(never, R)}
    if never < R:
        payback.update(quantiles(pb.dropna(), (0.05, 0.95)))
    prog, cf = per_rep["value_programme_gains"].to_numpy(float), per_rep["value_counterfactual_gains"].to_numpy(float)
    diff = prog - cf
    se_paired = float(diff.std(ddof=1) / math.sqrt(R)) if R > 1 else None
    se_unpaired = float(math.sqrt(prog.var(ddof=1) / R + cf.var(ddof=1) / R)) if R > 1 else None
    out = {
        "price_year": v.price_year,
        "base_year": v.base,
        "horizon_years": v.horizon_years,
        "discounting": "HM Treasury Green Book STPR: " + ", ".join(
            f"{100 * r:.1f}% to year {last}" if last else f"{100 * r:.1f}% after" for last, r in STPR_SCHEDULE[:2]) + " (declining further after year 75)",
        "optimism_bias": {"costs": v.optimism_bias.costs, "benefits": v.optimism_bias.benefits},
        "commissioner_budget": vm.commissioner,
        "net_public_value": mean_ci(per_rep["net_public_value"]),
        "costs": mean_ci(costs),
        "public_gains": mean_ci(per_rep["value_public_benefits"]),
        "all_gains": mean_ci(per_rep["value_benefits"]),
        "benefit_cost_ratio": _pooled(per_rep["value_benefits"], costs),
        "fiscal_return": _pooled(per_rep["value_public_benefits"], costs),
        "payback_months": payback,
        "holders": holders,
        "common_random_numbers": {
            "public_gains_difference": mean_ci(diff),
            "se_paired": se_paired,
            "se_unpaired": se_unpaired,
        },
        "lines": tariff_check(model, per_rep),
    }
    if "outcomes_without_programme" in per_rep and "outcomes" in per_rep:
        out["outcomes"] = mean_ci(per_rep["outcomes"])
        out["outcomes_without_programme"] = mean_ci(per_rep["outcomes_without_programme"])
        out["deadweight"] = _pooled(per_rep["outcomes_without_programme"], per_rep["outcomes"])
    return out


def tariff_check(model: Model, per_rep: pd.DataFrame) -> list[dict]:
    """The price of outcomes against their public value and the providers' cost of producing them.

    The first row is the whole contract: what the commissioner pays per client against the public gains and
    the providers' delivery and overhead costs per client (present values): priced above the value it flags
    ``above value``, below the cost ``below cost`` (the Government Outcomes Lab's band lies between the two).
    Then one row per payment line: its price per outcome paid against the whole programme's public gains per
    outcome paid on that line (``above value`` if even all of it does not cover the price) and, when the line
    is the contract's only payment, the providers' cost per outcome (``below cost``).
    """
    public = per_rep["value_public_benefits"]
    clients = per_rep["referrals"] if "referrals" in per_rep else pd.Series(1.0, index=per_rep.index)
    paid = per_rep["value_spend"]
    rows = [_row("all payments", "contract", clients, paid, public, per_rep["provider_costs"], check_cost=True)]
    only = len(model.contract.rules) == 1 and not model.contract.fee_due.any()
    for rule in model.contract.rules:
        n = per_rep[f"line_outcomes[{rule.name}]"]
        row = _row(rule.name, rule.kind, n, per_rep[f"line_paid[{rule.name}]"], public, per_rep["provider_costs"], check_cost=only)
        extra = per_rep[f"line_with[{rule.name}]"] - per_rep[f"line_without[{rule.name}]"]
        row["additional_outcomes"] = mean_ci(extra)
        row["value_per_additional_outcome"] = _pooled(public, extra) if extra.sum() > 0 else _none()
        rows.append(row)
    return rows


def _none() -> dict:
    return {"mean": None, "lo": None, "hi": None}


def _row(name: str, kind: str, n: pd.Series, paid: pd.Series, public: pd.Series, costs: pd.Series, check_cost: bool) -> dict:
    row = {"line": name, "kind": kind, "outcomes": mean_ci(n), "flags": []}
    if n.sum() <= 0:
        row["flags"].append("nothing paid for")
        row.update(price_per_outcome=_none(), value_per_outcome=_none(), provider_cost_per_outcome=_none())
        return row
    price, value, cost = _pooled(paid, n), _pooled(public, n), _pooled(costs, n)
    row.update(price_per_outcome=price, value_per_outcome=value, provider_cost_per_outcome=cost)
    if price["mean"] is not None and value["mean"] is not None and price["mean"] > value["mean"]:
        row["flags"].append("above value")
    if check_cost and price["mean"] is not None and cost["mean"] is not None and price["mean"] < cost["mean"]:
        row["flags"].append("below cost")
    return row


def interval_ratio(summary: dict) -> float | None:
    """How many times narrower the paired interval is than an unpaired one (common random numbers at work)."""
    crn = summary.get("common_random_numbers", {})
    if not crn.get("se_paired"):
        return None
    return crn["se_unpaired"] / crn["se_paired"]

