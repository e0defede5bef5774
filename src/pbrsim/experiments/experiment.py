"""Experiment files: a base scenario, named designs (overrides of it), sweeps, replications and a seed.

An experiment resolves to a list of :class:`Design` objects, each a complete, validated scenario with a
fingerprint (hash of its scenario, the seed, the tables kept and the pbrsim version) used to resume a
batch and to refuse a changed one. Problems are reported like scenario problems — file, field path,
rule — all at once, before anything runs or is written. See docs/experiments.md for the file format.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import __version__
from ..scenario import limits as lim
from ..scenario.bounds import run_problems
from ..scenario.overrides import PathError, apply_overrides, parse_path
from ..scenario.schema import Scenario, ScenarioError, file_hash, read_yaml, scenario_from_dict, validate_file

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
_NAME = re.compile(NAME_PATTERN)
MAX_POINTS = 10_000  # values in one {from, to, step} range (--allow-large: MAX_POINTS_LARGE)
MAX_POINTS_LARGE = 10_000_000
RUN_TABLES = ("replications",)  # tables written besides the engine's (see pbrsim.engine.records.TABLES)


class ExperimentError(ScenarioError):
    """An experiment file broke a rule; ``problems`` is a list of (field path, rule) pairs."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DesignSpec(_Model):
    name: str = Field(..., pattern=NAME_PATTERN, max_length=100, description="Label of the design (letters, digits, _ . + -).")
    description: str | None = Field(None, description="What this design is and why it is compared.")
    baseline: bool = Field(False, description="Paired differences are against this design (default: the first design).")
    base: str | None = Field(None, description="A different base scenario for this design (path relative to the experiment file).")
    set: dict[str, Any] = Field(default_factory=dict, description="Overrides `field.path: value` applied to the base scenario.")
    remove: list[str] = Field(default_factory=list, description="Field paths deleted from the base scenario (before `set`).")


class SweepSpec(_Model):
    name: str = Field(..., pattern=NAME_PATTERN, max_length=60, description="Prefix of the designs made by the sweep.")
    description: str | None = None
    base: str | None = Field(None, description="A different base scenario for this sweep.")
    set: dict[str, Any] = Field(default_factory=dict, description="Overrides applied to every point of the sweep.")
    remove: list[str] = Field(default_factory=list, description="Field paths deleted from the base for every point.")
    grid: dict[str, Any] | None = Field(None, description="`field.path: values`; every combination is a design (cartesian product).")
    zip: dict[str, Any] | None = Field(None, description="`field.path: values` of equal length, varied together (one design per position).")
    labels: dict[str, str] = Field(default_factory=dict, description="Short labels of swept paths used in design names.")


class ExperimentSpec(_Model):
    name: str | None = Field(None, pattern=NAME_PATTERN, max_length=100, description="Default: the file name without extension.")
    description: str | None = None
    base: str = Field(..., description="Base scenario file, relative to the experiment file.")
    seed: int = Field(0, ge=0, description="Root random seed; replication r of every design uses the same random streams.")
    replications: int = Field(..., ge=1, le=1_000_000, description="Replications of each design.")
    tables: list[str] | None = Field(None, description="Tables a batch keeps per run (default all); `replications` is always kept.")
    designs: list[DesignSpec] = Field(default_factory=list)
    sweeps: list[SweepSpec] = Field(default_factory=list)


@dataclass(frozen=True)
class Design:
    """One design resolved to a complete scenario."""

    name: str
    origin: str  # where it comes from in the file, e.g. "designs[1]" or "sweeps[0] point 3"
    description: str | None
    base: Path
    overrides: dict
    remove: tuple[str, ...]
    raw: dict  # the scenario mapping after overrides
    scenario: Scenario
    fingerprint: str
    baseline: bool = False

    def manifest_entry(self) -> dict:
        return {"name": self.name, "sha256": self.fingerprint, "origin": self.origin, "description": self.description,
                "base": str(self.base), "remove": list(self.remove), "set": self.overrides, "baseline": self.baseline}


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    sha256: str
    description: str | None
    seed: int
    replications: int
    tables: tuple[str, ...] | None  # None = every table
    designs: tuple[Design, ...]
    base_hashes: dict = field(default_factory=dict)

    @property
    def baseline(self) -> Design:
        return next(d for d in self.designs if d.baseline)

    def design(self, name: str) -> Design:
        for d in self.designs:
            if d.name == name:
                return d
        raise KeyError(name)

    @property
    def runs(self) -> int:
        return len(self.designs) * self.replications


