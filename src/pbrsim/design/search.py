"""The search for the best design under constraints, by Monte Carlo on common random numbers or by exact mode.

Monte Carlo (``halving``; docs/design.md gives the measurements behind the choice):

1. **Space-filling sample**: the base design (when it lies on the grid) and a maximin Latin hypercube of
   grid positions, each run on the first ``first_replications`` replications.
2. **Successive halving**: the better half (designs not yet ruled out by any constraint, by objective;
   then the rest by how far they miss) goes on with twice the replications, up to ``max_replications``.
3. **Local refinement**: a pattern search from the best design: the neighbours one mesh step away on each
   lever are screened on fewer replications (paired with the incumbent on the same ones), the promising
   ones run to ``max_replications``, and the search moves when a neighbour is better with every constraint
   met at its confidence bound; the mesh halves when none is, down to one grid step.
4. **Finalists**: the incumbent, the runners-up and designs spread along the Pareto front run to
   ``final_replications``; the chosen design is the best one meeting every constraint at its bound.

``grid`` runs every grid design on ``grid_replications`` replications instead of steps 1-3 (the reference
the other methods are measured against). ``exact`` evaluates designs by Markov-chain algebra, without noise:
the whole grid when it is small, else a sample and pattern searches from its three best designs.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from .assess import Assessment, Design, dominates, estimates_of, exact_estimates, make_design, pareto_front
from .evaluate import Evaluator, exact_reasons
from .figures import Estimate, Figure, parse_figure
from .problem import Problem

MAX_LOCAL_ROUNDS = 40
EXACT_GRID = 200  # exact mode evaluates every design of grids up to this size
MAX_FINALISTS = 5
MAX_PARETO = 12
MAX_SHOWN = 25  # exact mode evaluates many designs; the summary lists the best of them as finalists
VERIFY_ATTEMPTS = 3


class ExactFallback(Exception):
    """A design outside exact mode's conditions turned up in an exact search."""


@dataclass
class Verification:
    """The chosen design rerun on fresh replications of an independent seed."""

    point: tuple
    seed: int
    replications: int
    estimates: dict[str, Estimate]
    checks: list[dict]
    passed: bool
    attempt: int


@dataclass
class SearchResult:
    problem: Problem
    method: str
    method_note: str
    assessments: dict[tuple, Assessment]  # every design at the most replications it reached (or exact)
    finalists: list[Assessment]
    chosen: Assessment | None  # None: no design meets every constraint
    closest: Assessment | None
    pareto: list[Assessment]
    verification: list[Verification]
    comparisons: list[dict]
    history: list[dict]
    replications_run: int
    replications_reused: int
    seconds: float
    evaluations: int  # design evaluations (a design at a number of replications, or one exact evaluation)
    stages: list[dict] = field(default_factory=list)

    @property
    def verified(self) -> Verification | None:
        return next((v for v in self.verification if v.passed), None)

    @property
    def feasible(self) -> bool:
        return self.chosen is not None and self.verified is not None


