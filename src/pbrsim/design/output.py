"""The output folder of a design run: pbrsim's own files only, each written atomically.

A design folder is marked by ``manifest.json`` (``kind: pbrsim-design``), written before the search starts
so that an interrupted run is resumed from ``evaluations/`` (the cache of ``design.evaluate``). pbrsim
writes into a folder only if it is new, empty or a design folder; it replaces the results of a different
problem there only with ``overwrite``; and it never deletes a file it did not write (files of an earlier
run that the new one does not rewrite are removed only when that run's manifest lists them).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from ..store import jsonable, manifest as base_manifest

MANIFEST = "manifest.json"
KIND = "pbrsim-design"
EVALUATIONS = "evaluations"


class OutputError(Exception):
    """The folder cannot be used for this run; the message says why and what to do."""


def prepare(out: Path, fingerprint: str, overwrite: bool) -> dict:
    """Check ``out`` can hold this run; returns the earlier manifest there (empty when none)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file, not a folder; choose another --out")
    if not out.exists():
        return {}
    man = out / MANIFEST
    if man.exists():
        try:
            old = json.loads(man.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("kind") != KIND:
            raise OutputError(f"{out} holds something other than a pbrsim design run; choose another --out")
        if old.get("fingerprint") != fingerprint and not overwrite:
            raise OutputError(
                f"{out} holds the results of a different design problem ({old.get('problem', {}).get('name')}, "
                f"{old.get('status')}); rerun with --overwrite to replace them (evaluations already made are reused), "
                "or choose another --out")
        return old
    if any(out.iterdir()):
        raise OutputError(f"{out} exists and is not a pbrsim design folder; pbrsim does not write into folders it did not "
                          "make: choose another --out")
    return {}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: Path) -> str:
    """A new temporary file in ``path``'s folder, with the permissions a plainly created file would have."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return tmp


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    try:
        Path(tmp).write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    write_bytes(path, (json.dumps(jsonable(data), indent=2) + "\n").encode())


def write_table(df: pd.DataFrame, csv: Path) -> list[Path]:
    """``df`` as CSV and as Parquet beside it."""
    write_bytes(csv, df.to_csv(index=False).encode())
    pq = csv.with_suffix(".parquet")
    tmp = _temp_beside(pq)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, pq)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return [csv, pq]


def scenario_yaml(raw: dict, header: list[str]) -> bytes:
    """A complete scenario file (runs with ``pbrsim run``, passes ``pbrsim validate``) with a comment header."""
    lines = "".join(f"# {h}\n" for h in header)
    return (lines + yaml.safe_dump(jsonable(raw), sort_keys=False, allow_unicode=True)).encode("utf-8")


def start(out: Path, fingerprint: str, info: dict, old: dict) -> dict:
    """Write the manifest that marks ``out`` as this run's folder (status running)."""
    out.mkdir(parents=True, exist_ok=True)
    man = base_manifest(None, info.get("seed"), {"kind": KIND, "fingerprint": fingerprint, **info, "status": "running",
                                                   "files": old.get("files", [])})
    write_json(out / MANIFEST, man)
    return man


def finish(out: Path, man: dict, written: list[Path], old: dict, status: str) -> None:
    """Remove files the earlier run wrote that this one did not rewrite, then record what is there."""
    names = sorted({str(p.relative_to(out)) for p in written})
    for rel in old.get("files", []):
        p = (out / rel).resolve()
        if rel not in names and out.resolve() in p.parents and p.is_file():
            p.unlink()
    man.update(status=status, files=names)
    write_json(out / MANIFEST, man)
