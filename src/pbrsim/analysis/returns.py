"""Investor returns from monthly cash flows: IRR (annualised), money multiple, payback month.

Flows are ``[n, H]`` arrays, one row per replication (or per tranche of a replication) and one column per
month, from the investor's side: money put in is negative, money received positive. Every row is solved
at once (numpy over rows); nothing loops over replications.

The IRR is the monthly rate ``r`` at which the flows' net present value is zero, annualised as
``(1 + r) ** 12 - 1``. Roots are found by scanning the net present value over a fixed grid of rates from
-100% to astronomically high, in the log-growth ``g = ln(1 + r)`` where the net present value of every row
can be evaluated without overflow, then refined by bisection to the precision of float64. Rows that need
it are reported by ``status``, never as a made-up number:

- ``OK``: one root;
- ``SEVERAL_ROOTS``: flows whose net present value crosses zero more than once (possible when money goes
  in again after money came out); the root nearest to 0% a year is reported, as the return an
  investor would quote, and the row is flagged;
- ``TOTAL_LOSS``: money went in and nothing came back: -100% a year (the limit of the closed form);
- ``NO_SIGN_CHANGE``: nothing went in, or nothing but money went in and out in one direction only
  (e.g. a guarantee with no drawdown): no rate exists and the IRR is NaN;
- ``NO_ROOT``: the flows change sign but no rate between -100% and the top of the grid zeroes them
  (both ends have the same sign, which needs an even number of roots): NaN.

Two roots closer together than the grid spacing (about 0.2% in log growth near 0% a year) can be
missed; ``docs/social-investment.md`` says how the choice affects figures.
"""

from __future__ import annotations

import numpy as np

OK, SEVERAL_ROOTS, TOTAL_LOSS, NO_SIGN_CHANGE, NO_ROOT = 0, 1, 2, 3, 4
STATUS_NAMES = {OK: "ok", SEVERAL_ROOTS: "several_roots", TOTAL_LOSS: "total_loss", NO_SIGN_CHANGE: "no_sign_change",
                NO_ROOT: "no_root"}  # keys of the summary's count of runs by status
PERIODS_PER_YEAR = 12
# grid in annual log growth a = ln(1 + annual rate): dense near 0% a year, up to e**40 either way
_U = np.linspace(-np.arcsinh(800.0), np.arcsinh(800.0), 801)
ANNUAL_LOG_GRID = 0.05 * np.sinh(_U)
BISECTIONS = 64  # the widest grid cell (about 0.7 in annual log growth) shrinks below 1e-19


def _npv_sign_grid(flows: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Net present value of each row at each per-period log growth ``g``, scaled by a positive factor per
    (row, rate) so that no exponent is positive: rows aligned on their first flow for g >= 0 and on
    their last flow, reversed, for g < 0. Returns ``[n, len(g)]``; only signs and zeros matter."""
    n, H = flows.shape
    nz = flows != 0
    first = np.argmax(nz, axis=1)
    last = H - 1 - np.argmax(nz[:, ::-1], axis=1)
    k = np.arange(H)
    fwd = np.take_along_axis(flows, np.minimum(first[:, None] + k, H - 1), axis=1) * (first[:, None] + k < H)
    bwd = np.take_along_axis(flows, np.maximum(last[:, None] - k, 0), axis=1) * (last[:, None] - k >= 0)
    out = np.empty((n, len(g)))
    pos = g >= 0
    with np.errstate(under="ignore"):
        out[:, pos] = fwd @ np.exp(-np.outer(k, g[pos]))
        out[:, ~pos] = bwd @ np.exp(-np.outer(k, -g[~pos]))
    return out


def _npv_at(flows: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Scaled net present value of row i of ``flows`` at log growth ``g[i]`` (the largest term's discount is 1)."""
    H = flows.shape[1]
    t = np.arange(H, dtype=np.float64)
    e = -g[:, None] * t[None, :]
    e = np.where(flows != 0, e, -np.inf)
    e -= e.max(axis=1, keepdims=True)
    with np.errstate(under="ignore"):
        return (flows * np.exp(e)).sum(axis=1)


def irr(flows, periods_per_year: int = PERIODS_PER_YEAR) -> tuple[np.ndarray, np.ndarray]:
    """Annualised IRR of each row of ``flows`` (``[n, H]`` or one vector) and its status code (module doc)."""
    F = np.atleast_2d(np.asarray(flows, dtype=np.float64))
    n = F.shape[0]
    rate = np.full(n, np.nan)
    status = np.full(n, NO_SIGN_CHANGE, dtype=np.int64)
    has_in, has_out = (F < 0).any(axis=1), (F > 0).any(axis=1)
    loss = has_in & ~has_out
    rate[loss], status[loss] = -1.0, TOTAL_LOSS
    both = np.flatnonzero(has_in & has_out)
    if not len(both):
        return rate, status
    Fb = F[both]
    # scale each row to its largest flow: the signs do not change and sums stay near 1
    Fb = Fb / np.abs(Fb).max(axis=1, keepdims=True)
    g_grid = ANNUAL_LOG_GRID / periods_per_year
    v = _npv_sign_grid(Fb, g_grid)
    s = np.sign(v)
    exact = s == 0  # a grid point that is a root
    cross = (s[:, :-1] * s[:, 1:]) < 0
    rows, cells = np.nonzero(cross)
    lo, hi = g_grid[cells].copy(), g_grid[cells + 1].copy()
    f_lo = np.sign(v[rows, cells])
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        f_mid = np.sign(_npv_at(Fb[rows], mid))
        left = f_mid == f_lo
        lo = np.where(left, mid, lo)
        hi = np.where(left, hi, mid)
    roots = 0.5 * (lo + hi)
    er, ec = np.nonzero(exact)
    all_rows = np.concatenate([rows, er])
    all_g = np.concatenate([roots, g_grid[ec]])
    count = np.bincount(all_rows, minlength=len(both))
    # the root nearest 0% a year in each row: sort by (row, |g|), take each row's first
    order = np.lexsort((np.abs(all_g), all_rows))
    all_rows, all_g = all_rows[order], all_g[order]
    firsts = np.flatnonzero(np.r_[True, all_rows[1:] != all_rows[:-1]]) if len(all_rows) else np.zeros(0, dtype=int)
    chosen = np.full(len(both), np.nan)
    chosen[all_rows[firsts]] = all_g[firsts]
    annual = np.expm1(chosen * periods_per_year)
    st = np.where(count == 0, NO_ROOT, np.where(count > 1, SEVERAL_ROOTS, OK))
    rate[both], status[both] = annual, st
    return rate, status


def money_multiple(flows) -> np.ndarray:
    """Money received over money put in, per row (NaN when nothing went in)."""
    F = np.atleast_2d(np.asarray(flows, dtype=np.float64))
    put = -np.where(F < 0, F, 0).sum(axis=1)
    got = np.where(F > 0, F, 0).sum(axis=1)
    return got / np.where(put > 0, put, np.nan)


def payback_month(flows) -> np.ndarray:
    """Month from which the cumulative net flow is never negative again, per row: the first month after
    the last in which the investor was out of pocket (NaN if it ends out of pocket or never put money in)."""
    F = np.atleast_2d(np.asarray(flows, dtype=np.float64))
    cum = np.cumsum(F, axis=1)
    H = F.shape[1]
    neg = cum < -1e-9
    ever = neg.any(axis=1)
    last_neg = H - 1 - np.argmax(neg[:, ::-1], axis=1)
    out = (last_neg + 1).astype(np.float64)
    out[~ever | neg[:, -1]] = np.nan
    return out