# ---------------------------------------------------------------------------------------------
# Problems


def field_location(loc: tuple) -> str:
    """A pydantic error location as a field path (keys that are themselves field paths are quoted)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(part)):
            out += ("." if out else "") + str(part)
        else:
            out += f"[{str(part)!r}]"  # a field path used as a key, e.g. grid['contract.cap']
    return out


def _spec_problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (see docs/experiments.md for the fields allowed here)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "string_pattern_mismatch":
            msg = "names may use letters, digits and _ . + - (they become folder names), starting with a letter or digit"
        problems.append((field_location(err["loc"]), msg))
    return list(dict.fromkeys(problems))


# ---------------------------------------------------------------------------------------------
# Sweep values


def expand_values(spec: Any) -> list:
    """A list as given, or ``{from, to, step}`` expanded inclusively (ints stay ints); ValueError if bad."""
    if isinstance(spec, list):
        if not spec:
            raise ValueError("the list of values is empty")
        return list(spec)
    if isinstance(spec, dict):
        unknown = set(spec) - {"from", "to", "step"}
        missing = {"from", "to", "step"} - set(spec)
        if unknown or missing:
            raise ValueError("a range is written {from: A, to: B, step: S}" + (f"; unknown {sorted(unknown)}" if unknown else "")
                             + (f"; missing {sorted(missing)}" if missing else ""))
        a, b, s = spec["from"], spec["to"], spec["step"]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in (a, b, s)):
            raise ValueError("from, to and step must be finite numbers")
        if s == 0:
            raise ValueError("step must not be 0")
        if (b - a) / s < 0:
            raise ValueError(f"a step of {s} never gets from {a} to {b}")
        most = MAX_POINTS_LARGE if lim.active().large else MAX_POINTS
        span = (b - a) / s + 1e-9
        if not span < most:  # also catches an overflow to infinity
            raise ValueError(f"the range has {lim.fmt_count(math.floor(span) + 1 if math.isfinite(span) else span)} values; "
                             f"at most {most:,} ({lim.active().flag_hint()})")
        n = math.floor(span) + 1
        whole = all(isinstance(x, int) for x in (a, b, s))
        return [a + i * s if whole else round(a + i * s, 12) for i in range(n)]
    raise ValueError("values must be a list, e.g. [0.1, 0.2], or a range {from: 0, to: 0.5, step: 0.1}")


def _format_value(v: Any, position: int) -> str:
    if isinstance(v, bool):
        text = str(v).lower()
    elif isinstance(v, int):
        text = str(v)
    elif isinstance(v, float):
        text = format(v, ".10g")
    elif isinstance(v, str):
        text = v
    else:
        text = f"v{position}"  # mappings and lists are named by their position in the list
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text) or f"v{position}"


def _labels(paths: list[str], given: dict[str, str]) -> dict[str, str]:
    """Short labels: the last key of each path, lengthened with earlier keys until they are distinct."""
    keys = {p: [s.key for s in parse_path(p) if s.key is not None] for p in paths}
    depth = 1
    while True:
        labels = {p: given.get(p) or "_".join(keys[p][-depth:]) for p in paths}
        if len(set(labels.values())) == len(labels) or depth > max(len(k) for k in keys.values()):
            return {p: re.sub(r"[^A-Za-z0-9_.+-]", "_", lab) for p, lab in labels.items()}
        depth += 1


def sweep_points(sweep: SweepSpec) -> list[tuple[str, dict]]:
    """(design name, {path: value}) for every point: grid axes in file order, crossed with the zipped lists."""
    grid = {p: expand_values(v) for p, v in (sweep.grid or {}).items()}
    zipped = {p: expand_values(v) for p, v in (sweep.zip or {}).items()}
    labels = _labels(list(grid) + list(zipped), sweep.labels)
    axes: list[list[list[tuple[str, Any, int]]]] = [[[(p, v, i)] for i, v in enumerate(vals)] for p, vals in grid.items()]
    if zipped:
        n = len(next(iter(zipped.values())))
        axes.append([[(p, vals[i], i) for p, vals in zipped.items()] for i in range(n)])
    points = []
    for combo in itertools.product(*axes):
        items = [x for group in combo for x in group]
        name = sweep.name + "_" + "_".join(f"{labels[p]}-{_format_value(v, i)}" for p, v, i in items)
        points.append((name, {p: v for p, v, _ in items}))
    return points


def _sweep_rules(i: int, sw: SweepSpec) -> list[tuple[str, str]]:
    p = []
    where = f"sweeps[{i}]"
    if not sw.grid and not sw.zip:
        p.append((where, "a sweep needs `grid` (every combination) or `zip` (lists varied together), or both"))
    lengths = {}
    for group in ("grid", "zip"):
        for path, spec in (getattr(sw, group) or {}).items():
            loc = f"{where}.{group}[{path!r}]"
            try:
                parse_path(path)
            except PathError as exc:
                p.append((loc, str(exc)))
            try:
                vals = expand_values(spec)
                if group == "zip":
                    lengths[path] = len(vals)
            except ValueError as exc:
                p.append((loc, str(exc)))
    if len(set(lengths.values())) > 1:
        p.append((f"{where}.zip", f"zipped lists must have the same length; they have {lengths}"))
    swept = set(sw.grid or {}) | set(sw.zip or {})
    both = set(sw.grid or {}) & set(sw.zip or {})
    for path in sorted(both):
        p.append((f"{where}.zip[{path!r}]", "this path is also in grid; sweep each path once"))
    for path in sw.labels:
        if path not in swept:
            p.append((f"{where}.labels[{path!r}]", "not a swept path of this sweep"))
    return p


# ---------------------------------------------------------------------------------------------
# Size limits


def _sweep_size(sw: SweepSpec) -> int:
    """Points a (valid) sweep makes, counted without making them: grid lengths multiplied, times the zip length."""
    n = 1
    for spec in (sw.grid or {}).values():
        n *= len(expand_values(spec))
    if sw.zip:
        n *= len(expand_values(next(iter(sw.zip.values()))))
    return n


def _count_problems(spec: ExperimentSpec, limits: lim.Limits) -> list[tuple[str, str]]:
    """Designs and runs against the limits, before any design is made."""
    sizes = [_sweep_size(sw) for sw in spec.sweeps]
    designs = len(spec.designs) + sum(sizes)
    hint = limits.flag_hint()
    if limits.designs is not None and designs > limits.designs:
        where = f"sweeps[{sizes.index(max(sizes))}]" if sizes and max(sizes) > len(spec.designs) else "designs"
        grid = ""
        if sizes:
            sw = spec.sweeps[sizes.index(max(sizes))]
            axes = [len(expand_values(v)) for v in (sw.grid or {}).values()] + ([len(expand_values(next(iter(sw.zip.values()))))] if sw.zip else [])
            grid = f" (the largest sweep: {' × '.join(f'{a:,}' for a in axes)} values)"
        return [(where, f"the experiment makes {lim.fmt_count(designs)} designs{grid}; at most {limits.designs:,} ({hint})")]
    runs = designs * spec.replications
    if limits.runs is not None and runs > limits.runs:
        return [("replications", f"{designs:,} designs × {spec.replications:,} replications = {lim.fmt_count(runs)} runs; "
                 f"at most {limits.runs:,} ({hint})")]
    return []


def count_values(data: Any) -> int:
    """Values in a mapping read from YAML: each mapping, list and scalar counts one."""
    if isinstance(data, dict):
        return 1 + sum(1 + count_values(v) for v in data.values())
    if isinstance(data, list):
        return 1 + sum(count_values(v) for v in data)
    return 1


def _design_values_problems(entries, bases, path: Path, spec: ExperimentSpec, limits: lim.Limits) -> list[tuple[str, str]]:
    """All designs' scenarios held at once must stay within ``limits.design_values``."""
    if limits.design_values is None:
        return []
    sizes: dict[Path, int] = {}
    total = 0
    for _name, _origin, _desc, rel, overrides, _remove, _sweep in entries:
        bpath = (path.parent / (rel or spec.base)).resolve()
        if bpath not in sizes:
            sizes[bpath] = count_values(bases[bpath])
        total += sizes[bpath] + count_values(overrides)
    if total > limits.design_values:
        return [("designs", f"{len(entries):,} designs of scenarios of about {max(sizes.values()):,} values each hold "
                 f"{total:,} values in all; at most {limits.design_values:,} ({limits.flag_hint()})")]
    return []


