"""Calibration: fit transition probabilities of a scenario to observed outcome rates.

A *targets file* names the transition probabilities to fit (parameters) and the rates they should
reproduce (targets). A target's model rate is the probability that a client of one segment,
referred in the initial state, first enters one of the target states within a number of monthly
transitions, under full service in every service state (the holistic policy with no capacity limit)
and with forced exit applied exactly as the engine applies it. It is computed exactly, by matrix
algebra on the chain augmented with a "reached" flag, together with its derivatives, so the fit is
deterministic. ``write_calibrated`` writes the fitted scenario with every comment of the original
file kept and a comment block at the top that records the fit. See docs/calibration.md.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from ..scenario.loading import load_yaml_text, read_text
from ..scenario.overrides import PathError, apply_overrides, get_value, parse_path
from ..model.pathway import FULL, MINIMAL, Pathway, compile_pathway
from ..scenario.schema import (ROW_TOLERANCE, SERVICE_LEVELS, Scenario, ScenarioError, load_raw, load_scenario, pydantic_problems, read_yaml,
                       scenario_from_dict)

DECIMALS = 6  # fitted probabilities are written rounded to this many decimals
PENALTY_SCALE = 1e-8  # a balance this far below zero (rows shared by several parameters) costs one tolerance
MAX_STARTS = 6
BLOCK_BEGIN = "# ==== pbrsim calibrate"
BLOCK_END = "# ==== end of pbrsim calibrate"
DOC = "docs/calibration.md"
TARGET_COLUMNS = ["target", "segment", "model", "target_rate", "residual", "tolerance", "met"]


class CalibrationError(ScenarioError):
    """A targets file, or a fit, broke a rule; ``problems`` is a list of (field path, rule) pairs."""


# ---------------------------------------------------------------------------------------------
# The targets file


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ParameterSpec(_Model):
    """Transition probabilities tied to one fitted value."""

    name: str = Field(..., min_length=1, description="Label of the parameter in the tables and the comment block.")
    paths: list[str] = Field(..., min_length=1, description="Field paths of transition probabilities, "
                             "`pathway.transitions.SEGMENT.full|minimal.FROM.TO`; all are set to the fitted value.")
    balance: str | None = Field(None, description="State of the same row whose probability absorbs the change "
                                "(default: the row's own `from` state).")
    bounds: list[float] = Field([0.0, 1.0], min_length=2, max_length=2, description="[lower, upper] for the value, within [0, 1].")

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, v):
        lo, hi = v
        if not (0 <= lo < hi <= 1):
            raise ValueError(f"bounds must be [lower, upper] with 0 <= lower < upper <= 1 (got [{lo}, {hi}])")
        return v


class BehaviourSpec(_Model):
    """A number of the scenario that describes behaviour (a policy's strength, a latent class's progress), fitted
    together with the transition probabilities."""

    name: str = Field(..., min_length=1, description="Label of the parameter in the tables and the comment block.")
    field: str = Field(..., min_length=1, description="Field path of a number in the scenario, e.g. `provider.policy.temperature` "
                       "or `segments.complex.latent_classes.classes[0].progress`.")
    bounds: list[float] = Field(..., min_length=2, max_length=2, description="[lower, upper] for the value.")

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, v):
        lo, hi = v
        if not lo < hi:
            raise ValueError(f"bounds must be [lower, upper] with lower < upper (got [{lo}, {hi}])")
        return v


class TargetSpec(_Model):
    """An observed rate: the share of a segment's referrals first entering some states within some months; or,
    with ``relative_to``, that rate divided by another segment's (a ratio between groups)."""

    name: str = Field(..., min_length=1, description="Label of the target.")
    segment: str = Field(..., description="Segment of the scenario the rate is for.")
    state: str | None = Field(None, description="The target state (or give `states`).")
    states: list[str] | None = Field(None, min_length=1, description="Target states: reached on first entry to any of them.")
    within_months: int = Field(..., ge=1, description="Monthly transitions after referral (the referral month is month 0).")
    rate: float = Field(..., ge=0, le=1000, description="Observed rate, 0 to 1 (with `relative_to`: the ratio of the two rates).")
    tolerance: float = Field(..., gt=0, le=1000, description="Absolute: the target is met when |model - rate| <= tolerance.")
    relative_to: str | None = Field(None, description="Another segment: the target is this segment's rate divided by that "
                                    "segment's rate for the same states and months.")
    source: str | None = Field(None, description="Where the rate comes from.")

    @model_validator(mode="after")
    def _one_form(self):
        if (self.state is None) == (self.states is None):
            raise ValueError("give exactly one of `state` (one state) or `states` (a list)")
        if self.relative_to is None and (self.rate > 1 or self.tolerance > 1):
            raise ValueError("a rate and its tolerance are fractions between 0 and 1 (0.4 for 40%); only a ratio "
                             "(`relative_to`) may exceed 1")
        return self

    @property
    def target_states(self) -> list[str]:
        return [self.state] if self.state is not None else list(self.states)


class Targets(_Model):
    description: str | None = Field(None, description="What the targets are and where they come from.")
    parameters: list[ParameterSpec] = Field(default_factory=list, description="What is fitted.")
    behaviour: list[BehaviourSpec] = Field(default_factory=list, description="Behaviour parameters fitted jointly.")
    targets: list[TargetSpec] = Field(..., min_length=1, description="The rates to reproduce.")
    _source: str = PrivateAttr("<targets>")

    @property
    def source(self) -> str:
        return self._source


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Schema errors as scenario files report them, without pydantic's 'Value error, ' prefix."""
    return [(loc, msg.removeprefix("Value error, ")) for loc, msg in pydantic_problems(exc, DOC, Targets)]


def targets_from_dict(data: Any, source: str = "<targets>") -> Targets:
    """Validate a mapping into Targets (the schema and the rules that need no scenario)."""
    if not isinstance(data, dict):
        raise CalibrationError(source, [("", "the file must hold a mapping of fields at the top level")])
    try:
        targets = Targets.model_validate(data)
    except ValidationError as exc:
        raise CalibrationError(source, _problems(exc)) from None
    problems = []
    for kind, items in (("parameters", targets.parameters), ("behaviour", targets.behaviour), ("targets", targets.targets)):
        names = [x.name for x in items]
        for i, n in enumerate(names):
            if names.index(n) != i:
                problems.append((f"{kind}[{i}].name", f"name {n!r} is already used by {kind}[{names.index(n)}]"))
    if problems:
        raise CalibrationError(source, problems)
    targets._source = source
    return targets


