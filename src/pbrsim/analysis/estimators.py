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


# Student's t 97.5% quantiles for 1 to 29 degrees of freedom (scipy.stats.t.ppf(0.975, df), to 15 places)
_T975 = (12.706204736174694, 4.302652729749462, 3.182446305283708, 2.776445105197793, 2.570581835636315,
         2.446911851144979, 2.364624251592784, 2.306004135204166, 2.262157162798205, 2.228138851986274,
         2.200985160091639, 2.178812829667228, 2.160368656462791, 2.144786687917804, 2.131449545559776,
         2.119905299221255, 2.109815577833316, 2.100922040241038, 2.093024054408309, 2.085963447265864,
         2.07961384472768, 2.073873067904025, 2.068657610419049, 2.063898561628025, 2.059538552753297,
         2.055529438642874, 2.051830516480285, 2.048407141795245, 2.045229642132703)


@lru_cache(maxsize=512)
def t95(n: int) -> float:
    """Two-sided 95% quantile of Student's t with n - 1 degrees of freedom (nan below 2 replications).

    Exact values up to 29 degrees of freedom; beyond, the Cornish-Fisher expansion in 1/df to the fourth
    order, within 2e-8 (relative) of ``scipy.stats.t.ppf`` (tests/test_metrics.py checks every df to 20,000).
    No scipy: loading it would cost every run half a second."""
    if n < 2:
        return float("nan")
    v = n - 1
    if v <= len(_T975):
        return _T975[v - 1]
    z = Z95
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
            + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4))


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


def ratio_of_ratios_change_ci(before, after) -> dict:
    """How a ratio of ratios (Σa/Σb) / (Σc/Σd) changes between two designs run on the same replications:
    after ÷ before, each given as per-replication (a, b, c, d). Paired delta-method interval on the log scale
    (the influence of each replication on both designs), Student-t, back-transformed."""
    parts = [np.asarray(x, dtype=float) for x in (*after, *before)]
    n = len(parts[0])
    sums = [x.sum() for x in parts]
    if n < 2 or min(sums) <= 0:
        return {"mean": None, "lo": None, "hi": None}
    signs = (1, -1, -1, 1, -1, 1, 1, -1)
    log_r = sum(sg * math.log(t) for sg, t in zip(signs, sums))
    z = sum(sg * x / (t / n) for sg, x, t in zip(signs, parts, sums))  # influence of each replication on log r
    se = float(np.std(z, ddof=1) / math.sqrt(n))
    q = t95(n)
    return {"mean": math.exp(log_r), "lo": math.exp(log_r - q * se), "hi": math.exp(log_r + q * se)}
