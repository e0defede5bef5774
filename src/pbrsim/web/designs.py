"""The scenarios the app has open, shared by every request: opened from the folder being served or uploaded,
read with the same safe loading and limits as the command line, and varied by field paths.

A design on the page is an open scenario plus the page's changes (``{field path: value}``); the changes
travel with each request, so the only shared state here is the open scenarios, guarded by a lock.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..scenario.errors import ScenarioError
from ..scenario.loading import decode_utf8, load_yaml_text
from ..scenario import limits as lim
from ..scenario.schema import Scenario, load_scenario, scenario_from_dict
from .levers import Lever, coerce, levers_of

MAX_FILES = 500  # scenario files listed from the folder being served
MAX_OPEN = 64  # scenarios kept open; the oldest is closed beyond this


@dataclass
class Opened:
    """An open scenario: where it came from, the validated scenario and its levers."""

    id: str
    source: str
    scenario: Scenario
    levers: list[Lever] = field(default_factory=list)

    @property
    def kinds(self) -> dict[str, str]:
        return {lv.path: lv.kind for lv in self.levers}


def list_scenarios(folder: Path) -> list[str]:
    """Scenario files under ``folder`` (relative paths, sorted), at most ``MAX_FILES``: regular YAML files whose
    top-level fields make them scenarios (symbolic links and hidden folders are skipped)."""
    from ..scenario.kinds import kind_of_file

    found = []
    for path in sorted(folder.rglob("*.y*ml")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or path.is_symlink() or not path.is_file():
            continue
        if kind_of_file(path) == "scenario":
            found.append(rel.as_posix())
            if len(found) >= MAX_FILES:
                break
    return found


class Designs:
    """The open scenarios, safe to use from many request threads at once."""

    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        self._lock = threading.Lock()
        self._open: dict[str, Opened] = {}
        self._ids = itertools.count(1)
        self._listing: list[str] | None = None

    def listing(self) -> list[str]:
        with self._lock:
            if self._listing is None:
                self._listing = list_scenarios(self.folder)
            return list(self._listing)

    def _add(self, source: str, sc: Scenario) -> Opened:
        with self._lock:
            oid = f"s{next(self._ids)}"
            opened = Opened(oid, source, sc, levers_of(sc.to_dict()))
            self._open[oid] = opened
            while len(self._open) > MAX_OPEN:
                self._open.pop(next(iter(self._open)))
            return opened

    def open_file(self, name: str) -> Opened:
        """Open a scenario listed from the folder (any other name is refused: nothing outside it is read)."""
        if name not in self.listing():
            raise ScenarioError(name, [("", f"not a scenario file of the folder being served ({self.folder}); "
                                             "choose one from the list or upload it")])
        return self._add(name, load_scenario(self.folder / name))

    def open_upload(self, filename: str, data: bytes) -> Opened:
        """Open an uploaded scenario file: the same size, encoding, YAML and schema checks as a file on disk.
        ``extends`` is refused (an upload has no folder for its parent)."""
        limits = lim.active()
        name = Path(filename or "upload.yaml").name or "upload.yaml"
        if len(data) > limits.yaml_bytes:
            raise ScenarioError(name, [("", f"the file is {len(data):,} bytes; a YAML file may be at most "
                                             f"{lim.fmt_bytes(limits.yaml_bytes)} ({limits.flag_hint()})")])
        raw = load_yaml_text(decode_utf8(data, name), name, limits)
        if not isinstance(raw, dict):
            raise ScenarioError(name, [("", "the file must hold a mapping of fields at the top level")])
        if "extends" in raw:
            raise ScenarioError(name, [("extends", "an uploaded file cannot extend another file: put both in the folder "
                                                   "`pbrsim serve` was started on and open it from the list")])
        from ..scenario.kinds import KINDS, kind_of

        kind = kind_of(raw)
        if kind not in (None, "scenario"):
            raise ScenarioError(name, [("", f"this is {KINDS[kind][0]}, not a scenario file")])
        return self._add(f"upload: {name}", scenario_from_dict(raw, name, limits))

    def get(self, oid: str) -> Opened:
        with self._lock:
            if oid not in self._open:
                raise KeyError(oid)
            return self._open[oid]


def design(opened: Opened, changes: dict | None, name: str | None = None) -> Scenario:
    """The open scenario with the page's changes applied and validated (ScenarioError names each path and rule)."""
    changes = coerce(opened.kinds, dict(changes or {}))
    if not changes and name is None:
        return opened.scenario
    try:
        return opened.scenario.vary(changes, name=name)
    except ScenarioError as exc:  # name the file the design came from, as `pbrsim validate` would
        raise ScenarioError(f"{opened.source} (as edited)", exc.problems) from None


def design_yaml(opened: Opened, changes: dict | None) -> str:
    """The edited design as a scenario file (``pbrsim validate`` accepts it): the fields set, in the schema's order."""
    sc = design(opened, changes)
    changed = ", ".join(f"{k} = {v!r}" for k, v in coerce(opened.kinds, dict(changes or {})).items()) or "no changes"
    header = (f"# {sc.name}: edited in pbrsim serve from {opened.source}\n"
              f"# changed: {changed}\n")
    return header + yaml.safe_dump(sc.to_dict(), sort_keys=False, allow_unicode=True, width=120)
