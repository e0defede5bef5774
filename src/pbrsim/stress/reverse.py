"""The reverse stress test: for each built-in stress dimension, the smallest shock that sinks the bid.

For a dimension (referral shortfall, payment delay, recession, claim rejection, cost inflation, complex
mix) the shock size runs over a grid ``lo, lo + step, …, upper``. "Sinks the bid q of the time" means the
organisation runs out of cash (goes below its credit limit) in at least a share q of replications.

Search, under common random numbers (replication r sees the same referrals and client luck at every
shock size):

1. **Per-replication bisection.** With random numbers held fixed, a replication fails from some critical
   shock on. Each replication is bisected on the grid for its own critical shock c_r (about log2(grid)
   rounds; every round runs all replications at once, each at its own shock). P(run out) at a shock s is
   then the share of replications with c_r <= s, and the shock at which P reaches q is the order
   statistic of c_r at rank ceil(q R), with a distribution-free 95% interval from the binomial ranks
   (``stress.quantile_ranks``).
2. **Check with a common shock.** All replications are run at the grid point found and the one below it;
   the answer stands when P(below) < q <= P(at). If a replication's failure is not monotone in the shock
   (possible: a shortfall redraws Poisson referral counts), the check can fail; a bisection with all
   replications at the same shock then brackets the answer directly.

The search's precision is the grid step (1 percentage point, or 1 month for delays).
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np

from .runner import Paths, Runner, quantile_ranks
from .catalogue import DIMENSIONS, OrgTerms, Stress, unlimited

LEVEL_WORDS = {0.5: "half the time"}

PHRASES = {
    "shortfall": "a referral shortfall of {v}",
    "mix": "a shift of {v} of referrals to the most complex clients",
    "recession": "a recession cutting job transitions by {v}",
    "delay": "a payment delay of {v}",
    "rejection": "a rise in claim rejection of {v} points",
    "costs": "cost inflation of {v}",
}


def _fmt(dim: str, x: float | None) -> str:
    if x is None:
        return "–"
    if DIMENSIONS[dim].unit == "months":
        m = int(round(x))
        return f"{m} month{'s' if m != 1 else ''}"
    return f"{100 * x:.0f}%"


def _bare(dim: str, x: float | None) -> str:
    if x is None:
        return "beyond the range"
    return str(int(round(x))) if DIMENSIONS[dim].unit == "months" else f"{100 * x:.0f}"


def level_words(q: float) -> str:
    return LEVEL_WORDS.get(q, f"{q:.0%} of the time")


def _grid(dim: str, raw: dict) -> np.ndarray:
    d = DIMENSIONS[dim]
    top = d.upper(raw)
    n = int(math.floor((top - d.lo) / d.step + 1e-9))
    return np.round(d.lo + d.step * np.arange(n + 1), 10)


def _search(dim: str, raw: dict, org: str, grid: np.ndarray, fail0: np.ndarray, floor: int, levels: tuple[float, ...],
            recession_states: list[str] | None) -> Iterator:
    """Generator for ``stress.lockstep``: per-replication bisection, then a common-shock check per level."""
    R, N = len(fail0), len(grid) - 1
    reps = np.arange(R)
    raws: dict[int, dict] = {}

    def raw_at(i: int) -> dict:
        if i not in raws:
            s = Stress(f"{dim}_{i}", "", "built_in", dim, float(grid[i]))
            stressed, _ = s.apply(raw, org, "<reverse>", recession_states=recession_states)
            raws[i] = unlimited(stressed, org)
        return raws[i]

    def failed(paths: Paths) -> np.ndarray:
        return paths.cash.min(axis=1) < floor

    # 1. per-replication bisection: crit[r] = smallest grid index at which r fails (N + 1: not within the grid)
    crit = np.where(fail0, 0, -1)
    lo = np.zeros(R, dtype=int)
    hi = np.full(R, N, dtype=int)
    active = ~fail0
    evaluated = 0
    if active.any() and N > 0:
        got = yield {N: (raw_at(N), reps[active].tolist())}
        evaluated += int(active.sum())
        f = failed(got[N])
        idx = reps[active]
        crit[idx[~f]] = N + 1
        active[idx[~f]] = False
        while True:
            open_ = active & (hi - lo > 1)
            if not open_.any():
                break
            mid = (lo + hi) // 2
            req = {int(m): (raw_at(int(m)), reps[open_ & (mid == m)].tolist()) for m in np.unique(mid[open_])}
            got = yield req
            for m, (_, rs) in req.items():
                evaluated += len(rs)
                f = failed(got[m])
                rs = np.asarray(rs)
                hi[rs[f]] = m
                lo[rs[~f]] = m
        crit[active] = hi[active]
    elif N == 0:
        crit[~fail0] = 1

    # 2. a common shock for every replication at the points found, per level
    counts: dict[int, int] = {0: int(fail0.sum())}
    results = []
    for q in levels:
        k = max(1, math.ceil(q * R - 1e-9))
        order = np.sort(crit)
        cand = int(order[k - 1])
        verified = True
        if cand == 0:
            results.append(_result(dim, q, grid, crit, R, k, None, 0, counts, verified, reached="at_base"))
            continue
        if cand > N:
            if N not in counts:
                got = yield {N: (raw_at(N), reps.tolist())}
                evaluated += R
                counts[N] = int(failed(got[N]).sum())
            if counts[N] < k:
                results.append(_result(dim, q, grid, crit, R, k, None, None, counts, verified, reached="no"))
                continue
            cand = N  # not monotone: the whole-sample check says it is reached after all
        need = [i for i in (cand - 1, cand) if i not in counts]
        if need:
            got = yield {i: (raw_at(i), reps.tolist()) for i in need}
            evaluated += R * len(need)
            counts.update({i: int(failed(got[i]).sum()) for i in need})
        if not (counts[cand - 1] < k <= counts[cand]):
            verified = False
            while True:  # bisection with a common shock, on the points evaluated so far
                above = [i for i, c in counts.items() if c >= k]
                if not above:
                    if N in counts:
                        break
                    got = yield {N: (raw_at(N), reps.tolist())}
                    evaluated += R
                    counts[N] = int(failed(got[N]).sum())
                    continue
                b = min(above)
                a = max(i for i in counts if i < b)
                if b - a <= 1:
                    break
                m = (a + b) // 2
                got = yield {m: (raw_at(m), reps.tolist())}
                evaluated += R
                counts[m] = int(failed(got[m]).sum())
            above = [i for i, c in counts.items() if c >= k]
            if not above:
                results.append(_result(dim, q, grid, crit, R, k, None, None, counts, verified, reached="no"))
                continue
            cand = min(above)
            if cand == 0:
                results.append(_result(dim, q, grid, crit, R, k, None, 0, counts, verified, reached="at_base"))
                continue
        a = max(i for i in counts if i < cand)
        results.append(_result(dim, q, grid, crit, R, k, a, cand, counts, verified, reached="yes"))
    curve = {"shock": [float(x) for x in grid], "p": [float((crit <= i).mean()) for i in range(N + 1)]}
    return {"results": results, "curve": curve, "replication_runs": evaluated}


def _result(dim, q, grid, crit, R, k, a, b, counts, verified, reached) -> dict:
    N = len(grid) - 1
    l, u = quantile_ranks(R, q)
    order = np.sort(crit)
    lo_i = min(int(order[l - 1]) if l >= 1 else 0, N)
    hi_i = int(order[u - 1]) if u <= R else None
    hi_i = None if hi_i is not None and hi_i > N else hi_i
    widened = False
    if b is not None and (b < lo_i or (hi_i is not None and b > hi_i)):
        # not monotone in the shock for some replications: keep the checked answer inside its interval
        lo_i, hi_i, widened = min(lo_i, b), (max(hi_i, b) if hi_i is not None else None), True
    return {
        "dimension": dim,
        "level": q,
        "reached": reached,  # yes | no (not within the range searched) | at_base (already without a shock)
        "shock": float(grid[b]) if b is not None else None,
        "lo": float(grid[lo_i]),
        "hi": float(grid[hi_i]) if hi_i is not None else None,
        "interval_widened": widened,
        "bracket_lo": float(grid[a]) if a is not None else None,
        "bracket_hi": float(grid[b]) if b is not None else None,
        "p_at_bracket_lo": counts[a] / R if a is not None else None,
        "p_at_bracket_hi": counts[b] / R if b is not None else None,
        "precision": float(DIMENSIONS[dim].step),
        "range_searched": [float(grid[0]), float(grid[-1])],
        "p_at_base": counts[0] / R,
        "verified": bool(verified),
        "failures_needed": k,
        "replications": R,
    }


def reverse_sentence(r: dict, org: str) -> str:
    dim, q = r["dimension"], r["level"]
    words = level_words(q)
    if r["reached"] == "at_base":
        return (f"{DIMENSIONS[dim].label.capitalize()}: {org} already runs out of cash in {r['p_at_base']:.0%} of runs "
                f"without any shock (≥ {q:.0%}).")
    if r["reached"] == "no":
        return (f"{DIMENSIONS[dim].label.capitalize()}: running out of cash {words} is not reached within the range "
                f"searched (up to {_fmt(dim, r['range_searched'][1])}).")
    v = _fmt(dim, r["shock"])
    if dim == "rejection":
        v = v.rstrip("%")
    what = PHRASES[dim].format(v=v)
    months = DIMENSIONS[dim].unit == "months"
    if r["lo"] == r["shock"] == r["hi"]:
        interval = "95% interval: exactly that"
    else:
        pct = "" if months or r["hi"] is None or dim == "rejection" else "%"
        interval = f"{_bare(dim, r['lo'])}–{_bare(dim, r['hi'])}{pct}{' months' if months and r['hi'] is not None else ''}"
    return f"{what[0].upper() + what[1:]} ({interval}) sinks this bid {words}."


def reverse_stress_test(base_raw: dict, org: str, base_paths: Paths, terms: OrgTerms, *, seed: int, replications: int,
                        levels: tuple[float, ...] = (0.5, 0.05), executor: str = "process", workers: int | None = None,
                        chunk: int = 25, recession_states: list[str] | None = None,
                        progress: Callable[[int], None] | None = None, dimensions: tuple[str, ...] | None = None) -> dict:
    """Search every built-in dimension; ``base_paths`` are the unstressed runs (replications 0..R-1 used)."""
    from .runner import lockstep

    if terms.limit is None:
        return {"note": f"{org} has no credit limit, so it cannot run out of cash in the model; nothing to search",
                "results": [], "dimensions": [], "replications": replications, "levels": list(levels)}
    floor = -terms.limit
    R = min(replications, len(base_paths.reps))
    fail0 = base_paths.cash[:R].min(axis=1) < floor
    searches, skipped = {}, []
    for dim in dimensions or tuple(DIMENSIONS):
        grid = _grid(dim, base_raw)
        if len(grid) < 2:
            skipped.append({"dimension": dim, "note": "not applicable to this scenario"})
            continue
        probe = Stress("probe", "", "built_in", dim, float(grid[-1])).change(base_raw, org, recession_states=recession_states)
        if not probe.applicable or probe.empty:
            skipped.append({"dimension": dim, "note": probe.note or "changes nothing in this scenario"})
            continue
        searches[dim] = _search(dim, base_raw, org, grid, fail0, floor, tuple(levels), recession_states)
    runner = Runner(org, seed, executor=executor, workers=workers, chunk=chunk, progress=progress)
    out = lockstep(searches, runner)
    results, dims = [], []
    for dim in searches:
        for r in out[dim]["results"]:
            r["sentence"] = reverse_sentence(r, org)
            results.append(r)
        dims.append({"dimension": dim, "label": DIMENSIONS[dim].label, "unit": DIMENSIONS[dim].unit,
                     "curve": out[dim]["curve"], "replication_runs": out[dim]["replication_runs"]})
    return {"replications": R, "levels": list(levels), "results": results, "dimensions": dims, "skipped": skipped,
            "replications_run": runner.replications_run,
            "method": "per-replication bisection on the shock grid under common random numbers, checked with a common shock"}


def reverse_lines(rev: dict, org: str) -> list[str]:
    """One line per dimension and level, the 'already without a shock' ones said once per level."""
    lines = []
    for q in rev["levels"]:
        rs = [r for r in rev["results"] if r["level"] == q]
        at_base = [r for r in rs if r["reached"] == "at_base"]
        lines += [r["sentence"] for r in rs if r["reached"] != "at_base"]
        if at_base:
            lines.append(f"Without any shock {org} already runs out of cash in {at_base[0]['p_at_base']:.0%} of runs, "
                         f"at or above {q:.0%}" + ("." if len(at_base) == len(rs) else
                                                   f" ({', '.join(r['dimension'] for r in at_base)})."))
    return lines
