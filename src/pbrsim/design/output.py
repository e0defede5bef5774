"""The output folder of a design run, by the output rule of ``pbrsim.store`` (docs/outputs.md).

A design folder is a ``pbrsim-design`` folder: ``manifest.json`` marks it before the search starts, so that
the evaluations kept in ``evaluations/`` (the cache of ``design.evaluate``, one file per task, each written
atomically) let an interrupted run resume. The results (tables, scenario files, charts, ``summary.json``)
are written together at the end by ``store.write_files``, which lists every file pbrsim wrote, the
evaluations included. A folder holding files pbrsim did not write is refused unless ``overwrite``, and
even then none of them is changed.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd
import yaml

from ..store import (DERIVED, KIND_DESIGN, MANIFEST, Owned, OutputRefused, check_out, jsonable, manifest as base_manifest,
                     owned, write_file, write_files)

EVALUATIONS = "evaluations"
# what a design run may write at the top of its folder (before the search, a file of these names that pbrsim
# did not write is refused, whatever --overwrite says)
RESULT_NAMES = ("summary.json", "designs.csv", "designs.parquet", "pareto.csv", "pareto.parquet", "comparisons.csv",
                "comparisons.parquet", "curve.csv", "curve.parquet", "design_pareto.png", "design_curve.png",
                "designs/chosen.yaml", "designs/closest.yaml", "designs/answer.yaml")
_CACHE_FILE = re.compile(r"(?:[0-9a-f]{32}\.parquet|exact-[0-9a-f]{20}\.json)")


def prepare(out: Path, overwrite: bool) -> Owned | None:
    """May this run write at ``out``? Raises ``store.OutputRefused`` (nothing written) if not."""
    out = Path(out)
    own = check_out(out, KIND_DESIGN, overwrite=overwrite, names=(MANIFEST, *RESULT_NAMES))
    if out.is_dir() and (own is None or own.kind != KIND_DESIGN):
        taken = [n for n in (EVALUATIONS, "designs", "report") if (out / n).exists() or (out / n).is_symlink()]
        if taken:
            raise OutputRefused(f"{out}: {taken[0]!r} was not written by pbrsim, and a design run writes its "
                                f"{taken[0]}/ there; move it away or choose another --out. Nothing was written.")
    return own


def cache_files(out: Path) -> list[str]:
    """The evaluations kept in ``out`` (paths relative to it): files of the cache's own names only."""
    folder = Path(out) / EVALUATIONS
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(f"{EVALUATIONS}/{p.name}" for p in folder.iterdir() if _CACHE_FILE.fullmatch(p.name) and p.is_file())


def start(out: Path, own: Owned | None, info: dict, overwrite: bool) -> dict:
    """Mark ``out`` as this run's folder (status running) before the search; returns the manifest data.

    An earlier design run's manifest keeps listing its files (they stay until the new results replace them);
    any other folder gets a manifest of its own through ``store.write_files``."""
    data = base_manifest(None, info.get("seed"), {**info, "status": "running"})
    if own is not None and own.kind == KIND_DESIGN:
        _rewrite_manifest(out, data, sorted(set(own.files) | set(cache_files(out))))
    else:
        write_files(out, {}, data, kind=KIND_DESIGN, overwrite=overwrite)
    return data


def _rewrite_manifest(out: Path, data: dict, files: list[str]) -> None:
    man = {"package": "pbrsim", **data, "kind": KIND_DESIGN, "files": sorted(set(files) | {MANIFEST})}
    write_file(Path(out) / MANIFEST, (json.dumps(jsonable(man), indent=2) + "\n").encode())


def interrupted(out: Path, data: dict) -> None:
    """After Ctrl-C: the manifest says so and lists the evaluations kept, so the same command resumes."""
    own = owned(out)
    earlier = own.files if own is not None and own.kind == KIND_DESIGN else frozenset()
    _rewrite_manifest(out, {**data, "status": "interrupted"}, sorted(set(earlier) | set(cache_files(out))))


def finish(out: Path, files: dict[str, bytes], data: dict, status: str, overwrite: bool) -> None:
    """Write the results in one go; the earlier run's files not written again are removed, with its report."""
    write_files(out, files, {**data, "status": status}, kind=KIND_DESIGN, overwrite=overwrite, derived=DERIVED,
                keep=cache_files(out))


def json_bytes(data: dict) -> bytes:
    return (json.dumps(jsonable(data), indent=2) + "\n").encode()


def table_files(df: pd.DataFrame, name: str) -> dict[str, bytes]:
    """``df`` as ``name.csv`` and ``name.parquet``."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return {f"{name}.csv": df.to_csv(index=False).encode(), f"{name}.parquet": buf.getvalue()}


def scenario_yaml(raw: dict, header: list[str]) -> bytes:
    """A complete scenario file (runs with ``pbrsim run``, passes ``pbrsim validate``) with a comment header."""
    lines = "".join(f"# {h}\n" for h in header)
    return (lines + yaml.safe_dump(jsonable(raw), sort_keys=False, allow_unicode=True)).encode("utf-8")
