"""Random streams: one per (replication, purpose, month[, rule]), never global, never keyed by design.

Per-client draws are counter-based: client i's uniform at month t for a purpose is SplitMix64 of
(stream key, i), so it is the same whatever happened to other clients and only the draws needed are
computed — common random numbers across contract designs by construction. Keys come from
``SeedSequence(seed, spawn_key=(replication, purpose, ...))``.
"""

from __future__ import annotations

import numpy as np

REFERRALS = 0
TRANSITIONS = 1
REJECTIONS = 2
TIE_BREAKS = 3
ALLOCATION = 4

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 2.0**-53


def stream(seed: int, replication: int, purpose: int, *more: int) -> np.random.Generator:
    """A sequential generator for draws that are not per client (referral counts, within-month order)."""
    ss = np.random.SeedSequence(seed, spawn_key=(replication, purpose) + tuple(more))
    return np.random.Generator(np.random.PCG64(ss))


def key(seed: int, replication: int, purpose: int, *more: int) -> np.uint64:
    return np.random.SeedSequence(seed, spawn_key=(replication, purpose) + tuple(more)).generate_state(1, np.uint64)[0]


def uniforms_at(seed: int, replication: int, purpose: int, month: int, clients: np.ndarray, *more: int) -> np.ndarray:
    """Uniforms in [0, 1) for the given client indices at ``month`` (SplitMix64 of key and index)."""
    k = key(seed, replication, purpose, month, *more)
    with np.errstate(over="ignore"):
        z = k + (clients.astype(np.uint64) + np.uint64(1)) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * _TO_UNIT
