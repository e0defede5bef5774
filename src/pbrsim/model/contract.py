"""Contract terms compiled to integer pence: payment rules by segment, the service-fee schedule, the cap."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .money import split_evenly, to_pence
from .pathway import Pathway
from ..scenario.schema import Scenario


@dataclass(frozen=True)
class Rule:
    """One payment line: first entry into ``state`` or, for sustainment, each month in ``states`` up to ``max_months``;
    with ``requires``, only for clients whose claim on that other line was accepted before."""

    index: int
    name: str
    kind: str
    state: int  # first-entry state, -1 for sustainment
    in_states: np.ndarray  # bool [S], sustainment only
    max_months: int
    tariff: np.ndarray  # int64 pence [G]: the first year's tariff, after any deadweight deduction
    lag: int
    rejection: float
    tariff_years: np.ndarray | None = None  # int64 pence [Y, G] when the tariff changes by year (the last repeats)
    entry_basis: bool = False  # tariff_years indexed by the client's referral year, not the trigger month's year
    requires: int = -1  # index of the line whose accepted claim must come first (``requires``), -1 for none
    class_tariff: np.ndarray | None = None  # int64 pence [G*K] by (segment, latent class), with ``tariff_by_class``

    def amounts(self, seg, month, ref_month) -> np.ndarray:
        """Tariff in pence for claims of segment(s) ``seg`` triggered in ``month`` by clients referred in
        ``ref_month`` (numpy broadcasting: the engine passes one month and arrays per client, exact mode one
        segment and referral month with an array of trigger months)."""
        seg, month, ref_month = np.broadcast_arrays(np.asarray(seg), np.asarray(month), np.asarray(ref_month))
        if self.tariff_years is None:
            return self.tariff[seg]
        year = np.minimum((ref_month if self.entry_basis else month) // 12, len(self.tariff_years) - 1)
        return self.tariff_years[year, seg]

    @property
    def key(self) -> int:
        """Random-stream key of this payment line: from its name, so adding or removing other lines
        (another design) does not change whose claims are rejected."""
        return zlib.crc32(self.name.encode())

    @property
    def is_sustainment(self) -> bool:
        """Paid by the monthly mechanism: each month ending in ``in_states``, up to ``max_months``. A
        first-entry line over several states ("first entry into any of them") is compiled to this
        mechanism with ``max_months = 1`` and keeps its own kind for reporting."""
        return self.state < 0

    @property
    def pays_at_referral(self) -> bool:
        """A first-entry line over several states whose set includes where clients start (paid at referral)."""
        return self.kind != "sustainment" and self.state < 0


@dataclass(frozen=True)
class CohortRule:
    """A cohort-level threshold payment (``contract.cohort_payments``) with months resolved."""

    name: str
    event_state: int
    window: int
    baseline: float
    cohorts: tuple[tuple[int, int], ...]  # referral months [start, end)
    threshold: float
    threshold_all: float | None
    price: int  # pence per avoided event
    lag: int

    def measure_month(self, k: int) -> int:
        """Month cohort ``k`` is measured: when its last member's window has closed."""
        return self.cohorts[k][1] - 1 + self.window

    @property
    def final_month(self) -> int:
        return max(self.measure_month(k) for k in range(len(self.cohorts)))


@dataclass(frozen=True)
class VolumeBand:
    """Fee-for-service volume band: expected referrals and unit price per contract year, in pence; the
    paid volume is the referrals of the ``counted`` segments."""

    expected: np.ndarray  # float [Y]
    unit_price: np.ndarray  # float pence per referral [Y]
    band: float
    lag: int
    counted: np.ndarray | None = None  # bool [G]: segments whose referrals are the paid volume; None = all


@dataclass(frozen=True)
class Contract:
    commissioner: str
    rules: tuple[Rule, ...]
    fee_due: np.ndarray  # int64 pence [T]: service fee falling due in each month
    fee_lag: int
    cap: int | None  # pence
    primary_outcome: int  # state index, -1 when none
    milestone: int  # state index, -1 when none
    per_person_cap: int | None = None  # pence
    cohorts: tuple[CohortRule, ...] = ()
    volume_band: VolumeBand | None = None

    @property
    def max_lag(self) -> int:
        """Months after the contract end in which money can still arrive."""
        late = [self.fee_lag] + [r.lag for r in self.rules]
        late += [c.final_month + c.lag + 1 - len(self.fee_due) for c in self.cohorts]
        if self.volume_band is not None:
            late.append(self.volume_band.lag + 1)
        return max(0, *late)

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


