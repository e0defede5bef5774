"""Allocation policies: which clients get full service this month.

A policy sees the month's candidates (active clients in service states, in first-come first-served
order) and returns a boolean mask of those given ``full`` service; the rest get ``minimal``. At most
``capacity`` may be True. Policies are built once per batch of replications by ``make_policy`` from the
scenario's policy spec, the compiled model and the organisation, so anything expensive (value tables)
is computed in the factory, not each month. docs/behaviour.md describes each policy.

The built-in policies also decide for many reviews at once (``policy.batch`` takes a ``BatchReview``:
one group of candidates per replication, the same decisions as calling the policy on each group), and
say when they need no review at all (``policy.serves_all_within_capacity``: everyone is served while
the candidates fit the places). A policy without ``batch`` is called once per group.

* ``holistic``: everyone, first come first served, while capacity lasts.
* ``needs_first``: as holistic, but when capacity is short the most complex segments go first.
* ``return_maximising``: full service in order of the net value of full over minimal service
  (``client_value.py``), best first; clients with negative net value are parked even when places are free.
* ``graded``: return-maximising, softened: a client it would park is served anyway with chance
  exp(net value / ``temperature``) (its own random draw), or a ``protected_share`` of those clients is served,
  the highest net values first. Temperature 0 or share 0 is return_maximising; share 1 (or an unbounded
  temperature) holistic.
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
    latent_class: np.ndarray | None = None  # class of each candidate within its segment (None: no latent classes)
    uniforms: Callable[[], np.ndarray] | None = None  # a uniform in [0, 1) per candidate, its own stream (policies that draw)


@dataclass
class BatchReview:
    """Many reviews of one organisation at once, one group of candidates per replication. With a capacity,
    candidates come sorted by group, each group first come first served (``starts[k]:starts[k + 1]`` are
    group k's); without one they may come in any order (``starts`` is None), and a decision must not depend
    on it."""

    month: int
    segment: np.ndarray
    state: np.ndarray
    ref_month: np.ndarray
    group: np.ndarray  # group of each candidate
    starts: np.ndarray | None  # [groups + 1] when sorted
    capacity: int | None
    cash: np.ndarray  # pence per group, at the start of the month
    latent_class: np.ndarray | None = None  # class of each candidate within its segment (None: no latent classes)
    uniforms: Callable[[], np.ndarray] | None = None  # a uniform in [0, 1) per candidate, its own stream (policies that draw)

    def rank(self) -> np.ndarray:
        """Position of each candidate within its group (0 = first come)."""
        return np.arange(len(self.group)) - self.starts[self.group]

    def rank_by(self, *keys: np.ndarray) -> np.ndarray:
        """Position within its group after a stable sort by ``keys`` (most significant first), ties first come."""
        order = np.lexsort((np.arange(len(self.group)),) + tuple(reversed(keys)) + (self.group,))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order)) - self.starts[self.group[order]]
        return rank


def holistic(review: Review) -> np.ndarray:
    """Everyone gets full service while capacity lasts, first come first served."""
    full = np.ones(len(review.candidates), dtype=bool)
    if review.capacity is not None:
        full[review.capacity:] = False
    return full


def _holistic_batch(review: BatchReview) -> np.ndarray:
    if review.capacity is None:
        return np.ones(len(review.group), dtype=bool)
    return review.rank() < review.capacity


holistic.batch = _holistic_batch
holistic.serves_all_within_capacity = True


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


def serve_by_score_batch(score: np.ndarray, review: BatchReview) -> np.ndarray:
    """``serve_by_score`` for every group of ``review`` at once: the best ``capacity`` scores of each group
    that are >= 0 (ties first come first served), i.e. the first ``capacity`` after a stable sort by score."""
    full = score >= -TIE_TOLERANCE
    if review.capacity is not None:
        full &= review.rank_by(-score) < review.capacity
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

    def needs_first_batch(review: BatchReview) -> np.ndarray:
        if review.capacity is None:
            return np.ones(len(review.group), dtype=bool)
        return review.rank_by(level_of[review.segment]) < review.capacity

    needs_first.batch = needs_first_batch
    needs_first.serves_all_within_capacity = True
    return needs_first


def _return_maximising(spec, model, org):
    tables = cached_value_tables(model, org, spec.monthly_discount_rate)

    def return_maximising(review: Review) -> np.ndarray:
        net = tables.lookup(review.month, review.segment, review.state, review.ref_month, review.latent_class)
        return serve_by_score(net, review.capacity)

    def return_maximising_batch(review: BatchReview) -> np.ndarray:
        net = tables.lookup(review.month, review.segment, review.state, review.ref_month, review.latent_class)
        return serve_by_score_batch(net, review)

    return_maximising.tables = tables
    return_maximising.batch = return_maximising_batch
    return return_maximising


def protected_counts(n_negative: np.ndarray, share: float) -> np.ndarray:
    """Clients with negative net value a graded provider serves anyway: ``share`` of them, rounded half up
    (so never fewer as the share rises; none at 0, all at 1)."""
    return np.floor(share * np.asarray(n_negative, dtype=np.float64) + 0.5).astype(np.int64)


def graded_batch(net: np.ndarray, review: BatchReview, share: float) -> np.ndarray:
    """Graded decisions for every group of ``review`` (sorted by group): clients ranked by net value (ties first
    come first served); the ones with net value >= 0 and the best ``share`` of the others are served, the
    first ``capacity`` of them if places are short."""
    groups = len(review.starts) - 1
    negative = net < -TIE_TOLERANCE
    rank = review.rank_by(-net)
    n_pos = np.bincount(review.group[~negative], minlength=groups)
    n_neg = np.bincount(review.group[negative], minlength=groups)
    full = rank < (n_pos + protected_counts(n_neg, share))[review.group]
    if review.capacity is not None:
        full &= rank < review.capacity
    return full


def serve_chance(net: np.ndarray, temperature: float) -> np.ndarray:
    """A graded provider's chance of serving a client this month: 1 for a net value >= 0, exp(net / temperature)
    below (pence; temperature 0: never, the return-maximiser's choice)."""
    if temperature <= 0.0:
        return (net >= -TIE_TOLERANCE).astype(np.float64)
    with np.errstate(over="ignore"):
        return np.where(net >= -TIE_TOLERANCE, 1.0, np.exp(np.minimum(net, 0.0) / temperature))


def _graded(spec, model, org):
    tables = cached_value_tables(model, org, spec.monthly_discount_rate)
    share = spec.protected_share
    temperature = None if spec.temperature is None else float(to_pence(spec.temperature))

    def graded(review: Review) -> np.ndarray:
        n = len(review.candidates)
        one = BatchReview(month=review.month, segment=review.segment, state=review.state, ref_month=review.ref_month,
                          group=np.zeros(n, dtype=np.int64), starts=np.array([0, n]), capacity=review.capacity,
                          cash=np.array([review.cash]), latent_class=review.latent_class, uniforms=review.uniforms)
        return graded_batch_(one)

    def graded_batch_(review: BatchReview) -> np.ndarray:
        net = tables.lookup(review.month, review.segment, review.state, review.ref_month, review.latent_class)
        if share is not None:
            return graded_batch(net, review, float(share))
        chosen = review.uniforms() < serve_chance(net, temperature)
        if review.capacity is None:
            return chosen
        return chosen & (review.rank_by(-np.where(chosen, net, -np.inf)) < review.capacity)

    graded.tables = tables
    graded.batch = graded_batch_
    graded.needs_order = share is not None  # which of equally valued clients are protected: the first come
    graded.draws = temperature is not None  # each client's service is its own draw: ``Review.uniforms``
    graded.temperature = temperature
    return graded


def cash_weight(cash: int, comfortable: int, stressed: int) -> float:
    """Weight on return-maximising: 0 at or above ``comfortable`` cash, 1 at or below ``stressed``, linear between."""
    if cash <= stressed:
        return 1.0
    if cash >= comfortable:
        return 0.0
    return float(min(1.0, max(0.0, (comfortable - cash) / (comfortable - stressed))))


def cash_weights(cash: np.ndarray, comfortable: int, stressed: int) -> np.ndarray:
    """``cash_weight`` of each cash amount (int64 pence), with the same arithmetic."""
    cash = np.asarray(cash, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = np.minimum(1.0, np.maximum(0.0, (comfortable - cash) / (comfortable - stressed)))
    return np.where(cash <= stressed, 1.0, np.where(cash >= comfortable, 0.0, between))


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
        net = tables.lookup(review.month, review.segment, review.state, review.ref_month, review.latent_class)
        return serve_by_score(blended_scores(net, w, gap), review.capacity)

    def cash_stressed_batch(review: BatchReview) -> np.ndarray:
        w = cash_weights(review.cash, comfortable, stressed)[review.group]
        full = _holistic_batch(review)
        stressed_ = w > 0.0
        if stressed_.any():
            net = tables.lookup(review.month, review.segment, review.state, review.ref_month, review.latent_class)
            score = np.where(stressed_, w * net + (1.0 - w) * float(gap), 0.0)
            full = np.where(stressed_, serve_by_score_batch(score, review), full)
        return full

    cash_stressed.tables = tables
    cash_stressed.batch = cash_stressed_batch
    return cash_stressed


Policy = Callable[[Review], np.ndarray]
# A factory builds an organisation's policy once per model (e.g. value tables), from the scenario's
# policy spec, the compiled model and the organisation.
PolicyFactory = Callable[[object, "object", "object"], Policy]
FACTORIES: dict[str, PolicyFactory] = {
    "holistic": lambda spec, model, org: holistic,
    "needs_first": _needs_first,
    "return_maximising": _return_maximising,
    "graded": _graded,
    "cash_stressed": _cash_stressed,
}


def make_policy(spec, model, org) -> Policy:
    """The allocation policy named by ``spec.name`` for ``org`` under ``model``."""
    try:
        factory = FACTORIES[spec.name]
    except KeyError:
        raise ValueError(f"unknown allocation policy {spec.name!r}; known: {sorted(FACTORIES)}") from None
    return factory(spec, model, org)
