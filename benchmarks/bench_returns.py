"""Investor IRRs: the batched solver (``analysis.returns.irr``, every run at once) against a plain per-run loop.

Run: python benchmarks/bench_returns.py [--runs 2000] [--months 120]
Flows look like an outcomes contract's: drawdowns in the first months, repayments later, some runs losing
everything. The reference is numpy's polynomial roots for each run in a Python loop (the textbook way: the
real root of the NPV polynomial in v = 1 / (1 + r) nearest 0% a year), timed in the same process; the
batched solver's answers are checked against it. Printed as a ratio, never asserted.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def flows(runs: int, months: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    F = np.zeros((runs, months))
    draw_months = months // 3
    F[:, :draw_months] = -rng.uniform(50, 150, size=(runs, draw_months))
    success = rng.uniform(0, 1.6, size=runs)
    late = np.arange(months) >= months // 2
    back = success * -F[:, :draw_months].sum(axis=1) / late.sum()
    F[:, late] = back[:, None] * rng.uniform(0.5, 1.5, size=(runs, late.sum()))
    F[success < 0.2] = np.where(late, 0, F[success < 0.2])  # nothing back: a total loss
    return F


def reference_irr(row: np.ndarray) -> float:
    """Real roots of sum c_t v^t with v in (0, inf), the one nearest 0% a year; nan when there is none."""
    coefs = row[::-1]  # highest power first
    nz = np.flatnonzero(coefs)
    if not len(nz):
        return float("nan")
    roots = np.roots(coefs[nz[0]:])
    v = roots[(np.abs(roots.imag) < 1e-9) & (roots.real > 0)].real
    if not len(v):
        return float("nan") if (row > 0).any() else -1.0
    annual = (1 / v) ** 12 - 1
    return float(annual[np.argmin(np.abs(np.log1p(annual)))])


def main():
    from pbrsim.analysis import returns

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--months", type=int, default=120)
    a = ap.parse_args()
    F = flows(a.runs, a.months)
    t = time.perf_counter()
    rate, status = returns.irr(F)
    batched = time.perf_counter() - t
    n_ref = min(a.runs, 200)
    t = time.perf_counter()
    ref = np.array([reference_irr(F[i]) for i in range(n_ref)])
    loop = (time.perf_counter() - t) * a.runs / n_ref
    agree = np.isclose(rate[:n_ref], ref, atol=1e-6, equal_nan=True)
    print(f"{a.runs} runs x {a.months} months: batched {batched:.3f} s; per-run polynomial roots (timed on {n_ref}, scaled) "
          f"{loop:.3f} s; ratio {loop / batched:.1f}x faster; agree to 1e-6 on {agree.mean():.1%} of the runs compared")
    print("statuses:", {returns.STATUS_NAMES[k]: int((status == k).sum()) for k in returns.STATUS_NAMES})


if __name__ == "__main__":
    main()
