"""A delivery organisation's finances and capacity, compiled to integer pence."""

from __future__ import annotations

from dataclasses import dataclass

from .money import to_pence
from .scenario import Scenario


@dataclass(frozen=True)
class Organisation:
    name: str
    opening_cash: int
    overhead: int  # pence per month during the contract
    cost_full: int  # pence per client-month at full service
    cost_minimal: int
    capacity: int | None  # full-service places per month
    credit_limit: int | None  # pence; None = unlimited
    monthly_interest: float
    policy: str


def compile_provider(sc: Scenario) -> Organisation:
    p = sc.provider
    return Organisation(
        name=p.name,
        opening_cash=to_pence(p.opening_cash),
        overhead=to_pence(p.overhead_per_month),
        cost_full=to_pence(p.cost_per_client_month.full),
        cost_minimal=to_pence(p.cost_per_client_month.minimal),
        capacity=p.capacity,
        credit_limit=None if p.credit.limit is None else to_pence(p.credit.limit),
        monthly_interest=p.credit.monthly_interest,
        policy=p.policy,
    )
