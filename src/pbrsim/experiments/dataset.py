"""The on-disk dataset of an experiment: one Parquet file per table, design and chunk of replications.

Layout (``OUT`` is e.g. ``results/<experiment>``)::

    OUT/manifest.json                      experiment hash, seeds, designs, chunk size, version, start/end times
    OUT/experiment.yaml                    a copy of the experiment file
    OUT/designs/<design>.yaml              each design's complete scenario (runnable with `pbrsim run`)
    OUT/runs/<table>/design=<design>/reps-<first>-<last>.parquet   replications first..last (5 digits)
    OUT/summary.parquet, OUT/summary.csv   one row per design x metric (sweep values as typed columns)
    OUT/replications_long.parquet          one row per design x replication x figure (experiments/long_format.py)

Each ``OUT/runs/<table>`` folder is a hive-partitioned Parquet dataset, so one call reads a table of every
design and replication, with a ``design`` column from the folder names (every table has its own
``replication`` column)::

    pandas.read_parquet("results/vcs_designs/runs/clients")
    pyarrow.dataset.dataset("results/vcs_designs/runs/ledger", partitioning="hive")

A chunk's file holds its replications in order (one row group unless very large); replication numbers
are zero-padded so that file order is replication order. Chunks are a unit of work and of resuming, never
of results: the rows of a replication are the same whatever chunk it was run in.

Writes are atomic per file (written under ``OUT/runs/.tmp`` and moved into place with ``os.replace``)
and the ``replications`` table of a chunk is moved last: a chunk is finished exactly when its
``replications`` file exists. Files of unfinished chunks (a kill between two moves) and temporaries left
by a killed process are removed before a batch resumes. Files hold no timestamps, so the same experiment
gives the same data however it is run.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..store import file_mode
from .lock import LOCK, Lock, LockError  # noqa: F401  (re-exported: the dataset's lock)

RUNS = "runs"
MARKER = "replications"  # the table written last; its presence means the chunk is complete
TMP = ".tmp"
TMP_PREFIX = ".pbrsim-tmp-"  # temporaries beside files pbrsim writes (removed when stale)
MANIFEST = "manifest.json"
LAYOUT = "runs/<table>/design=<design>/reps-<first>-<last>.parquet (replications first..last, 5 digits)"
_CHUNK_FILE = re.compile(r"reps-(\d{5,})-(\d{5,})\.parquet")


class DatasetError(Exception):
    """The output folder cannot be used (not a pbrsim dataset, locked by another batch, incomplete)."""


def chunk_name(reps: range) -> str:
    return f"reps-{reps.start:05d}-{reps.stop - 1:05d}.parquet"


def chunk_file(out: Path, table: str, design: str, reps: range) -> Path:
    return Path(out) / RUNS / table / f"design={design}" / chunk_name(reps)


def parse_chunk(name: str) -> range | None:
    """The replications a chunk file holds, from its name (None: not a chunk file)."""
    m = _CHUNK_FILE.fullmatch(name)
    if not m or int(m[2]) < int(m[1]):
        return None
    return range(int(m[1]), int(m[2]) + 1)


def table_bytes(df: pd.DataFrame, metadata: dict[str, str]) -> bytes:
    """One table as Parquet bytes, with ``pbrsim.*`` metadata; empty object columns are stored as text.

    (An empty or all-null object column would otherwise be typed ``null`` and clash with the text type
    the same column has in runs where it holds values.)
    """
    table = pa.Table.from_pandas(df, preserve_index=False)
    fields = [pa.field(f.name, pa.large_string()) if pa.types.is_null(f.type) else f for f in table.schema]
    meta = dict(table.schema.metadata or {})
    meta.update({f"pbrsim.{k}".encode(): str(v).encode() for k, v in metadata.items()})
    table = table.cast(pa.schema(fields, metadata=meta))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write_chunk(out: Path, design: str, reps: range, files: dict[str, bytes]) -> None:
    """Move a chunk's table files into place atomically, the ``replications`` marker last."""
    tmp_dir = Path(out) / RUNS / TMP
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for table in sorted(files, key=lambda t: (t == MARKER, t)):
        final = chunk_file(out, table, design, reps)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{table}-{design}-{reps.start}-", suffix=".parquet", dir=tmp_dir)
        try:
            os.fchmod(fd, file_mode())  # mkstemp makes private files; results get the usual permissions
            with os.fdopen(fd, "wb") as fh:
                fh.write(files[table])
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _partitions(folder: Path, prefix: str):
    if not folder.is_dir():
        return
    for entry in os.scandir(folder):
        if entry.is_dir() and entry.name.startswith(prefix):
            yield entry.name[len(prefix):], Path(entry.path)


