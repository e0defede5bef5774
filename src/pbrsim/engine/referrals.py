"""Referral arrivals: expected counts per month and segment, and the random counts drawn from them."""

from __future__ import annotations

import numpy as np

from . import rng
from ..scenario.schema import Scenario


def expected_totals(sc: Scenario) -> np.ndarray:
    """Expected referrals in each month 0..T-1 (before the segment split)."""
    lam = np.zeros(sc.months)
    r = sc.referrals
    if r.monthly is not None:
        lam[: len(r.monthly)] = r.monthly
    else:
        end = sc.months if r.end is None else r.end
        lam[r.start:end] = r.rate
    return lam


def shares(sc: Scenario) -> np.ndarray:
    return np.array([seg.share for seg in sc.segments.values()])


def expected_counts(sc: Scenario) -> np.ndarray:
    """Expected referrals ``[T, G]``; for ``fixed`` referrals these are the exact (rounded) counts."""
    lam = expected_totals(sc)[:, None] * shares(sc)[None, :]
    if sc.referrals.distribution == "fixed":
        cum = np.rint(np.cumsum(lam, axis=0))
        return np.diff(cum, axis=0, prepend=0).astype(float)
    return lam


def draw_counts(sc: Scenario, seed: int, replication: int, mean: np.ndarray | None = None) -> np.ndarray:
    """Referrals ``[T, G]`` for one replication: independent Poisson per month and segment, or fixed counts.
    ``mean``: ``expected_counts(sc)``, when the caller already has it."""
    mean = expected_counts(sc) if mean is None else mean
    if sc.referrals.distribution == "fixed":
        return mean.astype(np.int64)
    return rng.stream(seed, replication, rng.REFERRALS).poisson(mean).astype(np.int64)
