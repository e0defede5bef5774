"""Money in the engine is integer pence; files and reports use pounds."""

from __future__ import annotations

import numpy as np


def to_pence(pounds: float) -> int:
    return int(round(pounds * 100))


def to_pounds(pence) -> float | np.ndarray:
    return np.asarray(pence) / 100.0 if not np.isscalar(pence) else pence / 100.0


def split_evenly(total: int, parts: int) -> np.ndarray:
    """Split integer pence into ``parts`` instalments that differ by at most a penny and add up exactly."""
    base, rem = divmod(total, parts)
    out = np.full(parts, base, dtype=np.int64)
    out[:rem] += 1
    return out
