"""Kinds of input file: a scenario, an experiment, a stresses file, calibration targets, a portfolio, a design
problem — told apart by their top-level fields, so that a file given to the wrong command gets one line
naming the command it is for instead of a list of field errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ScenarioError
from .loading import read_yaml_data

# kind -> (what people call it, the command for it)
KINDS = {
    "scenario": ("a scenario file", "pbrsim run FILE (or pbrsim stress FILE)"),
    "experiment": ("an experiment file", "pbrsim compare FILE (or pbrsim batch FILE)"),
    "stresses": ("a stresses file", "pbrsim stress SCENARIO --stresses FILE"),
    "targets": ("a calibration targets file", "pbrsim calibrate SCENARIO FILE"),
    "portfolio": ("a portfolio file", "pbrsim portfolio FILE"),
    "design": ("a design problem file", "pbrsim design FILE"),
}

_SCENARIO = {"pathway", "contract", "segments", "referrals", "extends", "months", "provider", "organisations"}
_DESIGN = {"objective", "objectives", "search", "space", "levers", "decisions", "constraints"}


def kind_of(data: Any) -> str | None:
    """The kind a mapping read from YAML looks like, or None when it looks like none of them."""
    if not isinstance(data, dict):
        return None
    keys = {k for k in data if isinstance(k, str)}
    if keys & _SCENARIO and not {"base", "members", "stresses", "targets"} & keys:
        return "scenario"
    if "members" in keys:
        return "portfolio"
    if "targets" in keys and not keys & _SCENARIO:
        return "targets"
    if "base" in keys and keys & _DESIGN:
        return "design"
    if "base" in keys and keys & {"designs", "sweeps", "replications", "tables"}:
        return "experiment"
    if keys & {"stresses", "built_in", "recession_states"}:
        return "stresses"
    if keys & _SCENARIO:
        return "scenario"
    return None


def kind_of_file(path: str | Path) -> str | None:
    """The kind of the file at ``path`` (None if it cannot be read or looks like no kind)."""
    return read_with_kind(path)[0]


def read_with_kind(path: str | Path) -> tuple[str | None, Any]:
    """(the kind of the file at ``path``, what it holds): (None, None) if it cannot be read, (None, data) if it
    looks like no kind. For a reader that goes on to load the file without parsing it again."""
    try:
        data = read_yaml_data(path)
    except (ScenarioError, OSError, ValueError):
        return None, None
    return kind_of(data), data


def wrong_kind(path: str | Path, expected: str) -> str | None:
    """One line when ``path`` is plainly another kind of file than ``expected``: what it is and which command
    reads it; None when it is of the expected kind or of no recognisable kind."""
    found = kind_of_file(path)
    if found is None or found == expected:
        return None
    label, command = KINDS[found]
    return (f"{path} is {label}, not {KINDS[expected][0]}: use {command.replace('FILE', str(path))}. "
            "Nothing was run or written.")