def load_targets(path: str | Path) -> Targets:
    """Read and validate a targets file; errors are CalibrationError naming the file, field and rule."""
    try:
        data = read_yaml(path)
    except CalibrationError:
        raise
    except ScenarioError as exc:
        raise CalibrationError(exc.source, exc.problems) from None
    return targets_from_dict(data, str(path))


# ---------------------------------------------------------------------------------------------
# Binding a targets file to a scenario


@dataclass(frozen=True)
class _Entry:
    """One transition probability set by a parameter."""

    param: int
    path: str
    g: int
    level: int
    frm: int
    to: int
    bal: int
    base: float  # the probability in the scenario as loaded
    used: bool  # the row is the one the target rates use (full for service states, minimal otherwise)


@dataclass
class _Row:
    """A row touched by parameters, with the state that balances it."""

    g: int
    level: int
    frm: int
    bal: int
    base_bal: float
    entries: list[_Entry] = field(default_factory=list)

    @property
    def params(self) -> list[int]:
        return sorted({e.param for e in self.entries})


@dataclass
class _Target:
    name: str
    g: int
    mask: np.ndarray  # bool [S]
    n: int
    rate: float
    tol: float
    rel: int = -1  # segment whose rate divides this one's (``relative_to``), -1 for a plain rate


@dataclass
class _Bound:
    """A targets file checked against a scenario and compiled to indices."""

    scenario: Scenario
    pw: Pathway
    targets: Targets
    entries: list[_Entry]
    rows: dict[tuple[int, int, int], _Row]
    compiled: list[_Target]
    lower: np.ndarray
    upper: np.ndarray  # bounds tightened so that no balance can go negative
    start: np.ndarray  # current values (the mean of a parameter's paths), clipped into the bounds
    behavioural: bool = False  # rates under the provider's behaviour (``engine.observed``), not full service
    b_start: np.ndarray | None = None  # behaviour parameters' current values, clipped into their bounds


def _state_problems(where: str, state: str, sc: Scenario) -> list[tuple[str, str]]:
    if state not in sc.pathway.states:
        return [(where, f"unknown state {state!r}; states are {sc.pathway.states}")]
    return []


def _bind(sc: Scenario, targets: Targets) -> _Bound:
    source = targets.source
    pw = compile_pathway(sc)
    idx = {s: i for i, s in enumerate(sc.pathway.states)}
    segs = list(sc.segments)
    problems: list[tuple[str, str]] = []

    compiled: list[_Target] = []
    for i, t in enumerate(targets.targets):
        where = f"targets[{i}]"
        bad = False
        if t.segment not in sc.segments:
            problems.append((f"{where}.segment", f"unknown segment {t.segment!r}; segments are {segs}"))
            bad = True
        if t.relative_to is not None and t.relative_to not in sc.segments:
            problems.append((f"{where}.relative_to", f"unknown segment {t.relative_to!r}; segments are {segs}"))
            bad = True
        for j, s in enumerate(t.target_states):
            p = _state_problems(f"{where}.state" if t.state is not None else f"{where}.states[{j}]", s, sc)
            problems += p
            bad = bad or bool(p)
        if not bad:
            mask = np.zeros(pw.n_states, dtype=bool)
            mask[[idx[s] for s in t.target_states]] = True
            compiled.append(_Target(t.name, segs.index(t.segment), mask, t.within_months, t.rate, t.tolerance,
                                    segs.index(t.relative_to) if t.relative_to is not None else -1))

    entries: list[_Entry] = []
    seen_paths: dict[tuple, str] = {}
    for j, par in enumerate(targets.parameters):
        where = f"parameters[{j}]"
        if par.balance is not None:
            problems += _state_problems(f"{where}.balance", par.balance, sc)
        for k, path in enumerate(par.paths):
            pwhere = f"{where}.paths[{k}]"
            try:
                steps = parse_path(path)
            except PathError as exc:
                problems.append((pwhere, str(exc)))
                continue
            keys = [s.key for s in steps]
            shape = "pathway.transitions.SEGMENT.full|minimal.FROM.TO"
            if len(steps) != 6 or None in keys or keys[:2] != ["pathway", "transitions"]:
                problems.append((pwhere, f"{path!r} is not a transition probability; write {shape}"))
                continue
            seg, level, frm, to = keys[2:]
            rule_problems = []
            if seg not in sc.segments:
                rule_problems.append(f"unknown segment {seg!r}; segments are {segs}")
            if level not in SERVICE_LEVELS:
                rule_problems.append(f"unknown service level {level!r}; levels are {list(SERVICE_LEVELS)}")
            for s in (frm, to):
                if s not in idx:
                    rule_problems.append(f"unknown state {s!r}; states are {sc.pathway.states}")
            if rule_problems:
                problems += [(pwhere, r) for r in dict.fromkeys(rule_problems)]
                continue
            if frm in sc.pathway.absorbing:
                problems.append((pwhere, f"{frm!r} is absorbing: its row is fixed ({{{frm}: 1}}) and cannot be fitted"))
                continue
            bal = par.balance if par.balance is not None else frm
            if bal not in idx:
                continue  # reported above
            if bal == to:
                why = "the row's own state, the default" if par.balance is None else "given in `balance`"
                problems.append((pwhere, f"the balance state {bal!r} ({why}) is the probability being fitted; "
                                         "name another state of the row in `balance`"))
                continue
            key = (seg, level, frm, to)
            if key in seen_paths:
                problems.append((pwhere, f"{path} is already fitted by {seen_paths[key]}"))
                continue
            seen_paths[key] = pwhere
            g, lv = segs.index(seg), FULL if level == "full" else MINIMAL
            used = bool(pw.service[idx[frm]]) == (lv == FULL)
            entries.append(_Entry(j, path, g, lv, idx[frm], idx[to], idx[bal], float(pw.P[g, lv, idx[frm], idx[to]]), used))
    if problems:
        raise CalibrationError(source, problems)

    # rows: one balance per row; a fitted entry must not be another parameter's balance
    rows: dict[tuple[int, int, int], _Row] = {}
    for e in entries:
        row = rows.setdefault((e.g, e.level, e.frm), _Row(e.g, e.level, e.frm, e.bal, float(pw.P[e.g, e.level, e.frm, e.bal])))
        if row.bal != e.bal:
            problems.append((f"parameters[{e.param}].balance", f"row {_row_path(sc, e)} is balanced by {pw.states[row.bal]!r} "
                             f"for another parameter; parameters fitting the same row must share its balance state"))
        row.entries.append(e)
    for row in rows.values():
        fitted = {e.to: e for e in row.entries}
        if row.bal in fitted:
            e = fitted[row.bal]
            problems.append((f"parameters[{e.param}].paths", f"{e.path} is the balance state of its row for another "
                             "parameter; choose another balance state"))
    if problems:
        raise CalibrationError(source, problems)

    # behaviour parameters: numbers of the scenario
    dump = sc.model_dump()
    b_start = []
    for j, bp in enumerate(targets.behaviour):
        where = f"behaviour[{j}].field"
        try:
            value = get_value(dump, bp.field)
        except PathError as exc:
            problems.append((where, str(exc)))
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append((where, f"{bp.field} is not a number in the scenario (it is {value!r}); fit a number, "
                             "e.g. provider.policy.temperature"))
            continue
        b_start.append(min(max(float(value), bp.bounds[0]), bp.bounds[1]))
    if problems:
        raise CalibrationError(source, problems)
    model_needed = behaviour_in(sc) or bool(targets.behaviour)

    # a parameter must move some target
    target_segs = {t.g for t in compiled} | {t.rel for t in compiled if t.rel >= 0}
    for j, par in enumerate(targets.parameters):
        mine = [e for e in entries if e.param == j]
        if not any(e.used for e in mine):
            problems.append((f"parameters[{j}].paths", f"{par.name!r} changes no target rate: none of its rows is used by "
                             "the rates (a service state moves by its `full` row, any other active state by its `minimal` row)"))
        elif not any(e.used and e.g in target_segs for e in mine):
            problems.append((f"parameters[{j}].paths", f"{par.name!r} changes no target rate: no target is for segment(s) "
                             f"{sorted({segs[e.g] for e in mine if e.used})}"))
    if problems:
        raise CalibrationError(source, problems)

    P = len(targets.parameters)
    lower = np.array([p.bounds[0] for p in targets.parameters], dtype=float)
    upper = np.array([p.bounds[1] for p in targets.parameters], dtype=float)
    # a row's balance stays >= 0 while sum over its entries of (value - base) <= base balance; with the other
    # parameters of the row at their lower bounds this caps each parameter
    for row in rows.values():
        room = row.base_bal + sum(e.base for e in row.entries)
        counts = {j: sum(e.param == j for e in row.entries) for j in row.params}
        least = sum(counts[j] * lower[j] for j in counts)
        if least > room + 1e-12:
            names = ", ".join(f"parameters[{j}] ({targets.parameters[j].name!r})" for j in counts)
            problems.append((f"parameters[{row.params[0]}].bounds", f"{names}: at the lower bound(s) the balance "
                             f"{pw.states[row.bal]!r} of {_row_path(sc, row.entries[0])} would be negative: the fitted "
                             f"entries and the balance hold {room:.6g} of the row between them, the lower bound(s) need {least:.6g}"))
            continue
        for j, c in counts.items():
            upper[j] = min(upper[j], (room - (least - c * lower[j])) / c)
    if problems:
        raise CalibrationError(source, problems)
    for j in range(P):
        if upper[j] - lower[j] < 10 ** -DECIMALS:
            par = targets.parameters[j]
            problems.append((f"parameters[{j}].bounds", f"{par.name!r} has no room: above {upper[j]:.6g} the balance state "
                             f"of its row would be negative, and its lower bound is {lower[j]:.6g}"))
    if problems:
        raise CalibrationError(source, problems)
    current = np.array([np.mean([e.base for e in entries if e.param == j]) for j in range(P)]) if P else np.zeros(0)
    start = np.clip(current, lower, upper)
    return _Bound(sc, pw, targets, entries, rows, compiled, lower, upper, start, model_needed, np.array(b_start))


