"""Design problem files: a base scenario, levers, an objective, constraints, and how to search and verify.

Read and checked with the same care as scenario files: pydantic with unknown fields refused, then every
cross-field rule, all problems reported at once as ``FILE: field.path: rule`` (``DesignError``) before
anything runs. docs/design.md lists the fields.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..analysis.parking import complexity_groups
from ..engine.run import compile_model
from ..scenario.overrides import PathError, apply_overrides, get_value
from ..scenario.schema import ScenarioError, file_hash, load_raw, pydantic_problems, read_yaml, scenario_from_dict
from .figures import PARETO_AXES, Figure, Target, TargetError, check_figure, parse_figure, parse_figure_text, parse_target
from .levers import MAX_VALUES, Lever, fmt_value, grid, split_flat_tariffs

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
METHODS = ("auto", "halving", "grid", "exact")
DEFAULT_VERIFY_OFFSET = 1_000_003  # the verification seed, when not given: the search seed plus this


class DesignError(ScenarioError):
    """A design problem broke a rule; ``problems`` is a list of (field path, rule) pairs."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LeverSpec(_Spec):
    path: str = Field(..., description="Field path of the term, e.g. contract.service_fee.share_of_value.")
    range: list[float] | None = Field(None, description="[lowest, highest] value searched.")
    step: float | None = Field(None, gt=0, description="Grid step within the range (default: 20 equal steps); the search's precision.")
    choices: list[Any] | None = Field(None, description="Instead of a range: the values allowed, in order.")
    label: str | None = Field(None, max_length=80, description="Short name in tables (default: the path).")


class ObjectiveSpec(_Spec):
    minimise: str | None = Field(None, description="Figure to make as small as possible, e.g. spend_per_outcome.")
    maximise: str | None = Field(None, description="Figure to make as large as possible, e.g. complex_outcomes.")

    @model_validator(mode="after")
    def _one(self):
        if (self.minimise is None) == (self.maximise is None):
            raise ValueError("give exactly one of `minimise` or `maximise`")
        return self


class SearchSpec(_Spec):
    seed: int = Field(0, ge=0, description="Root random seed: the same replications (common random numbers) for every design.")
    method: Literal["auto", "halving", "grid", "exact"] = Field(
        "auto", description="auto: exact mode where it applies to every design, else halving (Monte Carlo).")
    initial_designs: int | None = Field(None, ge=2, le=500, description="Space-filling sample size (default 4 per lever + 4).")
    first_replications: int = Field(20, ge=10, le=10_000, description="Replications of each design in the first round.")
    max_replications: int = Field(40, ge=10, le=10_000, description="Replications at the end of successive halving and in local search.")
    final_replications: int = Field(200, ge=10, le=100_000, description="Replications of the finalists: the chosen design and the Pareto front.")
    grid_replications: int = Field(40, ge=10, le=10_000, description="method grid: replications of every grid design.")
    chunk: int = Field(20, ge=1, le=1000, description="Replications per task (and per cached file).")

    @model_validator(mode="after")
    def _order(self):
        if self.max_replications < self.first_replications:
            raise ValueError("max_replications must be at least first_replications")
        return self


class VerifySpec(_Spec):
    replications: int = Field(500, ge=10, le=100_000, description="Fresh replications of the chosen design.")
    seed: int | None = Field(None, ge=0, description="Independent seed (default: search seed + 1000003).")


class ProblemSpec(_Spec):
    name: str | None = Field(None, pattern=NAME_PATTERN, max_length=100, description="Default: the file name without extension.")
    description: str | None = None
    base: str = Field(..., description="Base scenario file, relative to the problem file.")
    set: dict[str, Any] = Field(default_factory=dict, description="Fixed changes to the base before searching (`field.path: value`).")
    levers: list[LeverSpec] = Field(..., min_length=1, max_length=12)
    objective: ObjectiveSpec | None = Field(None, description="What to make best; leave out for a goal seek (one lever, one constraint).")
    constraints: list[str] = Field(default_factory=list, max_length=20, description="Targets such as \"failure(charity) <= 0.05\".")
    search: SearchSpec = Field(default_factory=SearchSpec)
    verify: VerifySpec = Field(default_factory=VerifySpec)
    compare: list[str] = Field(default_factory=list, max_length=20, description="Scenario files shown beside the chosen design.")


