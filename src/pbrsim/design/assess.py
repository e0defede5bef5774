"""Designs and what is known about them: each design's scenario, its figures so far, and how designs rank.

A design is one grid position per lever. Its Monte Carlo figures are estimated on replications 0..n-1 of
the search seed, so any two designs assessed at the same n are compared on common random numbers. A
constraint counts as met only when the 95% interval's far end meets it (the upper confidence bound of a
``<=`` target, the lower bound of a ``>=`` target); exact values are used as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ..scenario.schema import ScenarioError, scenario_from_dict
from .figures import Estimate, Figure, Target
from .levers import apply_point, point_overrides
from .problem import Objective, Problem


@dataclass(frozen=True)
class Design:
    point: tuple[int, ...]
    values: tuple
    raw: dict | None  # None when the scenario it makes breaks a rule
    error: str | None = None

    def overrides(self, problem: Problem) -> dict:
        return point_overrides(problem.levers, self.point)


def make_design(problem: Problem, point: tuple[int, ...]) -> Design:
    values = tuple(lv.values[i] for lv, i in zip(problem.levers, point))
    try:
        raw = apply_point(problem.base, problem.levers, point, problem.source)
        scenario_from_dict(raw, "<design>")
    except ScenarioError as exc:
        p, rule = exc.problems[0]
        return Design(point, values, None, f"{p + ': ' if p else ''}{rule}")
    return Design(point, values, raw)


@dataclass
class Assessment:
    """A design's figures from n replications (or exact), judged against the problem."""

    design: Design
    estimates: dict[str, Estimate]
    replications: int | None  # None: exact
    problem: Problem = field(repr=False)

    @property
    def valid(self) -> bool:
        return self.design.error is None

    def projected(self, n: int | None) -> "Assessment":
        """The same estimates with the intervals ``n`` replications would give (see ``Estimate.projected``)."""
        if n is None or self.replications is None:
            return self
        figs = {f.key: f for f in self.problem.figures}
        est = {k: e.projected(n, figs[k].kind.estimator) if k in figs else e for k, e in self.estimates.items()}
        return Assessment(self.design, est, self.replications, self.problem)

    def value(self, figure: Figure) -> float:
        return self.estimates[figure.key].mean

    def feasible(self) -> bool:
        """Every constraint met at its confidence bound (exact: at its value)."""
        return self.valid and all(c.met(self.estimates[c.figure.key], "far") for c in self.problem.constraints)

    def plausible(self) -> bool:
        """Every constraint met at the interval's near end: not ruled out yet."""
        return self.valid and all(c.met(self.estimates[c.figure.key], "near") for c in self.problem.constraints)

    def met_on_estimate(self) -> bool:
        return self.valid and all(c.met(self.estimates[c.figure.key], "mean") for c in self.problem.constraints)

    def shortfall(self, end: str = "far") -> float:
        """Total relative amount by which the constraints are missed at the interval's ``end``."""
        if not self.valid:
            return math.inf
        total = 0.0
        for c in self.problem.constraints:
            s = c.slack(self.estimates[c.figure.key], end)
            total += math.inf if math.isnan(s) else max(0.0, -s) / c.scale
        return total

    def objective(self) -> float:
        obj = self.problem.objective
        return obj.score(self.value(obj.figure)) if obj else 0.0

    def rank(self, rule: str = "far") -> tuple:
        """Sort key, best first: designs meeting every constraint (at ``rule``) by objective, then the rest by shortfall."""
        if not self.valid:
            return (2, math.inf, math.inf, self.design.point)
        ok = self.feasible() if rule == "far" else self.plausible()
        if ok:
            return (0, self.objective(), 0.0, self.design.point)
        return (1, self.shortfall(rule), self.objective(), self.design.point)

    def binding(self) -> Target | None:
        """The constraint missed by most (relative to its scale), at the confidence bound."""
        worst, which = 0.0, None
        for c in self.problem.constraints:
            s = c.slack(self.estimates[c.figure.key], "far")
            miss = math.inf if math.isnan(s) else max(0.0, -s) / c.scale
            if miss > worst:
                worst, which = miss, c
        return which


def estimates_of(problem: Problem, per_rep: pd.DataFrame, figures: list[Figure] | None = None) -> dict[str, Estimate]:
    return {f.key: f.estimate(per_rep) for f in (figures or problem.figures)}


def exact_estimates(problem: Problem, quantities: dict[str, float], figures: list[Figure] | None = None) -> dict[str, Estimate]:
    return {f.key: f.exact(quantities) for f in (figures or problem.figures)}


def dominates(a: dict[str, Estimate], b: dict[str, Estimate], axes: list[Figure]) -> bool:
    """``a`` at least as good as ``b`` on every axis (point estimates) and better on one."""
    strictly = False
    for f in axes:
        va, vb = a[f.key].mean, b[f.key].mean
        if math.isnan(va) or math.isnan(vb):
            return False
        better = va < vb if f.better == "lower" else va > vb
        worse = va > vb if f.better == "lower" else va < vb
        if worse and not math.isclose(va, vb, rel_tol=1e-12, abs_tol=1e-12):
            return False
        strictly |= better and not math.isclose(va, vb, rel_tol=1e-12, abs_tol=1e-12)
    return strictly


def pareto_front(items: list, estimates: callable, axes: list[Figure]) -> list:
    """Items no other item dominates on ``axes``; duplicates (equal on every axis) keep the first."""
    front = []
    for i, a in enumerate(items):
        ea = estimates(a)
        if any(dominates(estimates(b), ea, axes) for j, b in enumerate(items) if j != i):
            continue
        if any(all(math.isclose(estimates(f)[x.key].mean, ea[x.key].mean, rel_tol=1e-12, abs_tol=1e-12) for x in axes)
               for f in front):
            continue
        front.append(a)
    return front


def objective_text(objective: Objective | None) -> str:
    return objective.text if objective else ""
