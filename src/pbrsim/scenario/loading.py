"""Reading input files safely: regular files only, bounded size, UTF-8, and YAML read by the 1.2 rules.

Every file pbrsim reads (scenarios and their ``extends`` parents, experiment, stresses and targets
files, the INDIGO CSV files) comes through ``read_bytes``, so a device (``/dev/zero``), a pipe or an
oversized file is refused before it is read, and a file is never read past its size limit. YAML is
then checked event by event (no recursion) for nesting depth and for the number of values it holds
with every alias use counted in full, so an alias bomb is refused before any of it is built. Only
then is it loaded, with:

* the YAML 1.2 core schema: ``1e3`` is a number; ``yes``/``no``/``on``/``off`` and dates stay text;
  only plain data (mappings, lists, text, numbers, true/false, null) — no other tags;
* merge keys (``<<: *defaults``), whose keys the mapping's own keys override;
* duplicate keys refused (a silent overwrite is a bug in a file).

Every problem is a ``ScenarioError`` naming the file (and the line and column for YAML problems).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

from . import limits as lim
from .errors import ScenarioError

MERGE_TAG = "tag:yaml.org,2002:merge"
_Base = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader  # libyaml when installed: the same rules, faster


# ---------------------------------------------------------------------------------------------
# Bytes and text


def _size_problem(size: int, max_bytes: int, limits: lim.Limits, kind: str) -> str:
    return (f"the file is {lim.fmt_bytes(size) if size >= lim.MIB else f'{size:,} bytes'}; a {kind} may be at most "
            f"{lim.fmt_bytes(max_bytes)} ({limits.flag_hint()})")


def read_bytes(path: str | Path, *, kind: str = "YAML file", max_bytes: int | None = None, limits: lim.Limits | None = None) -> bytes:
    """The contents of a regular file no larger than ``max_bytes``; anything else is a ScenarioError.

    A device, pipe or folder is refused without reading (opening a pipe would wait for a writer), and
    at most ``max_bytes + 1`` bytes are ever read, so a file that grows while it is read is refused too.
    """
    limits = limits or lim.active()
    if max_bytes is None:
        max_bytes = limits.yaml_bytes
    source = str(path)

    def fail(rule: str):
        raise ScenarioError(source, [("", rule)])

    try:
        st = os.stat(path)
    except OSError as exc:
        fail(f"cannot read file: {exc.strerror or exc}")
    if stat.S_ISDIR(st.st_mode):
        fail("is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        fail("is not a regular file (a device, pipe or socket cannot be read as input); give a file")
    if st.st_size > max_bytes:
        fail(_size_problem(st.st_size, max_bytes, limits, kind))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        fail(f"cannot read file: {exc.strerror or exc}")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between the check and the opening
            fail("is not a regular file (a device, pipe or socket cannot be read as input); give a file")
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        fail(f"cannot read file: {exc.strerror or exc}")
    finally:
        os.close(fd)
    if total > max_bytes:
        fail(_size_problem(total, max_bytes, limits, kind))
    return b"".join(chunks)


def decode_utf8(data: bytes, source: str) -> str:
    """UTF-8 text (a byte-order mark is dropped); otherwise a ScenarioError giving where the first bad byte is."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ScenarioError(source, [("", f"not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, column {column} "
                                          "cannot be read; save the file as UTF-8")]) from None


def read_text(path: str | Path, *, kind: str = "YAML file", max_bytes: int | None = None, limits: lim.Limits | None = None) -> str:
    return decode_utf8(read_bytes(path, kind=kind, max_bytes=max_bytes, limits=limits), str(path))


# ---------------------------------------------------------------------------------------------
# The YAML 1.2 core schema on PyYAML


