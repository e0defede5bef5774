"""Running a portfolio: every member's replications, then per-replication totals over the members.

Figures that add up across separate contracts are summed replication by replication (money, referrals,
payments and accepted claims by payment line, investor flows, members whose provider ran out of cash);
the fund's intervals come from the spread of those totals over replications, with the same estimators as
a single run (``analysis.metrics``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from ..analysis.metrics import mean_ci, ratio_ci, wilson
from ..simulate import simulate
from .portfolio import Portfolio, member_seed

# per-replication figures of a single run (analysis.metrics.per_replication) that add up across members
ADDITIVE = ("referrals", "paid_total", "capped_total", "investor_drawn", "investor_repaid", "investor_loss")


@dataclass
class PortfolioResult:
    portfolio: Portfolio
    seed: int
    replications: int
    members: pd.DataFrame  # member x replication: ADDITIVE figures, cap_reached, failed_any
    lines: pd.DataFrame  # member x replication x line: accepted claims and amount paid by the commissioner (pounds)
    fund: pd.DataFrame  # replication: totals over members
    summary: dict


def _line_figures(res, member: str) -> pd.DataFrame:
    """Accepted claims and commissioner payments per payment line and replication of one member's run."""
    reps = range(res.replications)
    claims = res.claims.assign(accepted=res.claims["claims"] - res.claims["rejected"])
    accepted = claims.groupby(["replication", "item"], observed=True)["accepted"].sum()
    comm = res.ledger[res.ledger.payer == res.scenario.contract.commissioner]
    paid = comm.groupby(["replication", "item"], observed=True)["amount_pence"].sum() / 100
    names = [r.name for r in res.scenario.contract.payments] + [c.name for c in res.scenario.contract.cohort_payments]
    idx = pd.MultiIndex.from_product([reps, names], names=["replication", "item"])
    out = pd.DataFrame({"accepted": accepted.reindex(idx, fill_value=0), "paid": paid.reindex(idx, fill_value=0.0)})
    out = out.reset_index().rename(columns={"item": "line"})
    out.insert(0, "member", member)
    return out


def run_portfolio(pf: Portfolio, seed: int | None = None, replications: int | None = None,
                  progress: Callable[[str, int], None] | None = None) -> PortfolioResult:
    """Run every member (``progress(member, replications_done)`` after each) and sum the members' figures."""
    seed = pf.seed if seed is None else seed
    R = pf.replications if replications is None else replications
    rows, line_parts, member_info = [], [], []
    for m in pf.members:
        s = member_seed(seed, m.name)
        res = simulate(m.scenario, seed=s, replications=R)
        pr = res.per_replication.reset_index()
        fig = pd.DataFrame({"member": m.name, "replication": pr["replication"]})
        for col in ADDITIVE:
            fig[col] = pr[col] if col in pr else 0.0
        fig["cap_reached"] = pr["cap_reached"].astype(int)
        fig["failed_any"] = pr["failed_any"].astype(int)
        rows.append(fig)
        line_parts.append(_line_figures(res, m.name))
        member_info.append({"member": m.name, "scenario": str(m.path.name), "scenario_sha256": m.sha256, "seed": s,
                            "summary": res.summary})
        if progress:
            progress(m.name, R)
    members = pd.concat(rows, ignore_index=True)
    lines = pd.concat(line_parts, ignore_index=True)
    fund = members.groupby("replication")[list(ADDITIVE)].sum()
    fund["members_cap_reached"] = members.groupby("replication")["cap_reached"].sum()
    fund["members_ran_out_of_cash"] = members.groupby("replication")["failed_any"].sum()
    fund = fund.reset_index()
    summary = _summary(pf, seed, R, members, lines, fund, member_info)
    return PortfolioResult(portfolio=pf, seed=seed, replications=R, members=members, lines=lines, fund=fund, summary=summary)


def _figures(df: pd.DataFrame) -> dict:
    R = len(df)
    out = {col: mean_ci(df[col]) for col in ADDITIVE}
    out["investor_multiple"] = ratio_ci(df["investor_repaid"], df["investor_drawn"]) if df["investor_drawn"].sum() else None
    return out | {"replications": R}


def _summary(pf, seed, R, members, lines, fund, member_info) -> dict:
    per_member = []
    for info in member_info:
        df = members[members.member == info["member"]]
        per_member.append({
            "member": info["member"], "scenario": info["scenario"], "scenario_sha256": info["scenario_sha256"],
            "seed": info["seed"], **_figures(df),
            "cap_reached": wilson(int(df["cap_reached"].sum()), R),
            "ran_out_of_cash": wilson(int(df["failed_any"].sum()), R),
        })
    order = list(dict.fromkeys(lines["line"]))  # the first member's order (rate card order), then any others
    by_line = lines.groupby(["replication", "line"], observed=True)[["accepted", "paid"]].sum().reset_index()
    line_rows = []
    for line in order:
        g = by_line[by_line.line == line]
        line_rows.append({"line": line, "accepted_claims": mean_ci(g["accepted"]), "paid": mean_ci(g["paid"])})
    any_failed = int((fund["members_ran_out_of_cash"] > 0).sum())
    return {
        "portfolio": pf.name,
        "seed": seed,
        "replications": R,
        "currency": pf.members[0].scenario.currency,
        "members": per_member,
        "fund": {
            **_figures(fund),
            "members_cap_reached": mean_ci(fund["members_cap_reached"]),
            "members_ran_out_of_cash": mean_ci(fund["members_ran_out_of_cash"]),
            "any_member_ran_out_of_cash": wilson(any_failed, R),
            "paid_per_referral": ratio_ci(fund["paid_total"], fund["referrals"]),
        },
        "lines": line_rows,
    }
