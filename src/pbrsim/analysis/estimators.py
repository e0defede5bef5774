"""Estimators over replications and their 95% intervals: one function per estimator, used by every command.

Replications are independent, so every interval is across replications. Means and pooled ratios use
Student's t with n - 1 degrees of freedom (a normal quantile understates the width at few replications);
shares of replications use the Wilson score interval. ``docs/metrics.md`` names the estimator of each metric.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

Z95 = 1.959963984540054
LEVEL = 0.95
FEW_REPLICATIONS = 10  # below this many, intervals are flagged as rough (summary warnings, table notes)


@lru_cache(maxsize=512)
def t95(n: int) -> float:
    """Two-sided 95% quantile of Student's t with n - 1 degrees of freedom (nan below 2 replications).

    scipy.special is imported here, not at start-up, so commands that print no interval stay light; its
    ``stdtrit`` is the quantile ``scipy.stats.t.ppf`` gives (the same numbers) without loading scipy.stats,
    which costs a second."""
    if n < 2:
        return float("nan")
    from scipy.special import stdtrit

    return float(stdtrit(n - 1, 0.5 + LEVEL / 2))


def few_replications_warning(n: int) -> str | None:
    """A sentence saying why intervals from ``n`` replications mean little, or None when there are enough."""
    if n < 2:
        return f"{n} replication: no interval can be given; run at least {FEW_REPLICATIONS}."
    if n < FEW_REPLICATIONS:
        return (f"only {n} replications: the 95% intervals (Student's t, {n - 1} degrees of freedom) are wide and rest on "
                f"the figures being roughly normal across runs; run at least {FEW_REPLICATIONS} before relying on them.")
    return None


def se_mean(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def mean_ci(x) -> dict:
    """Mean over replications with a Student-t interval."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    m = float(x.mean()) if n else float("nan")
    if n < 2:
        return {"mean": m, "lo": None, "hi": None}
    half = t95(n) * se_mean(x)
    return {"mean": m, "lo": m - half, "hi": m + half}


def ratio_parts(num: np.ndarray, den: np.ndarray):
    """Pooled ratio Σnum/Σden, its per-replication influence values (delta method) and its standard error."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    n = len(num)
    if n == 0 or den.sum() == 0:
        return float("nan"), None, float("nan")
    r = num.sum() / den.sum()
    z = (num - r * den) / den.mean()
    return float(r), z, _se_of_influence(z)


def ratio_of_ratios_parts(a, b, c, d):
    """(Σa/Σb) / (Σc/Σd), its influence values (delta method) and its standard error."""
    a, b, c, d = (np.asarray(x, dtype=float) for x in (a, b, c, d))
    if len(a) == 0 or b.sum() == 0 or d.sum() == 0 or c.sum() == 0:
        return float("nan"), None, float("nan")
    r1, r2 = a.sum() / b.sum(), c.sum() / d.sum()
    z = (a - r1 * b) / b.mean() / r2 - r1 * (c - r2 * d) / d.mean() / r2**2
    return float(r1 / r2), z, _se_of_influence(z)


def _se_of_influence(z: np.ndarray) -> float:
    n = len(z)
    return math.sqrt((z**2).sum() / (n * (n - 1))) if n > 1 else float("nan")


def _interval(r: float, se: float, n: int) -> dict:
    if math.isnan(r):
        return {"mean": None, "lo": None, "hi": None}
    if n < 2:
        return {"mean": r, "lo": None, "hi": None}
    half = t95(n) * se
    return {"mean": r, "lo": r - half, "hi": r + half}


def ratio_ci(num, den) -> dict:
    """Pooled ratio Σnum/Σden over replications with a delta-method Student-t interval."""
    r, _, se = ratio_parts(num, den)
    return _interval(r, se, len(np.asarray(num)))


def ratio_of_ratios_ci(a, b, c, d) -> dict:
    """(Σa/Σb) / (Σc/Σd) over replications with a delta-method Student-t interval."""
    r, _, se = ratio_of_ratios_parts(a, b, c, d)
    return _interval(r, se, len(np.asarray(a)))


def wilson(k: int, n: int) -> dict:
    """Share k/n of replications with a Wilson 95% interval (sound near 0 and 1, where failure shares often sit)."""
    if n == 0:
        return {"mean": None, "lo": None, "hi": None}
    p = k / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2)) / denom
    return {"mean": p, "lo": max(0.0, centre - half), "hi": min(1.0, centre + half)}


def quantiles(x, qs=(0.05, 0.5)) -> dict:
    x = np.asarray(x, dtype=float)
    return {f"p{int(q * 100)}": float(np.quantile(x, q)) for q in qs}
