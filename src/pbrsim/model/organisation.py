"""Delivery organisations (a prime and its subcontractors) compiled to integer pence, and their terms."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .money import to_pence
from ..scenario.schema import PASS_THROUGH_KINDS, Scenario


@dataclass(frozen=True)
class Organisation:
    index: int  # 0 is the prime
    name: str
    role: str
    opening_cash: int
    overhead: int  # pence per month during the contract
    cost_full: int  # pence per client-month at full service
    cost_minimal: int
    capacity: int | None  # full-service places per month
    credit_limit: int | None  # pence; None = unlimited
    monthly_interest: float
    policy: object  # the scenario's policy spec (name and parameters)
    # What the organisation receives of each commissioner payment kind for its own clients (1.0 for the
    # prime; pass-through share after the management fee for a subcontractor), and the extra lag.
    income_share: dict = field(default_factory=lambda: {k: 1.0 for k in PASS_THROUGH_KINDS})
    extra_lag: int = 0
    pass_through: dict = field(default_factory=dict)  # kind -> share before the management fee
    management_fee: float = 0.0
    ffs_start: int = 0  # pence per client referred
    ffs_month: int = 0  # pence per client-month in service
    guaranteed: int = 0  # referrals per month
    on_failure: str = "drop"
    transfer_to: int = 0
    gap_months: int = 0
    restart_state: str | None = None

    @property
    def is_prime(self) -> bool:
        return self.index == 0

    def passed(self, kind: str, amount: int) -> int:
        """Pence the prime passes on of ``amount`` of ``kind`` received for this organisation's clients."""
        share = self.pass_through.get(kind, 0.0) * (1 - self.management_fee)
        return int(amount * share)  # truncated to the penny: the prime keeps fractions


def compile_organisations(sc: Scenario) -> tuple[Organisation, ...]:
    specs = sc.organisation_specs
    names = [o.name for o in specs]
    out = []
    for i, o in enumerate(specs):
        t = o.terms
        pass_through = dict(t.pass_through) if t else {}
        fee = t.management_fee if t else 0.0
        income_share = {k: 1.0 for k in PASS_THROUGH_KINDS} if i == 0 else {
            k: pass_through.get(k, 0.0) * (1 - fee) for k in PASS_THROUGH_KINDS
        }
        f = o.on_failure
        out.append(Organisation(
            index=i,
            name=o.name,
            role="prime" if i == 0 else "subcontractor",
            opening_cash=to_pence(o.opening_cash),
            overhead=to_pence(o.overhead_per_month),
            cost_full=to_pence(o.cost_per_client_month.full),
            cost_minimal=to_pence(o.cost_per_client_month.minimal),
            capacity=o.capacity,
            credit_limit=None if o.credit.limit is None else to_pence(o.credit.limit),
            monthly_interest=o.credit.monthly_interest,
            policy=o.policy,
            income_share=income_share,
            extra_lag=t.extra_lag if t else 0,
            pass_through=pass_through,
            management_fee=fee,
            ffs_start=to_pence(t.fee_for_service.per_start) if t and t.fee_for_service else 0,
            ffs_month=to_pence(t.fee_for_service.per_client_month) if t and t.fee_for_service else 0,
            guaranteed=(t.guaranteed_referrals or 0) if t else 0,
            on_failure=f.action,
            transfer_to=names.index(f.to) if f.to else 0,
            gap_months=f.gap_months,
            restart_state=f.restart_state,
        ))
    return tuple(out)


@dataclass(frozen=True)
class Allocation:
    """How the prime shares referrals: ``shares[segment, organisation]`` and whether they move with performance."""

    shares: np.ndarray  # float [G, O]
    performance: bool
    review_every: int
    step: float


def compile_allocation(sc: Scenario, orgs: tuple[Organisation, ...]) -> Allocation:
    names = [o.name for o in orgs]
    G, O = len(sc.segments), len(orgs)
    shares = np.zeros((G, O))
    chain = sc.supply_chain
    a = chain.allocation if chain else None
    if a is None or (a.method != "by_segment" and a.shares is None):
        shares[:, 0] = 1.0
    elif a.method == "by_segment":
        for g, seg in enumerate(sc.segments):
            for org, share in a.by_segment[seg].items():
                shares[g, names.index(org)] = share
    else:
        for org, share in a.shares.items():
            shares[:, names.index(org)] = share
    return Allocation(
        shares=shares,
        performance=bool(a and a.method == "performance"),
        review_every=a.review_every if a else 3,
        step=a.step if a else 0.0,
    )