def _tariff_pence(tariff, segments, deadweight: float) -> np.ndarray:
    """One tariff (a number or per segment) in pence per segment, less the deadweight share."""
    if isinstance(tariff, dict):
        pounds = [tariff.get(g, tariff.get("default", 0.0)) for g in segments]
    else:
        pounds = [tariff] * len(segments)
    return np.array([to_pence(x * (1.0 - deadweight)) for x in pounds], dtype=np.int64)


def _volume_band(sc: Scenario, fee_due: np.ndarray) -> VolumeBand | None:
    fee = sc.contract.service_fee
    if fee is None or fee.volume_band is None:
        return None
    vb = fee.volume_band
    years = (sc.months + 11) // 12
    given = vb.expected_per_year if isinstance(vb.expected_per_year, list) else [vb.expected_per_year]
    expected = np.array([given[min(y, len(given) - 1)] for y in range(years)], dtype=float)
    due_by_year = np.array([fee_due[12 * y: 12 * (y + 1)].sum() for y in range(years)], dtype=float)
    counted = None
    if vb.segments is not None:
        counted = np.array([g in vb.segments for g in sc.segments], dtype=bool)
    return VolumeBand(expected=expected, unit_price=due_by_year / expected, band=vb.band, lag=vb.lag, counted=counted)


def compile_contract(sc: Scenario, pw: Pathway) -> Contract:
    rules = []
    line_index = {r.name: i for i, r in enumerate(sc.contract.payments)}
    for i, r in enumerate(sc.contract.payments):
        years = None
        if r.tariff_by_year is not None:
            years = np.stack([_tariff_pence(t, pw.segments, r.deadweight) for t in r.tariff_by_year])
            tariff = years[0]
        else:
            tariff = _tariff_pence(r.tariff, pw.segments, r.deadweight)
        class_tariff = None
        if r.tariff_by_class is not None:  # the segment's tariff for each class, replaced for the classes priced
            class_tariff = np.repeat(tariff, pw.K)
            for g, seg in enumerate(pw.segments):
                for k, cls in enumerate(pw.class_names[g]):
                    if cls in r.tariff_by_class.get(seg, {}):
                        class_tariff[g * pw.K + k] = _tariff_pence(r.tariff_by_class[seg][cls], [seg], r.deadweight)[0]
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
                max_months=r.max_months or (1 if r.states else 0),
                tariff=tariff,
                lag=r.lag,
                rejection=r.rejection,
                tariff_years=years,
                entry_basis=r.year_basis == "entry",
                requires=line_index[r.requires] if r.requires is not None else -1,
                class_tariff=class_tariff,
            )
        )
    primary = sc.primary_outcome_state
    milestone = sc.milestone_state
    cohorts = tuple(
        CohortRule(name=cp.name, event_state=pw.index(cp.event_state), window=cp.window_months, baseline=cp.baseline_rate,
                   cohorts=tuple((co.start, co.end) for co in cp.cohorts), threshold=cp.threshold,
                   threshold_all=cp.threshold_all, price=to_pence(cp.price_per_event_avoided), lag=cp.lag)
        for cp in sc.contract.cohort_payments
    )
    fee_due = _fee_schedule(sc)
    c = sc.contract
    return Contract(
        commissioner=sc.contract.commissioner,
        rules=tuple(rules),
        fee_due=fee_due,
        fee_lag=sc.contract.service_fee.lag if sc.contract.service_fee else 0,
        cap=to_pence(sc.contract.cap) if sc.contract.cap is not None else None,
        primary_outcome=pw.index(primary) if primary else -1,
        milestone=pw.index(milestone) if milestone else -1,
        per_person_cap=to_pence(c.per_person_cap) if c.per_person_cap is not None else None,
        cohorts=cohorts,
        volume_band=_volume_band(sc, fee_due),
    )
