"""Levers: the contract terms a search may change, each a field path with the values it may take.

A lever is a field path into the scenario (the paths of ``scenario.overrides``: dots, ``[2]``,
``[name=sustained_job]``) and an ordered grid of values: ``range: [lo, hi]`` with a ``step`` (default 20
equal steps) or a list of ``choices``. A design is one grid position per lever. Grids keep every answer
reproducible and give each search a stated precision: one step.

A per-segment lever on a tariff written as one number (``contract.payments[name=sustained_job].tariff.complex``
when the file says ``tariff: 4000``) first splits that tariff into the same number for every segment, which
is the same contract, so the lever can move one segment's price alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..scenario.overrides import PathError, apply_overrides, get_value, parse_path, unshared_copy

DEFAULT_STEPS = 20
MAX_VALUES = 1001


@dataclass(frozen=True)
class Lever:
    path: str
    label: str
    values: tuple  # the grid, in order
    kind: str  # "range" or "choices"
    step: float | None = None

    @property
    def size(self) -> int:
        return len(self.values)

    def describe(self, label: bool = True) -> str:
        head = f"{self.label}: " if label else ""
        if self.kind == "choices":
            return f"{head}one of {list(self.values)}"
        return f"{head}{fmt_value(self.values[0])} to {fmt_value(self.values[-1])} in steps of {fmt_value(self.step)}"

    def nearest(self, value: Any) -> int | None:
        """Grid position holding ``value`` (the closest for a range, if within half a step), else None."""
        if self.kind == "choices":
            return next((i for i, v in enumerate(self.values) if v == value), None)
        if not _is_number(value):
            return None
        i = min(range(self.size), key=lambda j: abs(self.values[j] - value))
        return i if abs(self.values[i] - value) <= 1e-9 * max(1.0, abs(value)) else None


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def grid(lo: float, hi: float, step: float | None) -> tuple[tuple, float]:
    """Values lo, lo + step, ... up to hi (hi included when the steps reach it); integers when all three are."""
    if step is None:
        step = (hi - lo) / DEFAULT_STEPS
    n = int(math.floor((hi - lo) / step + 1e-9)) + 1
    integer = all(isinstance(x, int) and not isinstance(x, bool) for x in (lo, hi, step))
    if integer:
        return tuple(lo + i * step for i in range(n)), step
    digits = max(0, 10 - int(math.floor(math.log10(max(abs(lo), abs(hi), abs(step), 1e-12)))))
    values = [round(lo + i * step, digits) for i in range(n)]
    if abs(values[-1] - hi) <= 1e-9 * max(1.0, abs(hi)):
        values[-1] = hi
    return tuple(float(v) for v in values), step


def split_flat_tariffs(raw: dict, paths: list[str], segments: list[str]) -> dict:
    """A copy of ``raw`` in which each tariff a per-segment lever path goes into is a mapping by segment."""
    out = unshared_copy(raw)
    for path in paths:
        try:
            steps = parse_path(path)
        except PathError:
            continue
        last = steps[-1]
        if last.key is None or last.key not in set(segments) | {"default"} or len(steps) < 2:
            continue
        parent = path[: path.rindex("." + last.key)] if ("." + last.key) in path else None
        if parent is None:
            continue
        try:
            current = get_value(out, parent)
        except PathError:
            continue
        if _is_number(current) and (steps[-2].key in ("tariff",) or steps[-2].index is not None):
            out = apply_overrides(out, {parent: {s: current for s in segments}}, "<levers>")
    return out


def point_overrides(levers: tuple[Lever, ...], point: tuple[int, ...]) -> dict:
    """``{path: value}`` for a design (one grid position per lever)."""
    return {lv.path: lv.values[i] for lv, i in zip(levers, point)}


def apply_point(base: dict, levers: tuple[Lever, ...], point: tuple[int, ...], source: str) -> dict:
    """The scenario mapping of a design: the base with each lever set to its value (raises ScenarioError)."""
    return apply_overrides(base, point_overrides(levers, point), source)