class SafeLoader(_Base):
    """PyYAML's safe loader with the YAML 1.2 core schema, merge keys and no duplicate keys."""

    yaml_implicit_resolvers: dict = {}
    yaml_constructors: dict = {}

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue  # merged keys may be overridden by the mapping's own keys
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    raise ConstructorError("while constructing a mapping", node.start_mark,
                                           "found a key that is a list or mapping", key_node.start_mark) from None
                if key in seen:
                    raise ConstructorError(None, None, f"duplicate key {key!r} (first at line {seen[key].line + 1})",
                                           key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_INT = re.compile(r"^[-+]?[0-9]+$|^0o[0-7]+$|^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$")
_RESOLVERS = [
    ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")),
    ("tag:yaml.org,2002:int", _INT, list("-+0123456789")),
    ("tag:yaml.org,2002:float", _FLOAT, list("-+.0123456789")),
    ("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]),
    (MERGE_TAG, re.compile(r"^(?:<<)$"), ["<"]),
]
for _tag, _regexp, _first in _RESOLVERS:
    SafeLoader.add_implicit_resolver(_tag, _regexp, _first)


def _scalar(loader: SafeLoader, node) -> str:
    return loader.construct_scalar(node)


def _construct_int(loader: SafeLoader, node) -> int:
    value = _scalar(loader, node)
    digits = value.lstrip("+-")
    if len(digits) > lim.MAX_DIGITS:
        raise ConstructorError(None, None, f"a number with {len(digits)} digits is too large for pbrsim", node.start_mark)
    try:
        if digits.startswith("0o"):
            n = int(digits[2:], 8)
        elif digits.startswith("0x"):
            n = int(digits[2:], 16)
        else:
            n = int(digits, 10)
    except ValueError:
        raise ConstructorError(None, None, f"{value!r} is not an integer", node.start_mark) from None
    return -n if value.startswith("-") else n


def _construct_float(loader: SafeLoader, node) -> float:
    value = _scalar(loader, node)
    text = value.lower()
    if text in (".inf", "+.inf"):
        return float("inf")
    if text == "-.inf":
        return float("-inf")
    if text == ".nan":
        return float("nan")
    try:
        return float(value)
    except ValueError:
        raise ConstructorError(None, None, f"{value!r} is not a number", node.start_mark) from None


def _construct_bool(loader: SafeLoader, node) -> bool:
    value = _scalar(loader, node).lower()
    if value not in ("true", "false"):
        raise ConstructorError(None, None, f"{value!r} is not true or false", node.start_mark)
    return value == "true"


def _construct_null(loader: SafeLoader, node) -> None:
    _scalar(loader, node)
    return None


def _construct_map(loader: SafeLoader, node):
    data: dict = {}
    yield data
    data.update(loader.construct_mapping(node))


def _construct_undefined(loader: SafeLoader, node):
    raise ConstructorError(None, None, f"the tag {node.tag!r} is not allowed: pbrsim files hold plain data only "
                           "(mappings, lists, text, numbers, true/false and null)", node.start_mark)


SafeLoader.add_constructor("tag:yaml.org,2002:null", _construct_null)
SafeLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
SafeLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
SafeLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
SafeLoader.add_constructor("tag:yaml.org,2002:str", yaml.constructor.SafeConstructor.construct_yaml_str)
SafeLoader.add_constructor("tag:yaml.org,2002:seq", yaml.constructor.SafeConstructor.construct_yaml_seq)
SafeLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
SafeLoader.add_constructor(None, _construct_undefined)


# ---------------------------------------------------------------------------------------------
# Shape check before loading


class _ShapeError(Exception):
    def __init__(self, rule: str, mark):
        self.rule, self.mark = rule, mark


def check_shape(text: str, limits: lim.Limits) -> int:
    """Walk the YAML events (no recursion, nothing built): refuse deep nesting, recursive aliases and more
    than ``limits.values`` values with every alias use counted in full. Returns the number of values."""
    cap = limits.values
    sizes: dict[str, int] = {}  # anchor -> values under it (capped at cap + 1)
    stack: list[list] = []  # open collections: [values so far, anchor]
    total = 0
    for ev in yaml.parse(text, Loader=SafeLoader):
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(stack) >= lim.MAX_DEPTH:
                raise _ShapeError(f"nested more than {lim.MAX_DEPTH} levels deep", ev.start_mark)
            stack.append([1, ev.anchor])
            sizes.pop(ev.anchor, None)  # an alias to it from inside is recursive, even if the name was used before
            added = 1  # the collection itself; its contents are counted as they come
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            n, anchor = stack.pop()
            if anchor is not None:
                sizes[anchor] = n
            if stack:
                stack[-1][0] = min(stack[-1][0] + n, cap + 1)
            continue
        elif isinstance(ev, yaml.ScalarEvent):
            added = 1
            if ev.anchor is not None:
                sizes[ev.anchor] = 1
        elif isinstance(ev, yaml.AliasEvent):
            if ev.anchor not in sizes:
                if any(a == ev.anchor for _, a in stack):
                    raise _ShapeError(f"the alias *{ev.anchor} refers to a block that contains it (a recursive alias)",
                                      ev.start_mark)
                raise _ShapeError(f"the alias *{ev.anchor} has no anchor &{ev.anchor} before it", ev.start_mark)
            added = sizes[ev.anchor]
        else:
            continue
        if stack and not isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            stack[-1][0] = min(stack[-1][0] + added, cap + 1)
        total = min(total + added, cap + 1)
        if total > cap:
            what = "with its aliases expanded, the file holds" if isinstance(ev, yaml.AliasEvent) else "the file holds"
            raise _ShapeError(f"{what} more than {cap:,} values; a file may hold at most {cap:,} "
                              f"({limits.flag_hint()})", ev.start_mark)
    return total


def _where(mark) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def load_yaml_text(text: str, source: str, limits: lim.Limits | None = None) -> Any:
    """The data of a YAML document, read safely (see the module docstring); errors name ``source``."""
    limits = limits or lim.active()
    try:
        check_shape(text, limits)
        return yaml.load(text, Loader=SafeLoader)
    except _ShapeError as exc:
        raise ScenarioError(source, [("", f"not accepted as YAML{_where(exc.mark)}: {exc.rule}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        what = " ".join(str(x) for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x) or str(exc)
        raise ScenarioError(source, [("", f"not valid YAML{_where(mark)}: {what}")]) from None
    except (ValueError, TypeError, RecursionError, MemoryError) as exc:  # a reader's guard tripped: still the file's fault
        raise ScenarioError(source, [("", f"not valid YAML: {type(exc).__name__}: {exc}")]) from None


def read_yaml_data(path: str | Path, limits: lim.Limits | None = None) -> Any:
    """Whatever YAML document ``path`` holds, read safely."""
    return load_yaml_text(read_text(path, limits=limits), str(path), limits)


def read_yaml(path: str | Path, limits: lim.Limits | None = None) -> dict:
    """A YAML file whose top level is a mapping of fields, read safely."""
    data = read_yaml_data(path, limits)
    if not isinstance(data, dict):
        raise ScenarioError(str(path), [("", "the file must hold a mapping of fields at the top level")])
    return data