def _chunks(folder: Path):
    """(replications, path) of every chunk file in a design folder, in replication order."""
    found = []
    if folder.is_dir():
        for entry in os.scandir(folder):
            reps = parse_chunk(entry.name) if entry.is_file() else None
            if reps is not None:
                found.append((reps, Path(entry.path)))
    return sorted(found, key=lambda x: (x[0].start, x[0].stop))


def finished_chunks(out: Path) -> dict[str, list[range]]:
    """Design -> chunks whose marker file exists, in replication order."""
    done: dict[str, list[range]] = {}
    for design, ddir in _partitions(Path(out) / RUNS / MARKER, "design="):
        reps = [r for r, _ in _chunks(ddir)]
        if reps:
            done[design] = reps
    return done


def finished_runs(out: Path) -> dict[str, set[int]]:
    """Design -> replications in finished chunks."""
    return {d: {r for c in chunks for r in c} for d, chunks in finished_chunks(out).items()}


def tables_present(out: Path) -> list[str]:
    runs = Path(out) / RUNS
    return sorted(p.name for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")) if runs.is_dir() else []


def remove_runs(out: Path, keep) -> int:
    """Delete every chunk (in every table) holding a replication for which ``keep(design, rep)`` is false, files
    of unfinished chunks, and the per-run folders of earlier versions; returns the replications removed."""
    out = Path(out)
    finished = finished_chunks(out)
    kept = {d: {(c.start, c.stop) for c in chunks if all(keep(d, r) for r in c)} for d, chunks in finished.items()}
    removed = set()
    for table in tables_present(out):
        for design, ddir in list(_partitions(out / RUNS / table, "design=")):
            for reps, f in _chunks(ddir):
                if (reps.start, reps.stop) not in kept.get(design, ()):
                    f.unlink(missing_ok=True)
                    removed.update((design, r) for r in reps)
            for rdir in [p for _, p in _partitions(ddir, "rep=")]:  # layout of pbrsim before chunks
                shutil.rmtree(rdir, ignore_errors=True)
            if not any(ddir.iterdir()):
                ddir.rmdir()
    shutil.rmtree(out / RUNS / TMP, ignore_errors=True)
    return len(removed)


def remove_stale_temporaries(out: Path) -> None:
    """Temporaries a killed pbrsim left beside the files it writes (call with the folder's lock held)."""
    out = Path(out)
    shutil.rmtree(out / RUNS / TMP, ignore_errors=True)
    earlier = tuple(f".{name}." for name in (MANIFEST, "experiment.yaml", "summary.parquet", "summary.csv",
                                             "replications_long.parquet"))
    for folder in (out, out / "designs"):
        if folder.is_dir():
            for entry in os.scandir(folder):
                if entry.is_file() and (entry.name.startswith(TMP_PREFIX) or entry.name.startswith(earlier)):
                    Path(entry.path).unlink(missing_ok=True)


def read_table(out: str | Path, table: str, designs: list[str] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """One table of every run (or of ``designs``) with a ``design`` column, in design and replication order.

    Columns missing from some designs (e.g. milestones in a design without milestone payments) are null
    there. Files are read one at a time, so memory is the size of the result, not of the dataset's metadata.
    """
    path = Path(out) / RUNS / table
    if not path.is_dir():
        raise DatasetError(f"{out} has no {table!r} table (looked for {path})")
    from ..engine.records import current_names, stored_names

    parts = []
    for design in designs if designs is not None else sorted(d for d, _ in _partitions(path, "design=")):
        for _, f in _chunks(path / f"design={design}"):
            # chunks written by pbrsim 0.1 name their pence columns without the suffix
            cols = stored_names(columns, pq.read_schema(f).names) if columns else columns
            t = pq.read_table(f, columns=cols, use_threads=False)
            t = t.rename_columns([current_names(t.column_names).get(c, c) for c in t.column_names])
            parts.append(t.add_column(0, "design", pa.array([design] * t.num_rows, pa.string())))
    if not parts:
        return pd.DataFrame()
    return pa.concat_tables(parts, promote_options="permissive").to_pandas()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes private files; results get the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode())


def read_manifest(out: str | Path) -> dict:
    path = Path(out) / MANIFEST
    if not path.exists():
        raise DatasetError(f"{out} is not a pbrsim experiment dataset (no {MANIFEST})")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None


def write_frame(df: pd.DataFrame, parquet: Path, csv: Path | None = None, metadata: dict | None = None) -> None:
    write_bytes_atomic(parquet, table_bytes(df, metadata or {}))
    if csv is not None:
        write_bytes_atomic(csv, df.to_csv(index=False).encode())
