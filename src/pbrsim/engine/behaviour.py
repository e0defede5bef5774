"""Allocation policies: which clients get full service this month.

A policy sees the month's candidates (active clients in service states, in first-come first-served
order) and returns a boolean mask of those given ``full`` service; the rest get ``minimal``. At most
``capacity`` may be True. Policies are built once per replication by ``make_policy`` from the
scenario's policy spec, the compiled model and the organisation, so anything expensive (value tables)
is computed in the factory, not each month. docs/behaviour.md describes each policy.

* ``holistic``: everyone, first come first served, while capacity lasts.
* ``needs_first``: as holistic, but when capacity is short the most complex segments go first.
* ``return_maximising``: full service in order of the net value of full over minimal service
  (``client_value.py``), best first; clients with negative net value are parked even when places are free.
* ``cash_stressed``: holistic while cash is comfortable, return-maximising when stressed, a blend
  between (``cash_weight`` and ``blended_scores``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..model.money import to_pence
from .client_value import cached_value_tables

# Net values within this many pence of zero count as zero: the client is served (ties favour service).
TIE_TOLERANCE = 1e-6


@dataclass
class Review:
    """What the provider knows at its monthly review."""

    month: int
    candidates: np.ndarray  # client indices, first come first served
    segment: np.ndarray  # segment of each candidate
    state: np.ndarray  # state of each candidate
    ref_month: np.ndarray  # referral month of each candidate
    capacity: int | None  # full-service places this month
    cash: int  # pence, at the start of the month


def holistic(review: Review) -> np.ndarray:
    """Everyone gets full service while capacity lasts, first come first served."""
    full = np.ones(len(review.candidates), dtype=bool)
    if review.capacity is not None:
        full[review.capacity:] = False
    return full


def complexity(model) -> np.ndarray:
    """Rank of need of each segment (higher = more complex): ``segments.<name>.complexity``, else its position."""
    segs = model.scenario.segments
    return np.array([s.complexity if s.complexity is not None else i for i, s in enumerate(segs.values())], dtype=float)


def serve_by_score(score: np.ndarray, capacity: int | None) -> np.ndarray:
    """Full service for clients with score >= 0, highest first up to ``capacity``; ties first come first served."""
    full = score >= -TIE_TOLERANCE
    if capacity is not None and int(full.sum()) > capacity:
        if capacity == 0:
            return np.zeros(len(score), dtype=bool)
        # the capacity-th highest score, then everyone above it and the earliest of those equal to it:
        # the same as a stable sort, in linear time
        cut = -np.partition(-score, capacity - 1)[capacity - 1]
        full = score > cut
        tied = np.flatnonzero(score == cut)
        full[tied[: capacity - int(full.sum())]] = True
    return full


def _needs_first(spec, model, org):
    rank = complexity(model)
    levels = np.unique(rank)[::-1]  # most complex first
    level_of = np.searchsorted(-levels, -rank).astype(np.int16)  # segment -> 0 for the most complex, ...

    def needs_first(review: Review) -> np.ndarray:
        n, cap = len(review.candidates), review.capacity
        if cap is None or cap >= n:
            return np.ones(n, dtype=bool)
        full = np.zeros(n, dtype=bool)
        level = level_of[review.segment]
        for lv in range(len(levels)):  # fill places level by level, first come first served within one
            if cap <= 0:
                break
            take = np.flatnonzero(level == lv)[:cap]
            full[take] = True
            cap -= len(take)
        return full

    return needs_first


def _return_maximising(spec, model, org):
    tables = cached_value_tables(model, org, spec.monthly_discount_rate)

    def return_maximising(review: Review) -> np.ndarray:
        net = tables.lookup(review.month, review.segment, review.state, review.ref_month)
        return serve_by_score(net, review.capacity)

    return_maximising.tables = tables
    return return_maximising


def cash_weight(cash: int, comfortable: int, stressed: int) -> float:
    """Weight on return-maximising: 0 at or above ``comfortable`` cash, 1 at or below ``stressed``, linear between."""
    if cash <= stressed:
        return 1.0
    if cash >= comfortable:
        return 0.0
    return float(min(1.0, max(0.0, (comfortable - cash) / (comfortable - stressed))))


def blended_scores(net: np.ndarray, w: float, cost_gap: int) -> np.ndarray:
    """Cash-stressed score: w · net value + (1 − w) · the extra cost of full service.

    The mission-driven provider counts a month of full service as worth what it costs (its mission
    value, ``cost_gap`` pence) and weighs that against its own net value with weight ``w``. At w = 0
    every score equals ``cost_gap`` >= 0, so everyone is served first come first served (holistic); at
    w = 1 the score is the net value (return-maximising). Between, a client is parked when its net
    value is below −(1 − w) / w × cost_gap, a threshold that rises towards zero as cash falls.
    """
    if w <= 0.0:
        return np.full(len(net), float(cost_gap))
    return w * net + (1.0 - w) * float(cost_gap)


def _cash_stressed(spec, model, org):
    comfortable, stressed = to_pence(spec.comfortable_cash), to_pence(spec.stressed_cash)
    if comfortable < stressed:
        raise ValueError(
            f"cash_stressed policy of {org.name!r}: comfortable_cash ({spec.comfortable_cash}) must not be below stressed_cash ({spec.stressed_cash})"
        )
    tables = cached_value_tables(model, org, spec.monthly_discount_rate)
    gap = max(0, tables.cost_gap)

    def cash_stressed(review: Review) -> np.ndarray:
        w = cash_weight(review.cash, comfortable, stressed)
        if w <= 0.0:
            return holistic(review)
        net = tables.lookup(review.month, review.segment, review.state, review.ref_month)
        return serve_by_score(blended_scores(net, w, gap), review.capacity)

    cash_stressed.tables = tables
    return cash_stressed


Policy = Callable[[Review], np.ndarray]
# A factory builds an organisation's policy once per model (e.g. value tables), from the scenario's
# policy spec, the compiled model and the organisation.
PolicyFactory = Callable[[object, "object", "object"], Policy]
FACTORIES: dict[str, PolicyFactory] = {
    "holistic": lambda spec, model, org: holistic,
    "needs_first": _needs_first,
    "return_maximising": _return_maximising,
    "cash_stressed": _cash_stressed,
}


def make_policy(spec, model, org) -> Policy:
    """The allocation policy named by ``spec.name`` for ``org`` under ``model``."""
    try:
        factory = FACTORIES[spec.name]
    except KeyError:
        raise ValueError(f"unknown allocation policy {spec.name!r}; known: {sorted(FACTORIES)}") from None
    return factory(spec, model, org)
