"""Allocation policies: which clients get full service this month.

A policy sees the month's candidates (active clients in service states, in first-come first-served
order) and returns a boolean mask of those given ``full`` service; the rest get ``minimal``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


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


Policy = Callable[[Review], np.ndarray]
POLICIES: dict[str, Policy] = {"holistic": holistic}


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown allocation policy {name!r}; known: {sorted(POLICIES)}") from None
