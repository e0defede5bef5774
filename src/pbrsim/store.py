"""Writing results safely: pbrsim writes only files it owns, atomically, with the user's usual permissions.

The rule (docs/outputs.md): pbrsim never deletes or overwrites a file it did not write.

- Every output folder holds ``manifest.json`` with ``"package": "pbrsim"``, its ``kind`` and the ``files``
  pbrsim wrote there. Only those files are ever replaced or removed.
- A non-empty folder that is not a pbrsim folder of the same kind is refused (``OutputRefused``) unless
  the caller says ``overwrite``; even then a file pbrsim did not write is never replaced or removed.
- Files are written first into a temporary folder (``.pbrsim-tmp-<host>-<pid>-<random>``, holding a
  marker file) beside or inside the target, then renamed into place. A failure removes the temporary
  folder and leaves the earlier results as they were (``WriteFailed``); temporaries left by a killed
  process are removed by the next write to the same place.
- Names read from files become path parts only through ``safe_name`` and ``output_path``.
- Folders and files get the user's usual permissions (``0o777`` / ``0o666`` less the umask).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__

if TYPE_CHECKING:
    import pandas as pd

MANIFEST = "manifest.json"
TEMP_PREFIX = ".pbrsim-tmp-"
TEMP_MARKER = ".pbrsim-tmp"  # inside each temporary folder: who made it (pid, host, process start)

KIND_RUN = "pbrsim-run"
KIND_STRESS = "pbrsim-stress"
KIND_EXPERIMENT = "pbrsim-experiment"
KIND_REPORT = "pbrsim-report"
KIND_DESIGN = "pbrsim-design"
KIND_EXPORT = "pbrsim-export"
KIND_LABELS = {KIND_RUN: "run", KIND_STRESS: "stress-test", KIND_EXPERIMENT: "experiment dataset", KIND_REPORT: "report",
               KIND_DESIGN: "design run", KIND_EXPORT: "spreadsheet export"}

DERIVED = ("report", "export")  # sub-folders made from a folder's results; replacing the results removes them
MAX_NAME_BYTES = 100  # a safe name's length (file systems allow 255 bytes per name)
STALE_ELSEWHERE_SECONDS = 24 * 3600  # a temporary folder made on another host is stale after a day

# Files written by versions whose manifests did not list them (recognised by name in a folder whose
# manifest.json says "package": "pbrsim"; every other file there is treated as the user's).
_LEGACY_FILES = frozenset({"summary.json"} | {f"{t}.parquet" for t in (
    "clients", "ledger", "monthly", "claims", "settlements", "failures", "replications",  # pbrsim run
    "segments", "payments", "costs", "caseload",  # pbrsim run --method exact
    "stresses", "cash", "reverse")})  # pbrsim stress
_REPORT_PAGES = {"report.html": b'<meta name="generator" content="pbrsim', "stress.html": b"Made by pbrsim "}
_MAX_MANIFEST_BYTES = 16 * 2**20
_TEMP_NAME = re.compile(r"\.pbrsim-tmp-([0-9a-f]{8})-(\d+)-[0-9a-f]{8}(-.+)?", re.DOTALL)  # a folder; a file ends in -<name>

FileData = bytes | Callable[[Path], None]  # the bytes of a file, or a function writing it at a path


class OutputRefused(Exception):
    """pbrsim may not write there: the place holds files pbrsim did not write. Nothing was written."""


class WriteFailed(Exception):
    """The machine refused a write (full disk, no permission, ...). Nothing half-written is left behind."""


# ---------------------------------------------------------------------------------------------
# Names and permissions


def safe_name(text, limit: int = MAX_NAME_BYTES) -> str:
    """``text`` as one safe path part: letters and digits of any script and ``- _ .``, every other character
    as ``_``; never hidden, ``.`` or ``..`` (leading dots are dropped); at most ``limit`` bytes, a shortened
    name ending in a hash of the whole so that different long names stay different."""
    text = str(text)
    norm = unicodedata.normalize("NFKC", text)
    slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in norm).lstrip(".") or "unnamed"
    if len(slug.encode("utf-8")) > limit:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        slug = slug.encode("utf-8")[: limit - len(digest) - 1].decode("utf-8", "ignore") + "-" + digest
    return slug


def output_path(root: str | Path, *names) -> Path:
    """``root/<safe name>/...``: the output folder for names read from files, always strictly under ``root``."""
    root = Path(root)
    path = root.joinpath(*(safe_name(n) for n in names))
    base, full = os.path.abspath(root), os.path.abspath(path)
    if full == base or os.path.commonpath([base, full]) != base:  # cannot happen with safe names; kept as a guard
        raise OutputRefused(f"{path} is not inside {root}")
    return path


def umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        m = re.search(r"^Umask:\s*([0-7]+)", Path("/proc/self/status").read_text(), re.MULTILINE)
        if m:
            return int(m.group(1), 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from ``open``: ``0o666`` less the umask (``mkstemp`` would give ``0o600``)."""
    return 0o666 & ~umask()