def behaviour_in(sc: Scenario) -> bool:
    """Whether observed rates differ from the full-service ones: a provider that does not always serve, or latent
    classes (whose mixture is not the segment's chain)."""
    lazy = any(o.policy.name not in ("holistic", "needs_first") for o in sc.organisation_specs)
    return lazy or any(seg.latent_classes is not None for seg in sc.segments.values())


def _row_path(sc: Scenario, e) -> str:
    states = list(sc.pathway.states)
    return f"pathway.transitions.{list(sc.segments)[e.g]}.{SERVICE_LEVELS[e.level]}.{states[e.frm]}"


# ---------------------------------------------------------------------------------------------
# The model rate


def _effective(pw: Pathway, P: np.ndarray, g: int) -> np.ndarray:
    """Rows as the engine uses them under full service: `full` in service states, `minimal` elsewhere."""
    return np.where(pw.service[:, None], P[g, FULL], P[g, MINIMAL])


def _exit_map(pw: Pathway) -> np.ndarray | None:
    """E with (M @ E) = M after forced exit: a move into a state forced exit applies to goes to the exit state."""
    if pw.max_months is None:
        return None
    applies = np.asarray(getattr(pw, "exit_applies", ~pw.absorbing), dtype=bool)
    E = np.eye(pw.n_states)
    for s in np.flatnonzero(applies):
        E[s, s] = 0.0
        E[s, pw.exit_state] = 1.0
    return E


def _reach(pw: Pathway, M: np.ndarray, dM: np.ndarray, mask: np.ndarray, n: int, E: np.ndarray | None) -> tuple[float, np.ndarray]:
    """P(first entry into ``mask`` within ``n`` transitions) and its derivative along each dM[j].

    ``x`` is the not-yet-reached mass over states. Each transition, active mass moves by the row matrix
    (with forced exit from transition ``max_months`` on, as in the engine); absorbing mass stays. Mass
    landing in a target state is entered (it was not there before, or it would already be reached).
    """
    p = dM.shape[0]
    if mask[pw.initial]:
        return 1.0, np.zeros(p)
    active = ~pw.absorbing
    Mf = M @ E if E is not None else M
    dMf = dM @ E if E is not None else dM
    x = np.zeros(pw.n_states)
    x[pw.initial] = 1.0
    dx = np.zeros((p, pw.n_states))
    reached, dreached = 0.0, np.zeros(p)
    for k in range(1, n + 1):
        forced = E is not None and k >= pw.max_months
        A, dA = (Mf, dMf) if forced else (M, dM)
        xa = np.where(active, x, 0.0)
        dxa = np.where(active, dx, 0.0)
        y = xa @ A + np.where(active, 0.0, x)
        dy = dxa @ A + np.einsum("s,pst->pt", xa, dA) + np.where(active, 0.0, dx)
        reached += y[mask].sum()
        dreached += dy[:, mask].sum(axis=1)
        y[mask] = 0.0
        dy[:, mask] = 0.0
        x, dx = y, dy
        if not (x[active] > 0).any() and not (dx[:, active] != 0).any():
            break
    return float(reached), dreached