@dataclass(frozen=True)
class Objective:
    figure: Figure
    sense: str  # "minimise" | "maximise"

    def better(self, a: float, b: float) -> bool:
        """Is ``a`` strictly better than ``b``?"""
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        return a < b if self.sense == "minimise" else a > b

    def score(self, v: float) -> float:
        """Smaller is better."""
        if math.isnan(v):
            return math.inf
        return v if self.sense == "minimise" else -v

    @property
    def text(self) -> str:
        return f"{self.sense} {self.figure.key}"


@dataclass(frozen=True)
class Problem:
    """A design problem resolved: the base mapping (levers' tariffs split), levers, objective and constraints."""

    name: str
    description: str | None
    source: str  # the problem file, or the scenario for a goal seek
    base_file: Path
    base: dict  # scenario mapping after `set` and flat-tariff splitting
    levers: tuple[Lever, ...]
    objective: Objective | None
    constraints: tuple[Target, ...]
    search: SearchSpec
    verify: VerifySpec
    compare: tuple[Path, ...] = ()
    fixed: dict = field(default_factory=dict)
    sha256: str = ""
    segments: tuple[str, ...] = ()
    organisations: tuple[str, ...] = ()
    currency: str = "GBP"
    has_complexity: bool = False  # segments differ in complexity, so complex-client figures exist

    @property
    def verify_seed(self) -> int:
        return self.verify.seed if self.verify.seed is not None else self.search.seed + DEFAULT_VERIFY_OFFSET

    @property
    def figures(self) -> list[Figure]:
        """Every figure the problem needs: the objective, the constraints and the Pareto axes."""
        out: dict[str, Figure] = {}
        for f in ([self.objective.figure] if self.objective else []) + [c.figure for c in self.constraints] + self.pareto_axes:
            out.setdefault(f.key, f)
        return list(out.values())

    @property
    def pareto_axes(self) -> list[Figure]:
        """Spend, complex-client outcomes (outcomes if segments do not differ in complexity) and failure (of the one
        organisation, or of any organisation in a supply chain)."""
        names = [n if n != "complex_outcomes" or self.has_complexity else "outcomes" for n in PARETO_AXES]
        return [parse_figure(n, self.organisations[0] if n == "failure" and len(self.organisations) == 1 else None)
                for n in names]