# ---------------------------------------------------------------------------------------------
# Temporary folders: made beside or inside the target, removed on failure, and when stale


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot) and whether it is a zombie, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return "zombie" if fields[0] in ("Z", "X") else fields[19]


def _running(pid: int, start: str | None) -> bool:
    """Process ``pid`` is alive and is the one that started at ``start`` (not a later process given its pid)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid > 0
    now = _process_start(pid)
    if now == "zombie":
        return False
    return start is None or now is None or now == start


def _make_temp(where: Path) -> Path:
    """A new temporary folder in ``where``, named and marked as pbrsim's, with the usual permissions."""
    while True:
        path = where / f"{TEMP_PREFIX}{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        (path / TEMP_MARKER).write_text(json.dumps({"package": "pbrsim", "pid": os.getpid(), "host": _host(),
                                                    "start": _process_start(os.getpid()), "created": time.time()}))
        return path


def _temp_file(target: Path) -> Path:
    """A new, empty temporary file beside ``target``, its name saying it is pbrsim's, whose and for which file."""
    tail = safe_name(target.name, limit=120)
    while True:
        path = target.parent / f"{TEMP_PREFIX}{_host()}-{os.getpid()}-{secrets.token_hex(4)}-{tail}"
        try:
            with open(path, "xb"):
                return path
        except FileExistsError:
            continue


def _stale(entry: os.DirEntry) -> bool:
    """``entry`` is a temporary folder or file of a pbrsim process that is gone (never someone else's)."""
    m = _TEMP_NAME.fullmatch(entry.name)
    if not m:
        return False
    host, pid = m.group(1), int(m.group(2))
    if m.group(3) is not None:  # a temporary file: who made it is in its name
        if not entry.is_file(follow_symlinks=False):
            return False
        if host == _host():
            return not _running(pid, None)
        return time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_ELSEWHERE_SECONDS
    if not entry.is_dir(follow_symlinks=False):
        return False
    try:
        marker = json.loads(Path(entry.path, TEMP_MARKER).read_text())
    except (OSError, ValueError):
        # killed between making the folder and marking it: only an empty folder is certainly ours
        return host == _host() and not _running(pid, None) and not any(os.scandir(entry.path))
    if not isinstance(marker, dict) or marker.get("package") != "pbrsim" or marker.get("pid") != pid or marker.get("host") != host:
        return False
    if host == _host():
        return not _running(pid, marker.get("start"))
    created = marker.get("created")
    return isinstance(created, (int, float)) and time.time() - created > STALE_ELSEWHERE_SECONDS