class Search:
    """One search: its designs, their figures so far, and the stages that choose what to evaluate next."""

    def __init__(self, problem: Problem, evaluator: Evaluator, *, on_stage: Callable[[str], None] | None = None):
        self.p = problem
        self.ev = evaluator
        self.on_stage = on_stage or (lambda s: None)
        self.designs: dict[tuple, Design] = {}
        self.frames: dict[tuple, pd.DataFrame] = {}
        self.exact_q: dict[tuple, dict] = {}
        self.history: list[dict] = []
        self.stages: list[dict] = []
        self.mode = "mc"
        self.evaluations = 0

    # -- designs and their figures ------------------------------------------------------------
    def design(self, point: tuple) -> Design:
        d = self.designs.get(point)
        if d is None:
            d = self.designs[point] = make_design(self.p, point)
        return d

    def _nan(self) -> dict[str, Estimate]:
        return {f.key: Estimate(math.nan, math.nan, math.nan, 0) for f in self.p.figures}

    def assess(self, points, n: int | None, stage: str) -> dict[tuple, Assessment]:
        """Figures of each design on replications 0..n-1 (running what is missing), or exact."""
        points = list(dict.fromkeys(points))
        if self.mode == "exact":
            return self._assess_exact(points, stage)
        need = {}
        for pt in points:
            d = self.design(pt)
            have = len(self.frames.get(pt, ()))
            if d.raw is not None and have < n:
                need[pt] = (d.raw, range(have, n))
        if need:
            got = self.ev.evaluate(need)
            for pt, df in got.items():
                self.frames[pt] = pd.concat([self.frames[pt], df]) if pt in self.frames else df
                self.evaluations += 1
        out = {}
        for pt in points:
            out[pt] = self.at(pt, n)
            self.history.append({"stage": stage, "point": pt, "replications": n})
        return out

    def _assess_exact(self, points, stage: str) -> dict[tuple, Assessment]:
        from ..engine.exact import ExactNotApplicable

        need = {pt: self.design(pt).raw for pt in points if self.design(pt).raw is not None and pt not in self.exact_q}
        try:
            got = self.ev.exact(need) if need else {}
        except ExactNotApplicable as exc:
            raise ExactFallback(str(exc)) from None
        self.exact_q.update(got)
        self.evaluations += len(got)
        for pt in points:
            self.history.append({"stage": stage, "point": pt, "replications": None})
        return {pt: self.at(pt) for pt in points}

    def at(self, point: tuple, n: int | None = None) -> Assessment:
        """What is known of a design: on its first n replications (default: all it has), or exact."""
        d = self.design(point)
        if d.raw is None:
            return Assessment(d, self._nan(), 0, self.p)
        if self.mode == "exact":
            return Assessment(d, exact_estimates(self.p, self.exact_q[point]), None, self.p)
        df = self.frames[point]
        if n is not None:
            df = df.iloc[:n]
        return Assessment(d, estimates_of(self.p, df), len(df), self.p)

    def describe(self, point: tuple) -> str:
        return ", ".join(f"{lv.label} = {lv.values[i]}" for lv, i in zip(self.p.levers, point))

    # -- stages -------------------------------------------------------------------------------
    def base_point(self) -> tuple | None:
        """The base scenario's grid position, when each lever's base value lies on its grid."""
        from ..scenario.overrides import PathError, get_value

        point = []
        for lv in self.p.levers:
            try:
                i = lv.nearest(get_value(self.p.base, lv.path))
            except PathError:
                return None
            if i is None:
                return None
            point.append(i)
        return tuple(point)

    def initial_points(self, n: int, seed_offset: int = 0) -> list[tuple]:
        """The base design (if on the grid) and a maximin Latin hypercube of ``n`` grid positions."""
        sizes = [lv.size for lv in self.p.levers]
        rng = np.random.default_rng(np.random.SeedSequence([self.p.search.seed, 0xDE5165, seed_offset]))
        best, best_d = None, -1.0
        for _ in range(30):
            cols = []
            for m in sizes:
                u = (rng.permutation(n) + rng.random(n)) / n
                cols.append(np.minimum((u * m).astype(int), m - 1))
            pts = np.stack(cols, axis=1)
            scaled = pts / np.maximum(np.array(sizes) - 1, 1)
            d = np.sqrt(((scaled[:, None, :] - scaled[None, :, :]) ** 2).sum(-1))
            d[np.diag_indices(n)] = np.inf
            if d.min() > best_d:
                best, best_d = pts, d.min()
        out = [tuple(int(i) for i in row) for row in best]
        base = self.base_point()
        if base is not None:
            out = [base] + out
        return list(dict.fromkeys(out))

    def halving(self, points: list[tuple]) -> list[tuple]:
        s = self.p.search
        r = s.first_replications
        survivors = points
        while True:
            self.on_stage(f"halving: {len(survivors)} designs × {r} replications")
            A = self.assess(survivors, r, f"halving ({r} replications)")
            ranked = sorted(survivors, key=lambda p: A[p].rank("near"))
            self.stages.append({"stage": "halving", "designs": len(survivors), "replications": r})
            if r >= s.max_replications or len(survivors) <= 2:
                return ranked
            survivors = ranked[: max(2, math.ceil(len(survivors) / 2))]
            r = min(2 * r, s.max_replications)

    def grid_points(self) -> list[tuple]:
        return list(itertools.product(*[range(lv.size) for lv in self.p.levers]))

    def neighbours(self, point: tuple, steps: list[int]) -> list[tuple]:
        out = []
        for i, (lv, st) in enumerate(zip(self.p.levers, steps)):
            for sign in (-1, 1):
                j = min(max(point[i] + sign * st, 0), lv.size - 1)
                if j != point[i]:
                    q = list(point)
                    q[i] = j
                    out.append(tuple(q))
        return out

    def local(self, start: tuple, n: int | None, screen: int | None, final: int | None) -> list[tuple]:
        """Pattern search from ``start``; returns the path of incumbents, the last the best found.

        A neighbour replaces the incumbent when it ranks better with every constraint met at the bound the final
        replications would give (``Assessment.projected``). After a move the same step is tried again first (a
        pattern move); when no neighbour is better the mesh halves, down to one grid step."""
        inc = start
        a_inc = self.assess([inc], n, "local search")[inc]
        path = [inc]
        steps = [max(1, (lv.size - 1) // 8) for lv in self.p.levers]
        last: tuple | None = None
        rounds = 0

        def key(a: Assessment) -> tuple:
            return a.projected(final).rank("far")[:3]

        for rounds in range(1, MAX_LOCAL_ROUNDS + 1):
            self.on_stage(f"local search: round {rounds}, mesh {steps}")
            moved = False
            tries = []
            if last is not None:  # pattern move: the step that worked, once more
                q = tuple(min(max(i + d, 0), lv.size - 1) for i, d, lv in zip(inc, last, self.p.levers))
                if q != inc and self.design(q).raw is not None:
                    tries.append([q])
            nbrs = [q for q in self.neighbours(inc, steps) if self.design(q).raw is not None]
            if nbrs:
                tries.append(nbrs)
            for group in tries:
                if screen is not None and screen < n:
                    A_s = self.assess(group + [inc], screen, f"local search: screen ({screen} replications)")
                    k_inc = key(A_s[inc])
                    promising = sorted((q for q in group if key(A_s[q]) < k_inc), key=lambda q: key(A_s[q]))[:2]
                else:
                    promising = group
                if not promising:
                    continue
                A = self.assess(promising, n, "local search")
                best = min(promising, key=lambda q: key(A[q]))
                if key(A[best]) < key(a_inc):
                    last = tuple(b - a for a, b in zip(inc, best))
                    inc, a_inc, moved = best, A[best], True
                    path.append(inc)
                    break
            if not moved:
                last = None
                if all(st == 1 for st in steps):
                    break
                steps = [max(1, st // 2) for st in steps]
        self.stages.append({"stage": "local search", "rounds": rounds, "moves": len(path) - 1, "replications": n})
        return path

    def finalists(self, path: list[tuple]) -> list[tuple]:
        """The local search's last three incumbents (the best found, then the more cautious ones before it), the best
        other design, and designs spread along the Pareto front: at most MAX_FINALISTS."""
        own = [self.at(pt) for pt in self.assessed_points()]
        own = [a for a in own if a.valid]
        picks = list(dict.fromkeys(reversed(path)))[:3]
        ranked = sorted(own, key=lambda a: a.rank("near"))
        picks += [a.design.point for a in ranked if a.design.point not in picks][:1]
        plausible = [a for a in own if a.plausible()]
        front = pareto_front(sorted(plausible, key=lambda a: a.rank("near")), lambda a: a.estimates, self.p.pareto_axes)
        front = [a for a in front if a.design.point not in picks]
        front.sort(key=lambda a: a.estimates["spend"].mean)
        room = MAX_FINALISTS - len(picks)
        if front and room > 0:
            idx = np.unique(np.linspace(0, len(front) - 1, min(room, len(front))).round().astype(int))
            picks += [front[i].design.point for i in idx]
        return picks

    def assessed_points(self) -> list[tuple]:
        pts = self.exact_q if self.mode == "exact" else self.frames
        return [pt for pt in self.designs if pt in pts]

    # -- the whole search ---------------------------------------------------------------------
    def choose_method(self) -> tuple[str, str]:
        """``exact`` when exact mode applies to the base and to every lever's extreme values, else ``halving``."""
        method = self.p.search.method
        if method in ("halving", "grid"):
            return method, "Monte Carlo on common random numbers (method chosen in the problem file)"
        corners = [tuple(0 for _ in self.p.levers), tuple(lv.size - 1 for lv in self.p.levers)]
        base = self.base_point()
        for i, lv in enumerate(self.p.levers):
            mid = list(base or tuple(lv2.size // 2 for lv2 in self.p.levers))
            for j in (0, lv.size - 1):
                q = list(mid)
                q[i] = j
                corners.append(tuple(q))
        reasons = exact_reasons(self.p.base)
        for pt in dict.fromkeys(corners):
            d = self.design(pt)
            if d.raw is not None and not reasons:
                reasons = exact_reasons(d.raw)
        if not reasons:
            return "exact", "exact mode (Markov-chain algebra) applies to every design, so designs are compared without noise"
        if method == "exact":
            from .problem import DesignError

            raise DesignError(self.p.source, [("search.method", "exact mode does not apply: " + "; ".join(reasons))])
        return "halving", "Monte Carlo on common random numbers: exact mode does not apply (" + "; ".join(reasons[:2]) + ")"

    def run(self) -> SearchResult:
        t0 = time.perf_counter()
        method, note = self.choose_method()
        if method == "exact":
            try:
                self.mode = "exact"
                incumbent = self._exact_search()
            except ExactFallback as exc:
                self.mode, method = "mc", "halving"
                note = f"Monte Carlo on common random numbers: exact mode stopped applying ({exc})"
                self.exact_q.clear()
        if self.mode == "mc":
            s = self.p.search
            if method == "grid":
                self.on_stage(f"grid: every design × {s.grid_replications} replications")
                pts = self.grid_points()
                A = self.assess(pts, s.grid_replications, f"grid ({s.grid_replications} replications)")
                self.stages.append({"stage": "grid", "designs": len(pts), "replications": s.grid_replications})
                incumbent = [min(pts, key=lambda p: A[p].projected(s.final_replications).rank("far"))]
            else:
                k = len(self.p.levers)
                ranked = self.halving(self.initial_points(s.initial_designs or 4 * k + 4))
                a = {p: self.at(p).projected(s.final_replications) for p in ranked}
                start = min(ranked, key=lambda p: a[p].rank("far"))
                screen = s.first_replications if s.first_replications < s.max_replications else None
                incumbent = self.local(start, s.max_replications, screen, s.final_replications)
        return self._finish(method, note, incumbent, t0)

    def _exact_search(self) -> tuple:
        pts = self.grid_points() if math.prod(lv.size for lv in self.p.levers) <= EXACT_GRID else None
        if pts is not None:
            self.on_stage(f"exact: every design ({len(pts)})")
            A = self.assess(pts, None, "exact: whole grid")
            self.stages.append({"stage": "exact grid", "designs": len(pts)})
            return [min(pts, key=lambda p: A[p].rank("far"))]
        k = len(self.p.levers)
        start = self.initial_points(8 * k + 8)
        self.on_stage(f"exact: sample of {len(start)} designs")
        A = self.assess(start, None, "exact: sample")
        self.stages.append({"stage": "exact sample", "designs": len(start)})
        best = sorted(start, key=lambda p: A[p].rank("far"))[:3]
        ends = [self.local(b, None, None, None)[-1] for b in best]
        return [min(ends, key=lambda p: self.at(p).rank("far"))]

    def _finish(self, method: str, note: str, path: list[tuple], t0: float) -> SearchResult:
        s = self.p.search
        n = None if self.mode == "exact" else s.final_replications
        if self.mode == "exact":
            pool = [self.at(pt) for pt in self.assessed_points()]
            finals = sorted((a for a in pool if a.valid), key=lambda a: a.rank("far"))
        else:
            pts = self.finalists(path)
            self.on_stage(f"finalists: {len(pts)} designs × {n} replications")
            A = self.assess(pts, n, f"finalists ({n} replications)")
            self.stages.append({"stage": "finalists", "designs": len(pts), "replications": n})
            finals = sorted(A.values(), key=lambda a: a.rank("far"))
        feasible = [a for a in finals if a.feasible()]
        chosen = feasible[0] if feasible else None
        closest = finals[0] if finals else None
        front = pareto_front(feasible or finals, lambda a: a.estimates, self.p.pareto_axes)
        front.sort(key=lambda a: a.estimates["spend"].mean)
        if len(front) > MAX_PARETO:
            keep = set(np.unique(np.linspace(0, len(front) - 1, MAX_PARETO).round().astype(int)))
            front = [a for i, a in enumerate(front) if i in keep or (chosen is not None and a.design.point == chosen.design.point)]
        verification = self.verify(feasible) if feasible else []
        if feasible and not any(v.passed for v in verification):
            chosen = None
        elif verification:
            chosen = next(a for a in feasible if a.design.point == verification[-1].point)
        comparisons = self.compare(chosen or closest, n)
        return SearchResult(
            problem=self.p, method=method, method_note=note,
            assessments={pt: self.at(pt) for pt in self.assessed_points()},
            finalists=finals[:MAX_SHOWN], chosen=chosen, closest=closest, pareto=front, verification=verification,
            comparisons=comparisons, history=self.history, replications_run=self.ev.replications_run,
            replications_reused=self.ev.replications_reused, seconds=time.perf_counter() - t0,
            evaluations=self.evaluations, stages=self.stages,
        )

    # -- out of sample ------------------------------------------------------------------------
    def verify(self, feasible: list[Assessment]) -> list[Verification]:
        """Rerun the best feasible designs on fresh replications of the verification seed until one holds."""
        v = self.p.verify
        seed = self.p.verify_seed
        out = []
        for attempt, a in enumerate(feasible[:VERIFY_ATTEMPTS], start=1):
            self.on_stage(f"verifying: {v.replications} fresh replications, seed {seed}")
            df = self.ev.evaluate({0: (a.design.raw, range(v.replications))}, seed=seed)[0]
            est = estimates_of(self.p, df)
            checks = []
            for c in self.p.constraints:
                e = est[c.figure.key]
                row = {"constraint": c.text, "estimate": e.as_dict(), "met": c.met(e, "mean"),
                       "met_with_confidence": c.met(e, "far")}
                if self.mode == "exact":
                    x = a.estimates[c.figure.key].mean
                    row["exact"] = x
                    row["exact_within_interval"] = bool(e.lo - 1e-9 * max(1, abs(x)) <= x <= e.hi + 1e-9 * max(1, abs(x)))
                    row["met"] = row["exact_within_interval"] and c.met(a.estimates[c.figure.key], "mean")
                checks.append(row)
            passed = all(r["met"] for r in checks)
            out.append(Verification(a.design.point, seed, v.replications, est, checks, passed, attempt))
            if passed:
                break
        return out

    def compare(self, reference: Assessment | None, n: int | None) -> list[dict]:
        """Each comparison scenario's figures (same replications as the finalists) and whether the chosen design
        dominates it on spend and complex-client outcome rate at equal or lower failure."""
        from ..scenario.schema import load_raw

        if not self.p.compare:
            return []
        axes = [parse_figure("spend", None),
                parse_figure("complex_outcome_rate" if self.p.has_complexity else "outcome_rate", None),
                self.p.pareto_axes[-1]]
        figs = list({f.key: f for f in self.p.figures + axes}.values())
        raws = {str(f): load_raw(f) for f in self.p.compare}
        n_mc = n or self.p.search.final_replications
        self.on_stage(f"comparisons: {len(raws)} scenarios × {n_mc} replications")
        got = self.ev.evaluate({k: (raw, range(n_mc)) for k, raw in raws.items()})
        ref = None
        if reference is not None and reference.valid:
            if self.mode == "exact":
                ref_df = self.ev.evaluate({0: (reference.design.raw, range(n_mc))})[0]
            else:
                ref_df = self.frames[reference.design.point].iloc[:n_mc]
            ref = {f.key: f.estimate(ref_df) for f in figs}
        out = []
        for k, raw in raws.items():
            est = {f.key: f.estimate(got[k]) for f in figs}
            row = {"file": k, "scenario": raw.get("name"), "replications": n_mc, "estimates": est}
            if ref is not None:
                row["dominated"] = _equal_or_better(ref, est, axes)
                row["reference"] = ref
            out.append(row)
        return out


def _no_worse(a: dict, b: dict, f: Figure) -> bool:
    va, vb = a[f.key].mean, b[f.key].mean
    return va <= vb + 1e-12 if f.better == "lower" else va >= vb - 1e-12


def _equal_or_better(a: dict, b: dict, axes: list[Figure]) -> bool:
    """At least as good on every axis and strictly better on one of the first two (spend, outcome rate)."""
    return all(_no_worse(a, b, f) for f in axes) and dominates(a, b, axes[:2])