def reach_rate(scenario: Scenario, segment: str, states: list[str] | str, within_months: int) -> float:
    """Probability that a client of ``segment``, referred in the initial state, first enters one of ``states``
    within ``within_months`` monthly transitions, under full service in every service state (non-service active
    states move by their `minimal` row, as in the engine) and with forced exit after ``max_months_on_programme``.

    1.0 when the initial state is one of ``states`` (entered at referral)."""
    if isinstance(states, str):
        states = [states]
    if segment not in scenario.segments:
        raise ValueError(f"unknown segment {segment!r}; segments are {list(scenario.segments)}")
    unknown = [s for s in states if s not in scenario.pathway.states]
    if unknown or not states:
        raise ValueError(f"unknown state(s) {unknown}; states are {scenario.pathway.states}")
    if int(within_months) != within_months or within_months < 0:
        raise ValueError("within_months must be a whole number of months, 0 or more")
    pw = compile_pathway(scenario)
    g = list(scenario.segments).index(segment)
    mask = np.isin(np.array(pw.states), states)
    rate, _ = _reach(pw, _effective(pw, pw.P, g), np.zeros((0, pw.n_states, pw.n_states)), mask, int(within_months), _exit_map(pw))
    return rate


# ---------------------------------------------------------------------------------------------
# Checking targets


def _as_scenario(scenario) -> Scenario:
    return scenario if isinstance(scenario, Scenario) else load_scenario(scenario)


def _as_targets(targets) -> Targets:
    return targets if isinstance(targets, Targets) else load_targets(targets)


def _observed(sc: Scenario, b: _Bound) -> list[float]:
    """Each target's model value under the scenario's behaviour (``engine.observed``), ratios included."""
    from ..engine.observed import reach_rates, unsupported
    from ..engine.run import compile_model

    model = compile_model(sc)
    why = unsupported(model)
    if why:
        raise CalibrationError(b.targets.source, [("targets", "rates under this provider's behaviour cannot be computed: "
                                                   + "; ".join(why))])
    cache: dict[tuple, float] = {}

    def rate(g: int, t: _Target) -> float:
        key = (g, tuple(np.flatnonzero(t.mask)), t.n)
        if key not in cache:
            cache[key] = reach_rates(model, g, t.mask, t.n)
        return cache[key]

    return [rate(t.g, t) / rate(t.rel, t) if t.rel >= 0 else rate(t.g, t) for t in b.compiled]


def _full_service(b: _Bound, P: np.ndarray) -> list[float]:
    E = _exit_map(b.pw)
    empty = np.zeros((0, b.pw.n_states, b.pw.n_states))
    out = []
    for t in b.compiled:
        model, _ = _reach(b.pw, _effective(b.pw, P, t.g), empty, t.mask, t.n, E)
        if t.rel >= 0:
            model /= _reach(b.pw, _effective(b.pw, P, t.rel), empty, t.mask, t.n, E)[0]
        out.append(model)
    return out


def _table(b: _Bound, P: np.ndarray, sc: Scenario | None = None) -> pd.DataFrame:
    values = _observed(sc if sc is not None else b.scenario, b) if b.behavioural else _full_service(b, P)
    rows = []
    for t, model in zip(b.compiled, values):
        residual = model - t.rate
        rows.append({"target": t.name, "segment": b.pw.segments[t.g], "model": model, "target_rate": t.rate,
                     "residual": residual, "tolerance": t.tol, "met": bool(abs(residual) <= t.tol)})
    return pd.DataFrame(rows, columns=TARGET_COLUMNS)


def check_targets(scenario: Scenario | str | Path, targets: Targets | str | Path) -> pd.DataFrame:
    """Each target's model rate in the scenario as it is: columns target, segment, model, target_rate,
    residual (model - target_rate), tolerance, met (|residual| <= tolerance)."""
    sc = _as_scenario(scenario)
    b = _bind(sc, _as_targets(targets))
    return _table(b, b.pw.P, sc)


# ---------------------------------------------------------------------------------------------
# Fitting