def remove_stale_temporaries(folder: str | Path) -> list[str]:
    """Remove pbrsim's temporary folders in ``folder`` left by processes that are gone; returns their names."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        try:
            if _stale(entry):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            pass
    marker = Path(folder, TEMP_MARKER)  # left in a folder by a kill between its rename and the marker's removal
    try:
        data = json.loads(marker.read_text())
        if isinstance(data, dict) and data.get("package") == "pbrsim" and data.get("host") == _host() \
                and not _running(int(data.get("pid", 0)), data.get("start")):
            marker.unlink()
    except (OSError, ValueError, TypeError):
        pass
    return removed


def _ours_in_progress(name: str) -> bool:
    return name == TEMP_MARKER or _TEMP_NAME.fullmatch(name) is not None


# ---------------------------------------------------------------------------------------------
# What pbrsim wrote in a folder


@dataclass(frozen=True)
class Owned:
    """A pbrsim output folder: its kind and the files pbrsim wrote there (paths relative to the folder)."""

    kind: str
    files: frozenset[str]

    @property
    def label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)


def _valid_relative(rel: str) -> bool:
    parts = rel.split("/")
    return (bool(rel) and "\0" not in rel and "\\" not in rel and not rel.startswith("/")
            and all(p not in ("", ".", "..") and len(p.encode("utf-8", "surrogatepass")) <= 255 for p in parts))


def owned(folder: str | Path) -> Owned | None:
    """What pbrsim wrote in ``folder``, from its manifest (or, for folders of older versions, from known file
    names); None when ``folder`` is not a pbrsim output folder."""
    folder = Path(folder)
    man = folder / MANIFEST
    if man.is_file() and not man.is_symlink():
        try:
            with open(man, "rb") as fh:
                data = json.loads(fh.read(_MAX_MANIFEST_BYTES + 1)[:_MAX_MANIFEST_BYTES])
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("package") != "pbrsim":
            return None
        kind = data.get("kind") or KIND_RUN  # run folders of older versions had no kind
        files = data.get("files")
        if isinstance(files, list) and all(isinstance(f, str) and _valid_relative(f) for f in files):
            return Owned(kind, frozenset(files) | {MANIFEST})
        if kind == KIND_EXPERIMENT:  # a dataset's files are its layout (experiments/dataset.py); batch manages them
            return Owned(kind, frozenset({MANIFEST}))
        return Owned(kind, frozenset({MANIFEST} | {n for n in _LEGACY_FILES if (folder / n).is_file()}))
    for page, signature in _REPORT_PAGES.items():  # a report of an older version: its page and the chart files
        p = folder / page
        try:
            if p.is_file() and p.stat().st_size < 256 * 2**20 and signature in p.read_bytes():
                return Owned(KIND_REPORT, frozenset({page} | {c.name for c in folder.glob("*.png") if c.is_file()}))
        except OSError:
            return None
    return None


def _listing(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_out(out: str | Path, kind: str, *, overwrite: bool = False, names: Iterable[str] = ()) -> Owned | None:
    """May pbrsim write a ``kind`` folder at ``out``? Raises ``OutputRefused`` (with what to do) if not.

    Allowed: ``out`` missing or empty, or a pbrsim folder of the same kind (its own files are replaced). With
    ``overwrite``: any folder, but a file pbrsim did not write that has one of ``names`` (the files about to
    be written) is still refused, and an experiment dataset is only ever replaced by one. Writes nothing.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputRefused(f"{out} is a file, not a folder; give a folder with --out. Nothing was written.")
    if not out.is_dir():
        return None
    try:
        entries = sorted(e.name for e in os.scandir(out) if not _ours_in_progress(e.name))
    except OSError as exc:
        raise WriteFailed(f"cannot read {out}: {exc.strerror or exc}. Nothing was written.") from None
    if not entries:
        return None
    own = owned(out)
    if own is None or own.kind != kind:
        what = (f"holds a pbrsim {own.label} folder, not a {KIND_LABELS[kind]}" if own is not None else
                f"is not empty ({len(entries)} entr{'y' if len(entries) == 1 else 'ies'}: {_listing(entries)}) "
                "and was not written by pbrsim")
        if not overwrite:
            raise OutputRefused(f"{out} {what}; choose a new or empty folder with --out, or add --overwrite to write "
                                "pbrsim's files there (files pbrsim did not write are never changed). Nothing was written.")
        if own is not None and own.kind == KIND_EXPERIMENT:
            raise OutputRefused(f"{out} {what}, and pbrsim does not replace a dataset with another kind of output; "
                                "choose another --out. Nothing was written.")
    if own is not None and own.kind == KIND_EXPERIMENT:  # a dataset's own layout: batch checks and resumes it
        return own
    mine = own.files if own is not None else frozenset()
    clash = sorted(n for n in names if n not in mine and (os.path.lexists(out / n)))
    if clash:
        raise OutputRefused(f"{out}: {_listing(clash)} {'was' if len(clash) == 1 else 'were'} not written by pbrsim and "
                            f"would be replaced; move {'it' if len(clash) == 1 else 'them'} away or choose another --out. "
                            "Nothing was written.")
    return own


def require_kind(folder: str | Path, kind: str, made_by: str) -> Owned:
    """``folder`` must be a pbrsim folder of ``kind`` (before writing into it); raises ``OutputRefused``."""
    own = owned(folder)
    if own is None or own.kind != kind:
        what = (f"a pbrsim {own.label} folder, not a pbrsim {KIND_LABELS[kind]}" if own is not None else
                f"not a pbrsim {KIND_LABELS[kind]} (no pbrsim manifest.json there)")
        raise OutputRefused(f"{folder} is {what}; give a folder written by {made_by}. Nothing was written.")
    return own


# ---------------------------------------------------------------------------------------------
# Writing a folder


def _fill(tmp: Path, files: dict[str, FileData]) -> None:
    for rel, data in files.items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, (bytes, bytearray, memoryview)):
            with open(path, "xb") as fh:
                fh.write(data)
        else:
            data(path)