def _run_size_problems(designs: list[Design], replications: int, limits: lim.Limits) -> list[tuple[str, str]]:
    """Each design's runs against the memory limit and 64-bit totals; a field broken by several designs is reported once."""
    grouped: dict[str, list] = {}
    for d in designs:
        for p, rule in run_problems(d.scenario, replications, limits, what="replications"):
            grouped.setdefault(p, [rule]).append(d.name)
    out = []
    for p, (rule, *names) in grouped.items():
        more = f" (and {len(names) - 1} more design{'s' if len(names) > 2 else ''})" if len(names) > 1 else ""
        out.append(("replications", f"design {names[0]}{more}, in the scenario it makes, {p}: {rule}"))
    return out


# ---------------------------------------------------------------------------------------------
# Loading


def _action(problem_path: str) -> str:
    """'remove x' stays as it is; a path that failed to be set becomes 'set x'."""
    return problem_path if problem_path.startswith("remove ") else f"set {problem_path}"


def fingerprint(raw: dict, seed: int, tables: tuple[str, ...] | None) -> str:
    """What makes a design's runs valid: its scenario, the seed, the tables kept, the pbrsim version."""
    payload = {"scenario": raw, "seed": seed, "tables": list(tables) if tables else None, "version": __version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _known_tables() -> tuple[str, ...]:
    from ..engine.records import TABLES  # the engine's table names; imported late so the schema stays engine-free

    return tuple(TABLES) + RUN_TABLES


def load_experiment(path: str | Path) -> Experiment:
    """Read, validate and resolve an experiment file; raises ExperimentError with every problem found."""
    path = Path(path)
    src = str(path)
    data = read_yaml(path)
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise ExperimentError(src, _spec_problems(exc)) from None

    problems: list[tuple[str, str]] = []
    if not spec.designs and not spec.sweeps:
        problems.append(("designs", "an experiment needs at least one design or sweep"))
    if spec.tables is not None:
        known = _known_tables()
        for i, t in enumerate(spec.tables):
            if t not in known:
                problems.append((f"tables[{i}]", f"unknown table {t!r}; tables are {list(known)}"))
    baselines = [d.name for d in spec.designs if d.baseline]
    if len(baselines) > 1:
        problems.append(("designs", f"only one design can be the baseline; marked: {baselines}"))
    for i, sw in enumerate(spec.sweeps):
        problems += _sweep_rules(i, sw)
    for i, d in enumerate(spec.designs):
        for fpath in list(d.set) + d.remove:
            try:
                parse_path(fpath)
            except PathError as exc:
                problems.append((f"designs[{i}] ({d.name})", str(exc)))
    if problems:
        raise ExperimentError(src, problems)

    limits = lim.active()
    problems += _count_problems(spec, limits)
    if problems:
        raise ExperimentError(src, problems)

    # every design as (name, origin, description, base file, overrides, remove, sweep index or None)
    entries = [(d.name, f"designs[{i}] ({d.name})", d.description, d.base, dict(d.set), tuple(d.remove), None)
               for i, d in enumerate(spec.designs)]
    for i, sw in enumerate(spec.sweeps):
        points = sweep_points(sw)
        for name, values in points:
            entries.append((name, f"sweeps[{i}] ({sw.name}) point {name}", sw.description, sw.base,
                            {**sw.set, **values}, tuple(sw.remove), i))
    seen: dict[str, str] = {}
    for name, origin, *_ in entries:
        if name in seen:
            problems.append((origin, f"design name {name!r} is already used by {seen[name]}; names must be unique"))
        seen.setdefault(name, origin)
    if problems:
        raise ExperimentError(src, problems)

    # bases: read and validated once each
    bases: dict[Path, dict | None] = {}
    base_hashes: dict[str, str] = {}
    base_refs = [("base", spec.base)] + [(f"designs[{i}].base", d.base) for i, d in enumerate(spec.designs) if d.base]
    base_refs += [(f"sweeps[{i}].base", sw.base) for i, sw in enumerate(spec.sweeps) if sw.base]
    for origin, rel in base_refs:
        bpath = (path.parent / rel).resolve()
        if bpath in bases:
            continue
        try:
            raw, _ = validate_file(bpath)
        except ScenarioError as exc:
            problems += [(origin, f"{rel}: {p + ': ' if p else ''}{rule}") for p, rule in exc.problems]
            bases[bpath] = None
            continue
        bases[bpath] = raw
        base_hashes[str(bpath)] = file_hash(bpath)
    # a sweep's own `set` / `remove` must apply to its base; reported once rather than for every point
    for i, sw in enumerate(spec.sweeps):
        try:
            apply_overrides(bases[(path.parent / (sw.base or spec.base)).resolve()] or {}, sw.set, src, remove=sw.remove)
        except ScenarioError as exc:
            problems += [(f"sweeps[{i}] ({sw.name}): {_action(p)}", rule) for p, rule in exc.problems]
    if problems:
        raise ExperimentError(src, problems)
    problems += _design_values_problems(entries, bases, path, spec, limits)
    if problems:
        raise ExperimentError(src, problems)

    tables = tuple(dict.fromkeys(list(spec.tables) + ["replications"])) if spec.tables is not None else None
    designs = []
    base_name = baselines[0] if baselines else entries[0][0]
    # problems of sweep points are grouped: a field broken by several points is reported once, with the first point's rule
    grouped: dict[tuple, list] = {}
    for name, origin, desc, rel, overrides, remove, sweep in entries:
        bpath = (path.parent / (rel or spec.base)).resolve()
        found: list[tuple[str, str]] = []
        try:
            raw = apply_overrides(bases[bpath], overrides, src, remove=remove)
        except ScenarioError as exc:
            found = [(_action(p), rule) for p, rule in exc.problems]
        else:
            try:
                sc = scenario_from_dict(raw, src)
            except ScenarioError as exc:
                found = [(f"in the scenario it makes, {p}" if p else "in the scenario it makes", rule) for p, rule in exc.problems]
        if not found:
            designs.append(Design(name=name, origin=origin, description=desc, base=bpath, overrides=overrides, remove=remove,
                                  raw=raw, scenario=sc, fingerprint=fingerprint(raw, spec.seed, tables), baseline=name == base_name))
            continue
        for p, rule in found:
            if sweep is None:
                problems.append((f"{origin}: {p}", rule))
            else:
                grouped.setdefault((sweep, p), [rule]).append(name)
    for (sweep, p), (rule, *names) in grouped.items():
        more = f" (and {len(names) - 1} more point{'s' if len(names) > 2 else ''})" if len(names) > 1 else ""
        problems.append((f"sweeps[{sweep}] ({spec.sweeps[sweep].name}) point {names[0]}{more}: {p}", rule))
    problems += _run_size_problems(designs, spec.replications, limits)
    if problems:
        raise ExperimentError(src, problems)
    return Experiment(name=spec.name or path.stem, path=path, sha256=file_hash(path), description=spec.description, seed=spec.seed,
                      replications=spec.replications, tables=tables, designs=tuple(designs), base_hashes=base_hashes)
