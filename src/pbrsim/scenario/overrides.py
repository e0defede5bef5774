"""Field-path overrides of a raw scenario mapping: how designs, sweeps and stress tests vary a scenario.

A field path is dotted keys into the mapping read from YAML, with list selectors:

    contract.service_fee.share_of_value          a key in nested mappings
    contract.payments[1].tariff.complex          the second item of a list (negative indices count from the end)
    contract.payments[name=sustained_job].lag    the one list item whose ``name`` is ``sustained_job``
    contract.payments[+]                         (setting only) a new item appended to the end of the list

Overrides are applied to the raw mapping *before* validation, so every overridden scenario is checked
exactly like a scenario file. Setting a key that is missing from a mapping adds it (the schema then
decides whether it is allowed); intermediate mappings are created when missing. List items must exist,
except that setting ``list[+]`` appends a new item. Removing deletes a key or a list item.

    >>> raw = {"contract": {"payments": [{"name": "a", "tariff": 1}]}}
    >>> apply_overrides(raw, {"contract.payments[name=a].tariff": 5}, "x.yaml")
    {'contract': {'payments': [{'name': 'a', 'tariff': 5}]}}
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import ScenarioError

_KEY = r"[^.\[\]]+"
_SEGMENT = re.compile(rf"({_KEY})((?:\[[^\[\]]*\])*)$")
_SELECTOR = re.compile(r"\[([^\[\]]*)\]")
_INDEX = re.compile(r"-?\d+$")
_MATCH = re.compile(r"([^=\s]+)\s*=\s*(.*)$")


@dataclass(frozen=True)
class Step:
    """One step of a path: a mapping key, a list index, a list item matched by ``field == value``, or
    ``[+]`` (``append``): a new item at the end of a list."""

    key: str | None = None
    index: int | None = None
    field: str | None = None
    value: str | None = None
    append: bool = False

    def __str__(self) -> str:
        if self.key is not None:
            return self.key
        if self.append:
            return "[+]"
        if self.index is not None:
            return f"[{self.index}]"
        return f"[{self.field}={self.value}]"


class PathError(ValueError):
    """A field path that cannot be parsed or does not lead anywhere in the mapping."""


def parse_path(path: str) -> list[Step]:
    """Split ``a.b[0].c[name=x]`` into steps; raises PathError for malformed paths."""
    if not isinstance(path, str) or not path.strip():
        raise PathError("a field path must be a non-empty string such as contract.service_fee.share_of_value")
    steps: list[Step] = []
    for part in path.strip().split("."):
        m = _SEGMENT.match(part)
        if not m:
            raise PathError(f"cannot read field path {path!r} at {part!r}: write keys separated by dots, "
                            "with [index] or [field=value] after a list field")
        steps.append(Step(key=m.group(1)))
        for sel in _SELECTOR.findall(m.group(2)):
            sel = sel.strip()
            if _INDEX.match(sel):
                steps.append(Step(index=int(sel)))
            elif sel == "+":
                steps.append(Step(append=True))
            elif mm := _MATCH.match(sel):
                steps.append(Step(field=mm.group(1), value=mm.group(2).strip().strip("'\"")))
            else:
                raise PathError(f"cannot read selector [{sel}] in {path!r}: use [index], [field=value] or [+] (append)")
    return steps


def _where(steps: list[Step], upto: int) -> str:
    out = ""
    for s in steps[:upto]:
        out += str(s) if s.key is None or not out else "." + str(s)
    return out or "<top level>"


def _mapping_key(node: dict, key: str):
    """The key as written, or its integer form when the mapping uses integer keys."""
    if key in node:
        return key
    if _INDEX.match(key) and int(key) in node:
        return int(key)
    return key


def _list_position(node: list, step: Step, steps: list[Step], i: int) -> int:
    where = _where(steps, i)
    if step.append:
        raise PathError(f"[+] appends a new item, so it can only end a path that is set: write {where}[+] alone")
    if step.index is not None:
        if not -len(node) <= step.index < len(node):
            hint = f" (to add an item, set {where}[+])" if step.index == len(node) else ""
            raise PathError(f"{where} has {len(node)} item{'s' if len(node) != 1 else ''}; index {step.index} is out of range{hint}")
        return step.index % len(node)
    hits = [j for j, item in enumerate(node) if isinstance(item, dict) and str(item.get(step.field)) == step.value]
    if len(hits) == 1:
        return hits[0]
    known = [item.get(step.field) for item in node if isinstance(item, dict) and step.field in item]
    if not hits:
        raise PathError(f"no item of {where} has {step.field} = {step.value!r}; {step.field}s are {known}")
    raise PathError(f"{len(hits)} items of {where} have {step.field} = {step.value!r}; use an [index] instead")


def _descend(node: Any, steps: list[Step], i: int, create: bool) -> Any:
    """The child of ``node`` at steps[i]; with ``create``, a missing mapping key becomes an empty mapping."""
    step = steps[i]
    if step.key is not None:
        if not isinstance(node, dict):
            raise PathError(f"{_where(steps, i)} is {_kind(node)}, not a mapping, so it has no field {step.key!r}")
        key = _mapping_key(node, step.key)
        if key not in node or (create and node[key] is None):
            if not create:
                raise PathError(f"{_where(steps, i + 1)} is not set{_known(node)}")
            node[key] = {}
        return node[key]
    if not isinstance(node, list):
        raise PathError(f"{_where(steps, i)} is {_kind(node)}, not a list, so {step} cannot select an item")
    return node[_list_position(node, step, steps, i)]


def _known(node: dict) -> str:
    return f" (fields here: {', '.join(map(str, node))})" if node else ""


def _kind(node: Any) -> str:
    if node is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false"}.get(type(node), "a number")


def get_value(raw: dict, path: str) -> Any:
    """The value at ``path`` (raises PathError if there is none)."""
    steps = parse_path(path)
    node = raw
    for i in range(len(steps)):
        node = _descend(node, steps, i, create=False)
    return node


def set_value(raw: dict, path: str, value: Any) -> None:
    """Set ``path`` to ``value`` in place, adding the last key (and missing mappings on the way)."""
    steps = parse_path(path)
    node = raw
    for i in range(len(steps) - 1):
        node = _descend(node, steps, i, create=steps[i + 1].key is not None)
    last = steps[-1]
    if last.key is not None:
        if not isinstance(node, dict):
            raise PathError(f"{_where(steps, len(steps) - 1)} is {_kind(node)}, not a mapping, so it has no field {last.key!r}")
        node[_mapping_key(node, last.key)] = copy.deepcopy(value)
    else:
        if not isinstance(node, list):
            raise PathError(f"{_where(steps, len(steps) - 1)} is {_kind(node)}, not a list, so {last} cannot select an item")
        if last.append:
            node.append(copy.deepcopy(value))
        else:
            node[_list_position(node, last, steps, len(steps) - 1)] = copy.deepcopy(value)


def remove_value(raw: dict, path: str) -> None:
    """Delete the key or list item at ``path`` in place."""
    steps = parse_path(path)
    node = raw
    for i in range(len(steps) - 1):
        node = _descend(node, steps, i, create=False)
    last = steps[-1]
    if last.key is not None:
        if not isinstance(node, dict):
            raise PathError(f"{_where(steps, len(steps) - 1)} is {_kind(node)}, not a mapping, so it has no field {last.key!r}")
        key = _mapping_key(node, last.key)
        if key not in node:
            raise PathError(f"{path} is not set, so it cannot be removed{_known(node)}")
        del node[key]
    else:
        if not isinstance(node, list):
            raise PathError(f"{_where(steps, len(steps) - 1)} is {_kind(node)}, not a list, so {last} cannot select an item")
        del node[_list_position(node, last, steps, len(steps) - 1)]


def unshared_copy(node: Any) -> Any:
    """A deep copy in which no mapping or list appears twice (``copy.deepcopy`` keeps YAML aliases shared)."""
    if isinstance(node, dict):
        return {k: unshared_copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [unshared_copy(v) for v in node]
    return copy.deepcopy(node)


def apply_overrides(raw: dict, overrides: dict, source: str, *, remove: Iterable[str] = ()) -> dict:
    """A copy of ``raw`` with the paths in ``remove`` deleted, then each ``path: value`` of ``overrides`` set.

    ``raw`` is not changed. Every bad path is reported at once as a ScenarioError from ``source``, each
    problem naming the path as written and why it does not apply. The copy shares nothing: parts a YAML
    file wrote once and reused with an alias (``terms: *outcome_terms``) become separate, so a path changes
    only the item it names.
    """
    out = unshared_copy(raw)
    problems: list[tuple[str, str]] = []
    for path in remove:
        try:
            remove_value(out, path)
        except PathError as exc:
            problems.append((f"remove {path}", str(exc)))
    for path, value in (overrides or {}).items():
        try:
            set_value(out, path, value)
        except PathError as exc:
            problems.append((str(path), str(exc)))
    if problems:
        raise ScenarioError(source, problems)
    return out