def _inside(folder: Path, path: Path) -> bool:
    """``path``'s folder is ``folder`` or under it, following links (a linked sub-folder leads elsewhere)."""
    base, parent = os.path.realpath(folder), os.path.realpath(path.parent)
    return parent == base or parent.startswith(base + os.sep)


def remove_own_files(folder: Path, files: Iterable[str]) -> None:
    """Remove files pbrsim wrote in ``folder`` (never a folder, never through a linked sub-folder), then
    the sub-folders they leave empty."""
    parents = set()
    for rel in sorted(files):
        p = folder / rel
        if (p.is_symlink() or p.is_file()) and _inside(folder, p):
            p.unlink()
            parents.update(q for q in p.parents if q != folder and folder in q.parents)
    for q in sorted(parents, key=lambda q: len(q.parts), reverse=True):
        try:
            q.rmdir()
        except OSError:  # not empty: it holds something else
            pass


def _create(out: Path, files: dict[str, FileData]) -> None:
    """``out`` does not exist: fill a temporary folder beside it, then rename it to ``out`` in one step."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out.parent)
    tmp = _make_temp(out.parent)
    try:
        _fill(tmp, files)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        (out / TEMP_MARKER).unlink()
    except OSError:
        pass


def _replace_inside(out: Path, files: dict[str, FileData], own: Owned | None, listed: list[str], derived: Iterable[str]) -> None:
    """``out`` exists: fill a temporary folder inside it, then move each file into place. The manifest is
    first rewritten to list the old and the new files, so that a kill part-way leaves nothing unlisted."""
    remove_stale_temporaries(out)
    tmp = _make_temp(out)
    try:
        _fill(tmp, files)
        old = set(own.files) if own is not None else set()
        new = set(listed)
        final = json.loads((tmp / MANIFEST).read_text())
        intent = tmp / ".intent.json"
        intent.write_text(json.dumps({**final, "status": "writing", "files": sorted(old | new)}, indent=2) + "\n")
        os.replace(intent, out / MANIFEST)
        for rel in sorted(set(files) - {MANIFEST}):
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not _inside(out, dest):
                raise OutputRefused(f"{out / rel}: a linked folder inside {out} leads elsewhere; pbrsim does not write through it")
            os.replace(tmp / rel, dest)
        os.replace(tmp / MANIFEST, out / MANIFEST)
        remove_own_files(out, old - new)
        for sub in derived if own is not None else ():  # made from the results just replaced: no longer true
            own_sub = owned(out / sub)
            if own_sub is not None and own_sub.kind != KIND_EXPERIMENT and not (out / sub).is_symlink():
                remove_own_files(out / sub, own_sub.files)
                try:
                    (out / sub).rmdir()
                except OSError:
                    pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_files(out: str | Path, files: dict[str, FileData], manifest_data: dict, *, kind: str,
                overwrite: bool = False, derived: Iterable[str] = (), keep: Iterable[str] = ()) -> Path:
    """Write ``files`` (relative path -> bytes or writer) and ``manifest.json`` into the folder ``out``.

    The rule of this module: refused (``OutputRefused``) where ``check_out`` refuses; a pbrsim folder's own
    earlier files are replaced, and those not written again removed, with the ``derived`` sub-folders
    (``report/``) made from them; nothing else in ``out`` is touched. ``keep`` names files pbrsim wrote there
    earlier, one at a time, that stay as they are and are listed too (a design run's evaluation cache). A
    failed write raises ``WriteFailed`` and leaves ``out`` as it was.
    """
    out = Path(out)
    bad = [rel for rel in [*files, *keep] if not _valid_relative(rel) or rel == MANIFEST]
    if bad:
        raise ValueError(f"not a file name pbrsim writes: {bad[0]!r}")
    own = check_out(out, kind, overwrite=overwrite, names=sorted(set(files) | {MANIFEST}))
    keep = {rel for rel in keep if rel not in files and (out / rel).is_file() and _inside(out, out / rel)}
    listed = sorted(set(files) | keep | {MANIFEST})
    man = {"package": "pbrsim", **manifest_data, "kind": kind, "files": listed}
    body = (json.dumps(jsonable(man), indent=2) + "\n").encode()
    existed = out.is_dir()
    try:
        if existed:
            _replace_inside(out, {**files, MANIFEST: body}, own, listed, derived)
        else:
            _create(out, {**files, MANIFEST: body})
    except OSError as exc:
        raise WriteFailed(_failure(out, exc, existed)) from None
    return out


def _failure(target: Path, exc: OSError, existed: bool) -> str:
    where = f" ({exc.filename})" if getattr(exc, "filename", None) and exc.errno in (13, 30) else ""
    kept = f"{target} is as it was" if existed else f"nothing was written to {target}"
    return f"cannot write {target}: {exc.strerror or exc}{where}. No file was half-written; {kept}."


# ---------------------------------------------------------------------------------------------
# Writing single files


class Staged:
    """Temporary files beside their targets (``.pbrsim-tmp-…-<name>``, so that a file read back from there
    finds what it refers to); ``commit`` moves them into place, an existing file keeping its permissions.
    Leaving the ``with`` block removes whatever was not committed.

        with Staged([path]) as stage:
            stage[path].write_text(text)
            check(stage[path])
            stage.commit()
    """

    def __init__(self, targets: Iterable[str | Path]):
        self.targets = [Path(t) for t in targets]
        self.temps: dict[Path, Path] = {}

    def __enter__(self) -> Staged:
        try:
            cleaned = set()
            for t in self.targets:
                parent = t.absolute().parent
                if parent not in cleaned:
                    parent.mkdir(parents=True, exist_ok=True)
                    remove_stale_temporaries(parent)
                    cleaned.add(parent)
                self.temps[t] = _temp_file(t.absolute())
        except OSError as exc:
            self.__exit__(None, None, None)
            raise WriteFailed(_failure(self.targets[0], exc, self.targets[0].exists())) from None
        return self

    def __getitem__(self, target: str | Path) -> Path:
        return self.temps[Path(target)]

    def commit(self) -> None:
        t = self.targets[0]
        try:
            for t, tmp in list(self.temps.items()):
                if t.is_file():
                    os.chmod(tmp, stat.S_IMODE(t.stat().st_mode))
                os.replace(tmp, t)
                del self.temps[t]
        except OSError as exc:
            raise WriteFailed(_failure(t, exc, t.exists())) from None

    def __exit__(self, *exc) -> None:
        for tmp in self.temps.values():
            try:
                tmp.unlink()
            except OSError:
                pass


def write_file(path: str | Path, data: bytes) -> Path:
    """Write one file atomically (callers decide beforehand whether it may be replaced)."""
    path = Path(path)
    with Staged([path]) as stage:
        try:
            stage[path].write_bytes(data)
        except OSError as exc:
            raise WriteFailed(_failure(path, exc, path.exists())) from None
        stage.commit()
    return path


# ---------------------------------------------------------------------------------------------
# Result folders: Parquet tables, summary.json and manifest.json


def jsonable(obj):
    """Plain JSON types: numpy numbers to Python, NaN, infinities and missing values to null."""
    pandas = sys.modules.get("pandas")  # pandas' NA can only be here if pandas is loaded: never loaded for this
    if obj is None or (pandas is not None and obj is pandas.NA):
        return None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def write_parquet(df: pd.DataFrame | pa.Table, path: Path, metadata: dict[str, str]):
    """A DataFrame (its index dropped) or an Arrow table (``records.arrow_table``) as a Parquet file, with
    pbrsim's provenance in the schema metadata."""
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta.update({f"pbrsim.{k}".encode(): str(v).encode() for k, v in metadata.items()})
    with open(path, "wb") as fh:  # closed at once on a failed write (a full disk), not whenever it is collected
        pq.write_table(table.replace_schema_metadata(meta), fh)


def manifest(scenario_hash: str | None, seed: int | None, extra: dict | None = None) -> dict:
    return {
        "package": "pbrsim",
        "version": __version__,
        "scenario_sha256": scenario_hash,
        "seed": seed,
        "command_line": " ".join(["pbrsim"] + sys.argv[1:]) if sys.argv else None,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }


def write_folder(out: str | Path, tables: dict[str, pd.DataFrame | pa.Table], summary: dict, manifest_data: dict, *,
                 kind: str = KIND_RUN, overwrite: bool = False) -> Path:
    """Write tables, ``summary.json`` and ``manifest.json`` into ``out`` (a run or stress-test folder) by the
    rule of ``write_files``: an earlier result of the same kind there is replaced, with its report."""
    meta = {"scenario_sha256": manifest_data.get("scenario_sha256"), "seed": manifest_data.get("seed"), "version": __version__}
    files: dict[str, FileData] = {f"{name}.parquet": (lambda path, df=df: write_parquet(df, path, meta)) for name, df in tables.items()}
    files["summary.json"] = (json.dumps(jsonable(summary), indent=2) + "\n").encode()
    return write_files(out, files, manifest_data, kind=kind, overwrite=overwrite, derived=DERIVED)