class _Problem:
    """Scaled residuals (model - target) / tolerance and their exact Jacobian as functions of the values."""

    def __init__(self, b: _Bound):
        self.b = b
        pw = b.pw
        S, G, p = pw.n_states, len(pw.segments), len(b.targets.parameters)
        self.E = _exit_map(pw)
        self.dM = np.zeros((G, p, S, S))  # derivative of each segment's effective matrix along each value
        for e in b.entries:
            if e.used:
                self.dM[e.g, e.param, e.frm, e.to] += 1.0
                self.dM[e.g, e.param, e.frm, e.bal] -= 1.0
        self.shared = [row for row in b.rows.values() if len(row.params) > 1]

    def P(self, theta: np.ndarray) -> np.ndarray:
        P = self.b.pw.P.copy()
        for e in self.b.entries:
            P[e.g, e.level, e.frm, e.to] = theta[e.param]
            P[e.g, e.level, e.frm, e.bal] -= theta[e.param] - e.base
        return P

    def balances(self, theta: np.ndarray) -> list[tuple[_Row, float]]:
        return [(row, row.base_bal - sum(theta[e.param] - e.base for e in row.entries)) for row in self.b.rows.values()]

    def _eval(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        P = self.P(theta)
        res, jac = [], []
        for t in self.b.compiled:
            rate, grad = _reach(self.b.pw, _effective(self.b.pw, P, t.g), self.dM[t.g], t.mask, t.n, self.E)
            if t.rel >= 0:  # a ratio between groups: the quotient rule
                base, dbase = _reach(self.b.pw, _effective(self.b.pw, P, t.rel), self.dM[t.rel], t.mask, t.n, self.E)
                rate, grad = rate / base, (grad * base - rate * dbase) / base ** 2
            res.append((rate - t.rate) / t.tol)
            jac.append(grad / t.tol)
        for row in self.shared:
            bal = row.base_bal - sum(theta[e.param] - e.base for e in row.entries)
            d = np.zeros(len(theta))
            if bal < 0:
                for e in row.entries:
                    d[e.param] += 1.0 / PENALTY_SCALE
            res.append(max(0.0, -bal) / PENALTY_SCALE)
            jac.append(d)
        return np.array(res), np.array(jac).reshape(len(res), len(theta))

    def residuals(self, theta):
        return self._eval(np.asarray(theta, dtype=float))[0]

    def jacobian(self, theta):
        return self._eval(np.asarray(theta, dtype=float))[1]

    def met(self, theta) -> bool:
        r = self.residuals(theta)[: len(self.b.compiled)]
        return bool(np.all(np.abs(r) <= 1 + 1e-12))


def _starts(b: _Bound) -> list[np.ndarray]:
    """The scenario's current values first, then the middle of the bounds, then fixed pseudo-random points."""
    out = [b.start.copy(), (b.lower + b.upper) / 2]
    rng = np.random.default_rng(20240607)  # fixed: the same starts, so the same fit, every time
    while len(out) < MAX_STARTS:
        out.append(b.lower + (b.upper - b.lower) * rng.uniform(0.05, 0.95, size=len(b.lower)))
    return out


def _optimise(b: _Bound) -> tuple[np.ndarray, int, str]:
    from scipy.optimize import least_squares

    prob = _Problem(b)
    best = None
    tried = 0
    for x0 in _starts(b):
        tried += 1
        sol = least_squares(prob.residuals, x0, jac=prob.jacobian, bounds=(b.lower, b.upper), method="trf",
                            ftol=1e-14, xtol=1e-14, gtol=1e-14, max_nfev=2000)
        if best is None or sol.cost < best.cost - 1e-15:
            best = sol
        if prob.met(best.x):
            break
    return np.clip(best.x, b.lower, b.upper), tried, str(best.message)


def _floor(x: float) -> float:
    return math.floor(x * 10 ** DECIMALS + 1e-9) / 10 ** DECIMALS


def _ceil(x: float) -> float:
    return math.ceil(x * 10 ** DECIMALS - 1e-9) / 10 ** DECIMALS


def _round_feasible(b: _Bound, theta: np.ndarray) -> np.ndarray:
    """Values rounded to DECIMALS within the bounds, keeping every balance at or above zero."""
    prob = _Problem(b)
    lo = np.array([_ceil(x) for x in b.lower])
    hi = np.array([_floor(x) for x in b.upper])
    v = np.array([float(_fmt(min(max(round(float(x), DECIMALS), a), z))) for x, a, z in zip(theta, lo, hi)])
    step = 10.0 ** -DECIMALS
    for _ in range(10_000):
        negative = [(row, bal) for row, bal in prob.balances(v) if bal < -1e-12]
        if not negative:
            return v
        row, bal = negative[0]
        movable = [j for j in row.params if v[j] - step >= lo[j] - 1e-12]
        if not movable:
            break
        j = max(movable, key=lambda j: (v[j] - lo[j], -j))
        v[j] = round(v[j] - step, DECIMALS)
    row, bal = negative[0]
    names = ", ".join(f"{b.targets.parameters[j].name!r}" for j in row.params)
    raise CalibrationError(b.targets.source, [(f"parameters[{row.params[0]}]", f"refused: the fit of {names} would make the "
                           f"balance {b.pw.states[row.bal]!r} of {_row_path(b.scenario, row.entries[0])} negative ({bal:.3g}); "
                           "narrow the bounds or balance the row with another state")])


def _fmt(x: float, decimals: int = DECIMALS) -> str:
    """A probability as plain YAML: fixed-point with at least one decimal (never 1e-06, which YAML reads as text)."""
    s = f"{x:.{decimals}f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


def _updates(b: _Bound, v: np.ndarray) -> dict[str, float]:
    """Field path -> value for every fitted entry and every balance entry, each row summing to 1."""
    sc, states = b.scenario, b.pw.states
    out: dict[str, float] = {}
    for (g, level, frm), row in b.rows.items():
        seg, lv = list(sc.segments)[g], SERVICE_LEVELS[level]
        base_row = dict(getattr(sc.pathway.transitions[seg], lv)[states[frm]])
        for e in row.entries:
            base_row[states[e.to]] = float(v[e.param])
            out[e.path] = float(v[e.param])
        bal_state = states[row.bal]
        others = math.fsum(p for s, p in base_row.items() if s != bal_state)
        bal = 1.0 - others
        if bal < 0:
            bal = 0.0 if bal > -1e-12 else bal
        rounded = round(bal, DECIMALS)
        if abs(others + rounded - 1.0) > 1e-12:
            rounded = round(bal, 12)
        base_row[bal_state] = rounded
        if rounded < 0 or abs(sum(base_row.values()) - 1) > ROW_TOLERANCE:
            raise CalibrationError(b.targets.source, [(f"parameters[{row.params[0]}]", f"refused: the row "
                                   f"{_row_path(sc, row.entries[0])} cannot be balanced by {bal_state!r} (it would be {bal:.3g})")])
        out[f"pathway.transitions.{seg}.{lv}.{states[frm]}.{bal_state}"] = rounded
    return out


@dataclass(frozen=True)
class CalibrationResult:
    """A fit: the values written, the model rates they give and what the optimiser did."""

    scenario_path: Path
    targets_path: Path | None
    targets: Targets
    scenario: Scenario  # the scenario with the fitted (rounded) values
    values: dict[str, float]  # parameter -> fitted value, as written
    parameters: pd.DataFrame  # parameter, paths, balance, lower, upper, start, value
    table: pd.DataFrame  # TARGET_COLUMNS, at the written values
    updates: dict[str, float]  # field path -> value written, including each row's balance entry
    all_met: bool
    cost: float  # half the sum of squared (model - target) / tolerance at the written values
    starts: int  # optimiser starts tried
    message: str  # the optimiser's stopping reason for the fit kept
    behavioural: bool = False  # model rates under the provider's behaviour (observed), not full service

    @property
    def unmet(self) -> pd.DataFrame:
        return self.table[~self.table.met]


class _JointProblem:
    """Scaled residuals of the targets under the provider's behaviour, as functions of the transition parameters
    and the behaviour parameters together (values first, then behaviour); derivatives by finite differences."""

    FAIL = 1e6  # residual of a point the scenario rules refuse (a class progress that leaves no room, say)

    def __init__(self, b: _Bound, raw: dict, source: str):
        self.b, self.raw, self.source = b, raw, source
        self.P = len(b.targets.parameters)

    def scenario(self, theta: np.ndarray, transitions: dict | None = None) -> Scenario:
        v, w = theta[: self.P], theta[self.P:]
        updates = dict(transitions if transitions is not None else (_updates(self.b, v) if self.P else {}))
        updates |= {bp.field: float(x) for bp, x in zip(self.b.targets.behaviour, w)}
        return scenario_from_dict(apply_overrides(self.raw, updates, self.source), self.source)

    def residuals(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        try:
            values = _observed(self.scenario(theta), self.b)
        except ScenarioError as exc:
            if isinstance(exc, CalibrationError) and exc.problems and exc.problems[0][0] == "targets":
                raise
            return np.full(len(self.b.compiled), self.FAIL)
        return np.array([(x - t.rate) / t.tol for x, t in zip(values, self.b.compiled)])

    def jacobian(self, theta) -> np.ndarray:
        """Central differences inside the bounds: steps of 1e-6 of a probability's range, 1e-3 of a behaviour
        parameter's (money such as a temperature is kept to the penny, so smaller steps would not move it)."""
        theta = np.asarray(theta, dtype=float)
        lo, hi = _joint_bounds(self.b)
        out = np.zeros((len(self.b.compiled), len(theta)))
        for j in range(len(theta)):
            h = (1e-6 if j < self.P else 1e-3) * (hi[j] - lo[j])
            up, dn = theta.copy(), theta.copy()
            up[j], dn[j] = min(theta[j] + h, hi[j]), max(theta[j] - h, lo[j])
            out[:, j] = (self.residuals(up) - self.residuals(dn)) / (up[j] - dn[j])
        return out

    def met(self, theta) -> bool:
        return bool(np.all(np.abs(self.residuals(theta)) <= 1 + 1e-12))


def _joint_bounds(b: _Bound) -> tuple[np.ndarray, np.ndarray]:
    lo = np.concatenate([b.lower, [bp.bounds[0] for bp in b.targets.behaviour]])
    hi = np.concatenate([b.upper, [bp.bounds[1] for bp in b.targets.behaviour]])
    return lo, hi


def _optimise_joint(b: _Bound, prob: _JointProblem) -> tuple[np.ndarray, int, str]:
    """Fit the parameters the targets identify at the start (``identified``); the others stay at their start
    values, so an unidentified parameter keeps the value the scenario gave it rather than drifting."""
    from scipy.optimize import least_squares

    lo, hi = _joint_bounds(b)
    x0 = np.concatenate([b.start, b.b_start])
    free = np.flatnonzero(identified(prob.jacobian(x0)))
    if not len(free):
        return x0, 1, "no parameter is identified by the targets: nothing fitted"

    def full(z):
        x = x0.copy()
        x[free] = z
        return x

    best, tried = None, 0
    for start in (x0[free], ((lo + hi) / 2)[free]):
        tried += 1
        sol = least_squares(lambda z: prob.residuals(full(z)), start, jac=lambda z: prob.jacobian(full(z))[:, free],
                            bounds=(lo[free], hi[free]), method="trf", ftol=1e-10, xtol=1e-10, gtol=1e-10, max_nfev=200)
        if best is None or sol.cost < best.cost - 1e-15:
            best = sol
        if prob.met(full(best.x)):
            break
    return np.clip(full(best.x), lo, hi), tried, str(best.message)


def identified(jac: np.ndarray, rel_tol: float = 1e-6) -> np.ndarray:
    """Which parameters the targets pin down at a fit: bool per column of the Jacobian of the scaled residuals.

    Taken in order (transition probabilities first, then behaviour), a parameter is identified when it moves the
    targets in a direction the identified ones before it cannot (it raises the rank of their columns, scaled to
    length 1; singular values below ``rel_tol`` of the largest count as 0). The rest are not: the targets can be
    met whatever their values, by moving the others, so they are held where they were."""
    jac = np.atleast_2d(np.asarray(jac, dtype=float))
    n = jac.shape[1]
    out = np.zeros(n, dtype=bool)
    scale = np.linalg.norm(jac, axis=0)
    if n == 0 or scale.max() == 0:
        return out
    unit = jac / np.where(scale > 0, scale, 1.0)
    chosen: list[int] = []
    for j in range(n):
        if scale[j] <= rel_tol * scale.max():
            continue
        sv = np.linalg.svd(unit[:, chosen + [j]], compute_uv=False)
        if (sv > rel_tol * sv.max()).sum() == len(chosen) + 1:
            chosen.append(j)
            out[j] = True
    return out


def calibrate(scenario_path: str | Path, targets_path: Targets | str | Path) -> CalibrationResult:
    """Fit the parameters of a targets file to its targets; nothing is written (see ``write_calibrated``).

    Without behaviour (every provider holistic, no latent classes, no behaviour parameters) the rates are those
    under full service and their derivatives exact. Otherwise transition rates are what clients could achieve
    under full service, and the targets are compared with the *observed* rates, potential × the service the
    provider's behaviour gives (``engine.observed``), the behaviour parameters fitted jointly."""
    sc = load_scenario(scenario_path)
    targets = _as_targets(targets_path)
    if not targets.parameters and not targets.behaviour:
        raise CalibrationError(targets.source, [("parameters", "list at least one parameter to fit "
                                                 "(to evaluate the targets without fitting, use --check)")])
    b = _bind(sc, targets)
    raw0 = load_raw(scenario_path)
    if b.behavioural:
        prob = _JointProblem(b, raw0, str(scenario_path))
        theta, tried, message = _optimise_joint(b, prob)
        v = _round_feasible(b, theta[: len(b.lower)]) if len(b.lower) else np.zeros(0)
        w = np.array([float(_fmt(x)) for x in theta[len(b.lower):]])
        updates = (_updates(b, v) if len(v) else {}) | {bp.field: float(x) for bp, x in zip(targets.behaviour, w)}
        jac = prob.jacobian(np.concatenate([v, w]))
    else:
        theta, tried, message = _optimise(b)
        v, w = _round_feasible(b, theta), np.zeros(0)
        updates = _updates(b, v)
        jac = _Problem(b).jacobian(v)[: len(b.compiled)]
    raw = apply_overrides(raw0, updates, str(scenario_path))
    fitted = scenario_from_dict(raw, str(scenario_path))
    table = _table(b, compile_pathway(fitted).P, fitted)
    r = (table.residual / table.tolerance).to_numpy()
    pinned = identified(jac)
    rows = [{
        "parameter": p.name,
        "paths": list(p.paths),
        "balance": p.balance,
        "lower": p.bounds[0],
        "upper": p.bounds[1],
        "start": float(np.mean([e.base for e in b.entries if e.param == j])),
        "value": float(v[j]),
        "identified": bool(pinned[j]),
    } for j, p in enumerate(targets.parameters)]
    rows += [{
        "parameter": bp.name,
        "paths": [bp.field],
        "balance": None,
        "lower": bp.bounds[0],
        "upper": bp.bounds[1],
        "start": float(get_value(sc.model_dump(), bp.field)),
        "value": float(w[j]),
        "identified": bool(pinned[len(targets.parameters) + j]),
    } for j, bp in enumerate(targets.behaviour)]
    params = pd.DataFrame(rows)
    values = {row["parameter"]: row["value"] for row in rows}
    return CalibrationResult(
        scenario_path=Path(scenario_path),
        targets_path=None if isinstance(targets_path, Targets) else Path(targets_path),
        targets=targets, scenario=fitted, values=values,
        parameters=params, table=table, updates=updates, all_met=bool(table.met.all()),
        cost=float(0.5 * np.sum(r ** 2)), starts=tried, message=message, behavioural=b.behavioural,
    )


# ---------------------------------------------------------------------------------------------
# Writing


def strip_block(text: str) -> str:
    """``text`` without a comment block written by an earlier calibration (and the blank line after it)."""
    lines = text.splitlines(keepends=True)
    out, i = [], 0
    while i < len(lines):
        if lines[i].startswith(BLOCK_BEGIN):
            end = next((k for k in range(i + 1, len(lines)) if lines[k].startswith(BLOCK_END)), None)
            if end is not None and all(l.startswith("#") for l in lines[i:end + 1]):
                i = end + 1
                if i < len(lines) and not lines[i].strip():
                    i += 1
                continue
        out.append(lines[i])
        i += 1
    return "".join(out)


def _one_line(s: str) -> str:
    return " ".join(str(s).split())


def _columns(rows: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append(("#   " + "  ".join(cells)).rstrip())
    return out


def comment_block(result: CalibrationResult, out_path: str | Path) -> str:
    """The comment block recording the fit (no dates, so the same fit always writes the same file)."""
    out_dir = Path(out_path).resolve().parent
    lines = [f"{BLOCK_BEGIN} (rewritten on every run; see {DOC}) ===="]
    if result.targets_path is not None:
        rel = os.path.relpath(Path(result.targets_path).resolve(), out_dir)
        digest = hashlib.sha256(Path(result.targets_path).read_bytes()).hexdigest()[:12]
        lines.append(f"# targets: {Path(rel).as_posix()} (sha256 {digest}...)")
    else:
        lines.append("# targets: given in Python, not from a file")
    lines.append("# model rate: P(first entry into the target states within N monthly transitions of referral),")
    if result.behavioural:
        lines.append("#   observed: potential under full service x the service the provider's behaviour gives, averaged over")
        lines.append("#   referral months and latent classes; forced exit as the engine applies it; computed exactly")
    else:
        lines.append("#   full service in every service state, forced exit as the engine applies it; computed exactly")
    lines.append(f"# fit: least squares of (model - target) / tolerance; {result.starts} start(s); cost {result.cost:.6g}")
    lines.append("#")
    lines.append("# parameters (fitted value as written; was = value before the fit):")
    prow = [("parameter", "value", "was", "bounds", "paths [balance state]")]
    n_trans = len(result.targets.parameters)
    for k, (_, p) in enumerate(result.parameters.iterrows()):
        for i, path in enumerate(p.paths):
            bal = (p.balance or [s.key for s in parse_path(path)][4]) if k < n_trans else "behaviour"
            head = (_one_line(p.parameter), _fmt(p.value), _fmt(p.start, 9), f"[{_fmt(p.lower)}, {_fmt(p.upper)}]") if i == 0 else ("",) * 4
            prow.append((*head, f"{path} [{bal}]"))
    lines += _columns(prow, right=(1, 2))
    free = [p.parameter for p in result.parameters.itertuples() if not p.identified]
    if result.behavioural or free:
        lines.append("# identified by the targets: " + (", ".join(_one_line(p.parameter) for p in result.parameters.itertuples()
                                                                if p.identified) or "none"))
        lines.append("# not identified (the targets can be met whatever their values): " + (", ".join(free) or "none"))
    lines.append("#")
    lines.append("# targets (model rate at the written values; residual = model - target; met when |residual| <= tolerance):")
    trow = [("target", "segment", "within", "model", "target", "residual", "tolerance", "result")]
    for t, spec in zip(result.table.itertuples(), result.targets.targets):
        trow.append((_one_line(t.target), t.segment, f"{spec.within_months} months", f"{t.model:.6f}", f"{t.target_rate:.6f}",
                     f"{t.residual + 0.0:+.6f}" if abs(t.residual) >= 5e-7 else "+0.000000", f"{t.tolerance:.6f}",
                     "met" if t.met else "NOT MET"))
    lines += _columns(trow, right=(2, 3, 4, 5, 6))
    lines.append("#")
    n, k = len(result.table), int((~result.table.met).sum())
    if k == 0:
        lines.append(f"# result: all {n} targets met")
    else:
        lines.append(f"# result: {k} of {n} targets NOT MET; these values are the closest fit")
    lines.append(f"{BLOCK_END} ====")
    return "\n".join(lines) + "\n\n"


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _rt_yaml():
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    y.representer.add_representer(type(None), lambda r, d: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return y


def _child(node, step):
    """The child of a loaded YAML node at one path step (a key, a list index or a [field=value] item), or None."""
    if step.key is not None:
        return node[step.key] if isinstance(node, dict) and step.key in node else None
    if not isinstance(node, list):
        return None
    if step.index is not None:
        return node[step.index] if -len(node) <= step.index < len(node) else None
    hits = [item for item in node if isinstance(item, dict) and str(item.get(step.field)) == step.value]
    return hits[0] if len(hits) == 1 else None


def _node(doc, steps):
    node = doc
    for s in steps:
        node = _child(node, s)
        if node is None:
            return None
    return node


def _surgical(text: str, updates: dict[str, str], extends: str | None) -> str | None:
    """``text`` with the values changed in place, byte for byte elsewhere; None when that is not possible
    (a key that has to be added outside an existing row, or a value that is not a plain number)."""
    doc = _rt_yaml().load(text)
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []  # line, start col, end col, replacement
    appends: dict[tuple[int, ...], list[str]] = {}
    for path, value in updates.items():
        steps = parse_path(path)
        row = _node(doc, steps[:-1])
        key = steps[-1].key
        if row is None or key is None or not hasattr(row, "lc"):
            return None
        if key in row:
            if isinstance(row[key], bool) or not isinstance(row[key], (int, float)):
                return None
            ln, col = row.lc.value(key)
            m = _NUMBER.match(lines[ln], col)
            if not m or float(m.group()) != float(row[key]):
                return None
            edits.append((ln, col, m.end(), value))
        else:
            appends.setdefault(id(row), [row]).append(f"{key}: {value}")
    for items in appends.values():
        row, new = items[0], items[1:]
        if not len(row):
            return None
        last = list(row)[-1]
        if isinstance(row[last], bool) or not isinstance(row[last], (int, float)):
            return None
        kl, kc = row.lc.key(last)
        ln, col = row.lc.value(last)
        m = _NUMBER.match(lines[ln], col)
        if not m:
            return None
        if row.fa.flow_style():
            edits.append((ln, m.end(), m.end(), "".join(f", {n}" for n in new)))
        else:
            if kl != ln:
                return None
            # a new line after the last entry, at its indentation
            edits.append((ln, len(lines[ln].rstrip("\r\n")), len(lines[ln].rstrip("\r\n")),
                          "".join("\n" + " " * kc + n for n in new)))
    if extends is not None:
        ln, col = doc.lc.value("extends")
        line = lines[ln]
        if line[col] in "'\"":
            end = line.find(line[col], col + 1)
            if end < 0:
                return None
            end += 1
        else:
            hash_at = line.find(" #", col)
            end = len(line.rstrip("\r\n")) if hash_at < 0 else hash_at
            end = col + len(line[col:end].rstrip())
        edits.append((ln, col, end, _yaml_text(extends)))
    for ln, a, z, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        lines[ln] = lines[ln][:a] + new + lines[ln][z:]
    return "".join(lines)


def _yaml_text(s: str) -> str:
    """``s`` as a YAML scalar that reads back as this text: plain when it does, else double-quoted."""
    if re.fullmatch(r"[A-Za-z0-9_./-]+", s) and not s.startswith("-") and load_yaml_text(f"x: {s}", "<text>") == {"x": s}:
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dumped(text: str, updates: dict[str, float], extends: str | None) -> str:
    """``text`` loaded round-trip (comments kept), changed and dumped again: used when a key must be added."""
    from ruamel.yaml.comments import CommentedMap

    y = _rt_yaml()
    best = None
    for indent in ((2, 4, 2), (2, 2, 0)):  # the list style closest to the file's own
        y.indent(mapping=indent[0], sequence=indent[1], offset=indent[2])
        doc = y.load(text)
        for path, value in updates.items():
            steps = parse_path(path)
            node = doc
            for s in steps[:-1]:
                child = _child(node, s)
                if not isinstance(child, (dict, list)):
                    if s.key is None:
                        raise CalibrationError(str(path), [(str(path), "the list item this path names is not in the file")])
                    node[s.key] = child = CommentedMap()
                node = child
            node[steps[-1].key] = float(value)
        if extends is not None:
            doc["extends"] = extends
        buf = io.StringIO()
        y.dump(doc, buf)
        out = buf.getvalue()
        changed = sum(1 for l in difflib.ndiff(text.splitlines(), out.splitlines()) if l[:1] in "+-")
        if best is None or changed < best[0]:
            best = (changed, out)
    return best[1]


def _extends_for(scenario_path: Path, out_path: Path, text: str) -> str | None:
    """The ``extends`` value the output needs when it is written to another folder (None: unchanged)."""
    data = load_yaml_text(text, str(scenario_path)) or {}
    if not isinstance(data, dict) or "extends" not in data:
        return None
    if scenario_path.resolve().parent == out_path.resolve().parent:
        return None
    parent = (scenario_path.parent / str(data["extends"])).resolve()
    return Path(os.path.relpath(parent, out_path.resolve().parent)).as_posix()


def calibrated_text(result: CalibrationResult, out_path: str | Path) -> str:
    """The text of the calibrated scenario file: the original with the fitted values and a fresh comment block."""
    src, out_path = Path(result.scenario_path), Path(out_path)
    text = strip_block(read_text(src))
    extends = _extends_for(src, out_path, text)
    formatted = {p: _fmt(v, DECIMALS if round(v, DECIMALS) == v else 12) for p, v in result.updates.items()}
    try:
        body = _surgical(text, formatted, extends)
    except Exception:  # anything the in-place edit cannot follow: the round-trip writer below
        body = None
    if body is None or not _writes(body, result.updates):
        try:
            body = _dumped(text, result.updates, extends)
        except Exception as exc:
            raise CalibrationError(str(src), [("", f"cannot rewrite the file with the fitted values: {exc}")]) from None
    return comment_block(result, out_path) + body


def _writes(body: str, updates: dict[str, float]) -> bool:
    """The file's own mapping sets every updated path to its value (the check of an in-place edit)."""
    try:
        data = load_yaml_text(body, "<calibrated>")
    except ScenarioError:
        return False
    for path, value in updates.items():
        node = _node(data, parse_path(path))
        if isinstance(node, bool) or not isinstance(node, (int, float)) or abs(node - value) > 1e-15:
            return False
    return True


def write_calibrated(result: CalibrationResult, out_path: str | Path) -> Path:
    """Write the calibrated scenario to ``out_path`` (may be the input itself): the original file with its
    comments, the fitted values and a comment block at the top recording the fit. The file is written in a
    temporary folder beside ``out_path`` (``store.Staged``), checked with ``load_scenario`` and only then
    moved into place; a replaced file keeps its permissions, a new one gets the usual ones."""
    from ..store import Staged, WriteFailed

    out_path = Path(out_path)
    text = calibrated_text(result, out_path)
    with Staged([out_path]) as stage:
        tmp = stage[out_path]
        try:
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
        except OSError as exc:
            raise WriteFailed(f"cannot write {out_path}: {exc.strerror or exc}. Nothing was written.") from None
        try:
            written = load_scenario(tmp)
        except ScenarioError as exc:
            raise CalibrationError(str(out_path), [(p, f"the calibrated file would not be valid: {r}") for p, r in exc.problems]) from None
        if written.model_dump() != result.scenario.model_dump():
            raise CalibrationError(str(out_path), [("", "the calibrated file does not read back as the fitted scenario "
                                                        "(nothing was written)")])
        stage.commit()
    return out_path


def written_by_calibrate(path: str | Path) -> bool:
    """``path`` is a file an earlier ``pbrsim calibrate`` wrote (it starts with the comment block)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readline().startswith(BLOCK_BEGIN)
    except OSError:
        return False


def default_output(scenario_path: str | Path) -> Path:
    p = Path(scenario_path)
    return p.with_name(f"{p.stem}.calibrated.yaml")
