"""Social investment compiled to pence and monthly rates: tranches, fees, caps, guarantees and a top-up payer.

The scenario's ``finance`` section (``scenario/schema.py``) becomes one ``Financing``: per-tranche arrays in
waterfall order (senior first), so that the engine moves the money of every tranche of every replication
with a few numpy operations (``engine/investors.py``; docs/social-investment.md gives the rules).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..scenario.schema import Scenario
from .money import to_pence


@dataclass(frozen=True, eq=False)
class Financing:
    """Investor finance of one organisation."""

    organisation: int  # index into the model's organisations
    investors: tuple[str, ...]  # ledger party of each tranche, senior first
    commitments: np.ndarray  # [K] pence
    monthly_rate: np.ndarray  # [K] return due a month on what is owed; inf: no limit
    protection: np.ndarray  # [K] share of capital drawn the guarantor makes good at the end
    cap_multiple: float | None  # most a tranche receives, as a multiple of what it put in
    upfront: bool
    floor: int  # as_needed: cash the organisation is topped up to at month ends
    share: float  # of each month's contract income, paid to investors
    intermediary: str | None
    monthly_fee: int  # pence a contract month to the intermediary, out of the commitment
    guarantor: str | None
    first_loss: int  # pence
    top_up_funder: str | None
    top_up_share: float
    top_up_kinds: tuple[str, ...]
    recycle: bool
    hurdle: float  # annual IRR runs are compared with

    @property
    def commitment(self) -> int:
        return int(self.commitments.sum())

    @property
    def investor(self) -> str:
        """The investors' name in summaries: the single tranche's party, or all tranches'."""
        return self.investors[0] if len(self.investors) == 1 else " + ".join(self.investors)

    @property
    def parties(self) -> tuple[str, ...]:
        """Ledger parties finance adds, in the scenario's order."""
        extra = [p for p in (self.intermediary, self.guarantor, self.top_up_funder) if p]
        return self.investors + tuple(extra)


def monthly_rate(annual: float | None) -> float:
    """Monthly rate compounding to ``annual`` a year (inf for no limit)."""
    return np.inf if annual is None else (1.0 + annual) ** (1 / 12) - 1.0


def compile_financing(sc: Scenario, organisation_names: list[str]) -> Financing | None:
    """The scenario's finance section for the engine (None without one)."""
    f = sc.finance
    if f is None:
        return None
    tranches = f.tranche_list
    cap = f.return_cap
    rates = []
    for t in tranches:
        own = t.annual_return if t.annual_return is not None else f.annual_return
        limit = min(x for x in (own, cap.annual if cap else None, np.inf) if x is not None)
        rates.append(monthly_rate(None if limit == np.inf else limit))
    return Financing(
        organisation=organisation_names.index(f.organisation or organisation_names[0]),
        investors=tuple(t.investor for t in tranches),
        commitments=np.array([to_pence(t.commitment) for t in tranches], dtype=np.int64),
        monthly_rate=np.array(rates, dtype=np.float64),
        protection=np.array([t.protection for t in tranches], dtype=np.float64),
        cap_multiple=cap.multiple if cap else None,
        upfront=f.drawdown == "upfront",
        floor=to_pence(f.cash_floor),
        share=f.repayment_share,
        intermediary=f.intermediary.name if f.intermediary else None,
        monthly_fee=to_pence(f.intermediary.management_fee / 12) if f.intermediary else 0,
        guarantor=f.guarantee.guarantor if f.guarantee else None,
        first_loss=to_pence(f.guarantee.first_loss) if f.guarantee else 0,
        top_up_funder=f.top_up.funder if f.top_up else None,
        top_up_share=f.top_up.share if f.top_up else 0.0,
        top_up_kinds=tuple(f.top_up.kinds) if f.top_up else (),
        recycle=f.recycle,
        hurdle=f.hurdle_rate,
    )