def _location(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _spec_problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for p, msg in pydantic_problems(exc, doc="docs/design.md"):
        problems.append((p, msg.replace("Value error, ", "")))
    return problems


def load_problem(path: str | Path) -> Problem:
    """Read and check a problem file; raises DesignError listing every problem."""
    path = Path(path)
    source = str(path)
    data = read_yaml(path)
    try:
        spec = ProblemSpec.model_validate(data)
    except ValidationError as exc:
        raise DesignError(source, _spec_problems(exc)) from None
    base_file = (path.parent / spec.base).resolve()
    if not base_file.exists():
        raise DesignError(source, [("base", f"file {spec.base!r} not found (relative to {path.parent})")])
    try:
        base = load_raw(base_file)
    except ScenarioError as exc:
        raise DesignError(source, [("base", f"{exc.source}: {p + ': ' if p else ''}{r}") for p, r in exc.problems]) from None
    compare = []
    problems: list[tuple[str, str]] = []
    for i, c in enumerate(spec.compare):
        f = (path.parent / c).resolve()
        if not f.exists():
            problems.append((f"compare[{i}]", f"file {c!r} not found (relative to {path.parent})"))
        compare.append(f)
    digest = hashlib.sha256(path.read_bytes() + file_hash(base_file).encode()).hexdigest()
    problem = resolve(spec, base, source, base_file, name=spec.name or path.stem, compare=tuple(compare),
                      sha256=digest, problems=problems)
    for i, f in enumerate(problem.compare):
        try:
            scenario_from_dict(load_raw(f), str(f))
        except ScenarioError as exc:
            raise DesignError(source, [(f"compare[{i}]", f"{exc.source}: {p + ': ' if p else ''}{r}") for p, r in exc.problems]) from None
    return problem


def lever_from_spec(spec: LeverSpec, where: str) -> tuple[Lever | None, list[tuple[str, str]]]:
    """The lever's grid, or the problems with it."""
    label = spec.label or spec.path
    if (spec.range is None) == (spec.choices is None):
        return None, [(where, "give exactly one of `range: [lowest, highest]` or `choices: [...]`")]
    if spec.choices is not None:
        if not spec.choices:
            return None, [(f"{where}.choices", "name at least one value")]
        if len(spec.choices) > MAX_VALUES:
            return None, [(f"{where}.choices", f"at most {MAX_VALUES} values")]
        seen = []
        for v in spec.choices:
            if v in seen:
                return None, [(f"{where}.choices", f"{v!r} is listed twice")]
            seen.append(v)
        if spec.step is not None:
            return None, [(f"{where}.step", "only applies with `range`")]
        return Lever(spec.path, label, tuple(spec.choices), "choices"), []
    r = spec.range
    if len(r) != 2:
        return None, [(f"{where}.range", "give two numbers: [lowest, highest]")]
    lo, hi = r
    if not all(math.isfinite(x) for x in r):
        return None, [(f"{where}.range", "values must be finite numbers")]
    if not lo < hi:
        return None, [(f"{where}.range", "the lowest value must be below the highest")]
    if spec.step is not None and (hi - lo) / spec.step + 1 > MAX_VALUES:
        return None, [(f"{where}.step", f"the range holds more than {MAX_VALUES} steps of {fmt_value(spec.step)}; use a larger step")]
    lo_i, hi_i = (int(x) if float(x).is_integer() else x for x in (lo, hi))
    step = spec.step
    if step is not None and float(step).is_integer() and isinstance(lo_i, int) and isinstance(hi_i, int):
        step = int(step)
    values, step = grid(lo_i, hi_i, step)
    return Lever(spec.path, label, values, "range", step), []


def resolve(spec: ProblemSpec, raw: dict, source: str, base_file: Path, *, name: str, compare: tuple[Path, ...] = (),
            sha256: str = "", problems: list[tuple[str, str]] | None = None) -> Problem:
    """Check a problem spec against its base scenario and resolve it (raises DesignError)."""
    problems = list(problems or [])
    try:
        base = apply_overrides(raw, spec.set, source)
    except ScenarioError as exc:
        raise DesignError(source, [(f"set[{p!r}]" if p else "set", r) for p, r in exc.problems]) from None
    try:
        sc = scenario_from_dict(base, str(base_file))
    except ScenarioError as exc:
        raise DesignError(source, [("set" if spec.set else "base", f"the base scenario: {p + ': ' if p else ''}{r}")
                                   for p, r in exc.problems]) from None
    segments = list(sc.segments)
    orgs = [o.name for o in sc.organisation_specs]
    levers: list[Lever] = []
    for i, ls in enumerate(spec.levers):
        lever, lp = lever_from_spec(ls, f"levers[{i}]")
        problems += lp
        if lever is not None:
            levers.append(lever)
    paths = [lv.path for lv in levers]
    for i, p in enumerate(paths):
        if paths.index(p) != i:
            problems.append((f"levers[{i}].path", f"{p} is already a lever"))
    base = split_flat_tariffs(base, paths, segments)
    for i, lv in enumerate(levers):
        problems += _check_lever(base, lv, f"levers[{i}]", source)
    has_complexity = bool(complexity_groups(compile_model(sc))[0])
    targets: list[Target] = []
    objective = None
    if spec.objective is not None:
        sense = "minimise" if spec.objective.minimise is not None else "maximise"
        text = spec.objective.minimise or spec.objective.maximise
        try:
            fig = parse_figure_text(text)
            why = check_figure(fig, segments, orgs, has_complexity, sc.value is not None)
            if why:
                problems.append((f"objective.{sense}", why))
            objective = Objective(fig, sense)
        except TargetError as exc:
            problems.append((f"objective.{sense}", str(exc)))
    for i, text in enumerate(spec.constraints):
        try:
            t = parse_target(text)
        except TargetError as exc:
            problems.append((f"constraints[{i}]", str(exc)))
            continue
        why = check_figure(t.figure, segments, orgs, has_complexity, sc.value is not None)
        if why:
            problems.append((f"constraints[{i}]", why))
        targets.append(t)
    if spec.objective is None and (len(spec.levers) != 1 or len(spec.constraints) != 1):
        problems.append(("objective", "required, unless the problem is a goal seek: one lever and one constraint"))
    if spec.search.final_replications < spec.search.max_replications:
        problems.append(("search.final_replications", "must be at least search.max_replications"))
    if problems:
        raise DesignError(source, problems)
    return Problem(name=name, description=spec.description, source=source, base_file=base_file, base=base,
                   levers=tuple(levers), objective=objective, constraints=tuple(targets), search=spec.search,
                   verify=spec.verify, compare=compare, fixed=dict(spec.set), sha256=sha256, segments=tuple(segments),
                   organisations=tuple(orgs), currency=sc.currency, has_complexity=has_complexity)


def _check_lever(base: dict, lever: Lever, where: str, source: str) -> list[tuple[str, str]]:
    """The lever's path must lead somewhere, and its end values must make valid scenarios (others at base)."""
    try:
        get_value(base, lever.path)
    except PathError as exc:
        if "is not set" not in str(exc):
            return [(f"{where}.path", str(exc))]
    ends = [lever.values[0], lever.values[-1]] if lever.kind == "range" else list(lever.values)
    for v in ends[:20]:
        try:
            raw = apply_overrides(base, {lever.path: v}, source)
        except ScenarioError as exc:
            return [(f"{where}.path", exc.problems[0][1])]
        try:
            scenario_from_dict(raw, source)
        except ScenarioError as exc:
            p, rule = exc.problems[0]
            return [(where, f"at {fmt_value(v)} the scenario it makes breaks a rule: {p + ': ' if p else ''}{rule}")]
    return []


def problem_fingerprint(problem: Problem) -> str:
    """Hash of everything that decides the answer: the base mapping, levers, objective, constraints and settings."""
    blob = {
        "base": problem.base, "levers": [(lv.path, list(lv.values)) for lv in problem.levers],
        "objective": problem.objective.text if problem.objective else None,
        "constraints": [c.text for c in problem.constraints], "search": problem.search.model_dump(),
        "verify": problem.verify.model_dump(), "compare": [str(c) for c in problem.compare],
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


SHARE_FIELDS = ("share_of_value", "management_fee", "rejection", "deadweight", "repayment_share", "band", "share")
GOAL_SEEK_OPTIONS = {"levers[0].path": "--lever", "levers[0].range": "--range", "levers[0].step": "--step", "levers[0]": "--lever",
                     "constraints[0]": "--target", "search.final_replications": "--replications",
                     "verify.replications": "--verify-replications"}


def goal_seek_problem(scenario: str | Path, lever: str, target: str, *, range_: tuple[float, float] | None = None,
                      step: float | None = None, seed: int = 0, replications: int = 200, verify_replications: int = 500,
                      verify_seed: int | None = None) -> Problem:
    """The simple form: one lever of a scenario file and one target (raises DesignError naming the options)."""
    path = Path(scenario)
    source = str(path)
    try:
        raw = load_raw(path)
    except ScenarioError as exc:
        raise DesignError(exc.source, exc.problems) from None
    if range_ is None:
        last = lever.rsplit(".", 1)[-1]
        parent = lever.rsplit(".", 2)[-2] if lever.count(".") >= 1 else ""
        if last in SHARE_FIELDS or parent.endswith("pass_through"):
            range_ = (0.0, 1.0)
            step = step or 0.01
        else:
            raise DesignError(source, [("--range", f"give the range to search for {lever}, e.g. --range 0 20000 --step 500 "
                                                   "(only shares have a default range, 0 to 1)")])
    data = {"base": path.name, "levers": [{"path": lever, "range": list(range_), "step": step}], "constraints": [target],
            "search": {"seed": seed, "final_replications": replications, "max_replications": min(40, replications),
                       "first_replications": min(20, replications)},
            "verify": {"replications": verify_replications, "seed": verify_seed}}
    try:
        spec = ProblemSpec.model_validate(data)
    except ValidationError as exc:
        raise DesignError(source, [(GOAL_SEEK_OPTIONS.get(p, p), r) for p, r in _spec_problems(exc)]) from None
    try:
        sha = hashlib.sha256(json.dumps(data, sort_keys=True).encode() + file_hash(path).encode()).hexdigest()
        return resolve(spec, raw, source, path.resolve(), name=goal_seek_name(str(raw.get("name", path.stem)), lever), sha256=sha)
    except DesignError as exc:
        raise DesignError(exc.source, [(_option(p), r) for p, r in exc.problems]) from None


def goal_seek_name(scenario_name: str, lever: str) -> str:
    """``<scenario>--<lever path>`` with the path's brackets and selectors made file-name safe."""
    import re

    tail = re.sub(r"[^A-Za-z0-9_.+-]+", "_", lever).strip("_.")
    return f"{scenario_name}--{tail}"[:100]


def _option(path: str) -> str:
    for k in sorted(GOAL_SEEK_OPTIONS, key=len, reverse=True):
        if path == k or path.startswith(k + "."):
            return GOAL_SEEK_OPTIONS[k]
    return path
