"""Contract terms compiled to integer pence: payment rules by segment, the service-fee schedule, the cap."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .money import split_evenly, to_pence
from .pathway import Pathway
from .scenario import Scenario


@dataclass(frozen=True)
class Rule:
    """One payment line: first entry into ``state`` or, for sustainment, each month in ``states`` up to ``max_months``."""

    index: int
    name: str
    kind: str
    state: int  # first-entry state, -1 for sustainment
    in_states: np.ndarray  # bool [S], sustainment only
    max_months: int
    tariff: np.ndarray  # int64 pence [G]
    lag: int
    rejection: float

    @property
    def key(self) -> int:
        """Random-stream key of this payment line: from its name, so adding or removing other lines
        (another design) does not change whose claims are rejected."""
        return zlib.crc32(self.name.encode())

    @property
    def is_sustainment(self) -> bool:
        return self.kind == "sustainment"


@dataclass(frozen=True)
class Contract:
    commissioner: str
    rules: tuple[Rule, ...]
    fee_due: np.ndarray  # int64 pence [T]: service fee falling due in each month
    fee_lag: int
    cap: int | None  # pence
    primary_outcome: int  # state index, -1 when none
    milestone: int  # state index, -1 when none

    @property
    def max_lag(self) -> int:
        return max([self.fee_lag] + [r.lag for r in self.rules])

    @property
    def sustainment_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.is_sustainment)


def _fee_schedule(sc: Scenario) -> np.ndarray:
    T = sc.months
    due = np.zeros(T, dtype=np.int64)
    fee = sc.contract.service_fee
    if fee is None:
        return due
    if fee.amounts is not None:
        for m, amount in enumerate(fee.amounts):
            due[m] = to_pence(amount)
        return due
    total = to_pence(fee.total if fee.total is not None else fee.share_of_value * sc.contract.value)
    if fee.schedule == "monthly":
        months = list(range(T))
    elif fee.schedule == "quarterly":
        months = list(range(0, T, 3))
    elif fee.schedule == "upfront":
        months = [0]
    else:
        months = list(fee.schedule)
    np.add.at(due, months, split_evenly(total, len(months)))
    return due


def compile_contract(sc: Scenario, pw: Pathway) -> Contract:
    rules = []
    for i, r in enumerate(sc.contract.payments):
        if isinstance(r.tariff, dict):
            tariff = np.array([to_pence(r.tariff.get(g, r.tariff.get("default", 0.0))) for g in pw.segments], dtype=np.int64)
        else:
            tariff = np.full(len(pw.segments), to_pence(r.tariff), dtype=np.int64)
        in_states = np.zeros(pw.n_states, dtype=bool)
        for s in r.states or []:
            in_states[pw.index(s)] = True
        rules.append(
            Rule(
                index=i,
                name=r.name,
                kind=r.kind,
                state=pw.index(r.state) if r.state else -1,
                in_states=in_states,
                max_months=r.max_months or 0,
                tariff=tariff,
                lag=r.lag,
                rejection=r.rejection,
            )
        )
    primary = sc.primary_outcome_state
    milestone = sc.milestone_state
    return Contract(
        commissioner=sc.contract.commissioner,
        rules=tuple(rules),
        fee_due=_fee_schedule(sc),
        fee_lag=sc.contract.service_fee.lag if sc.contract.service_fee else 0,
        cap=to_pence(sc.contract.cap) if sc.contract.cap is not None else None,
        primary_outcome=pw.index(primary) if primary else -1,
        milestone=pw.index(milestone) if milestone else -1,
    )
