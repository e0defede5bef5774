"""Goal seek: the value of one lever at which a target is just met, by bisection on common random numbers.

Every lever value is run on the same replications (0..n-1 of the seed), so the figure is a fixed function of
the lever and bisection on the lever's grid finds where the target starts to hold, exactly as a fine grid on
the same replications would when the figure moves one way with the lever. The target is judged at the 95%
interval's far end (for ``failure(org) <= 0.05``: the upper confidence bound of the failure probability).
The answer's precision is one grid step; every value run is reported (the curve walked), and the answer is
rerun on fresh replications of an independent seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from .assess import Assessment, make_design
from .evaluate import Evaluator
from .figures import Estimate
from .problem import Problem
from .search import Verification


@dataclass
class GoalSeekResult:
    problem: Problem
    status: str  # "found" | "met_everywhere" | "not_met"
    answer: Assessment | None  # the lever value found (or the closest, when not met)
    bracket: tuple[int, int] | None  # (last grid position failing, first meeting)
    curve: list[Assessment]  # in the order run
    base_value: object
    base_index: int | None
    monotone: bool
    verification: list[Verification]
    replications: int
    replications_run: int
    replications_reused: int
    seconds: float

    @property
    def lever(self):
        return self.problem.levers[0]

    @property
    def target(self):
        return self.problem.constraints[0]

    @property
    def precision(self) -> float | None:
        lv = self.lever
        if self.bracket is None or lv.kind != "range":
            return None
        return round(abs(lv.values[self.bracket[1]] - lv.values[self.bracket[0]]), 12)

    @property
    def feasible(self) -> bool:
        return self.status != "not_met" and any(v.passed for v in self.verification)


def goal_seek(problem: Problem, evaluator: Evaluator, *, on_stage: Callable[[str], None] | None = None) -> GoalSeekResult:
    """Bisect the problem's single lever for its single constraint (see the module docstring)."""
    from ..scenario.overrides import PathError, get_value

    on_stage = on_stage or (lambda s: None)
    t0 = time.perf_counter()
    lever, target = problem.levers[0], problem.constraints[0]
    n = problem.search.final_replications
    seen: dict[int, Assessment] = {}
    order: list[int] = []

    def run(i: int) -> Assessment:
        if i not in seen:
            on_stage(f"goal seek: {lever.label} = {lever.values[i]} ({n} replications)")
            d = make_design(problem, (i,))
            if d.raw is None:
                nan = Estimate(float("nan"), float("nan"), float("nan"), 0)
                seen[i] = Assessment(d, {f.key: nan for f in problem.figures}, 0, problem)
            else:
                df = evaluator.evaluate({i: (d.raw, range(n))})[i]
                seen[i] = Assessment(d, {f.key: f.estimate(df) for f in problem.figures}, n, problem)
            order.append(i)
        return seen[i]

    def met(i: int) -> bool:
        return run(i).feasible()

    lo, hi = 0, lever.size - 1
    m_lo, m_hi = met(lo), met(hi)
    bracket = None
    if m_lo and m_hi:
        status = "met_everywhere"
        answer = seen[lo]
    elif not m_lo and not m_hi:
        status = "not_met"
        answer = min((seen[lo], seen[hi]), key=lambda a: a.shortfall("far"))
    else:
        status = "found"
        fail, ok = (lo, hi) if m_hi else (hi, lo)
        while abs(ok - fail) > 1:
            mid = (ok + fail) // 2
            if met(mid):
                ok = mid
            else:
                fail = mid
        bracket = (fail, ok)
        answer = seen[ok]
    monotone = _monotone(lever.size, seen, bracket)
    try:
        base_value = get_value(problem.base, lever.path)
    except PathError:
        base_value = None
    verification = []
    if status != "not_met":
        verification = _verify(problem, evaluator, answer, on_stage)
    return GoalSeekResult(problem, status, answer, bracket, [seen[i] for i in order], base_value,
                          lever.nearest(base_value) if base_value is not None else None, monotone, verification, n,
                          evaluator.replications_run, evaluator.replications_reused, time.perf_counter() - t0)


def _monotone(size: int, seen: dict[int, Assessment], bracket) -> bool:
    """Do the values run agree with one crossing (met on one side of the bracket, not met on the other)?"""
    if bracket is None:
        return len({a.feasible() for a in seen.values()}) == 1
    fail, ok = bracket
    for i, a in seen.items():
        on_ok_side = (i - fail) * (ok - fail) > 0 and abs(i - fail) >= abs(ok - fail)
        if a.feasible() != on_ok_side:
            return False
    return True


def _verify(problem: Problem, evaluator: Evaluator, a: Assessment, on_stage) -> list[Verification]:
    v = problem.verify
    seed = problem.verify_seed
    on_stage(f"verifying: {v.replications} fresh replications, seed {seed}")
    df = evaluator.evaluate({0: (a.design.raw, range(v.replications))}, seed=seed)[0]
    est = {f.key: f.estimate(df) for f in problem.figures}
    checks = []
    for c in problem.constraints:
        e = est[c.figure.key]
        checks.append({"constraint": c.text, "estimate": e.as_dict(), "met": c.met(e, "mean"), "met_with_confidence": c.met(e, "far")})
    return [Verification(a.design.point, seed, v.replications, est, checks, all(r["met"] for r in checks), 1)]
