"""The on-disk dataset of an experiment: one Parquet file per table per run, a manifest and a summary.

Layout (``OUT`` is e.g. ``results/<experiment>``)::

    OUT/manifest.json                      experiment hash, seeds, designs, version, start/end times
    OUT/experiment.yaml                    a copy of the experiment file
    OUT/designs/<design>.yaml              each design's complete scenario (runnable with `pbrsim run`)
    OUT/runs/<table>/design=<design>/rep=<00000>/part-0.parquet
    OUT/summary.parquet, OUT/summary.csv   one row per design x metric

Each ``OUT/runs/<table>`` folder is a hive-partitioned Parquet dataset, so one call reads a table of every
design and replication, with ``design`` and ``rep`` columns from the folder names::

    pandas.read_parquet("results/vcs_designs/runs/clients")
    pyarrow.dataset.dataset("results/vcs_designs/runs/ledger", partitioning="hive")

Replication numbers are zero-padded so that folder order is replication order.

Writes are atomic per file (written under ``OUT/runs/.tmp`` and moved into place with ``os.replace``)
and the ``replications`` table of a run is moved last: a run is finished exactly when its
``replications`` file exists. Files of unfinished runs (a kill between two moves) are removed before a
batch resumes. Run files hold no timestamps, so the same experiment gives the same data however it is run.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..store import file_mode

RUNS = "runs"
MARKER = "replications"  # the table written last; its presence means the run is complete
PART = "part-0.parquet"
TMP = ".tmp"
MANIFEST = "manifest.json"
LOCK = ".pbrsim.lock"


class DatasetError(Exception):
    """The output folder cannot be used (not a pbrsim dataset, locked by another batch, incomplete)."""


def rep_folder(rep: int) -> str:
    return f"rep={rep:05d}"


def run_file(out: Path, table: str, design: str, rep: int) -> Path:
    return Path(out) / RUNS / table / f"design={design}" / rep_folder(rep) / PART


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


def write_run(out: Path, design: str, rep: int, files: dict[str, bytes]) -> None:
    """Move a run's table files into place atomically, the ``replications`` marker last."""
    tmp_dir = Path(out) / RUNS / TMP
    tmp_dir.mkdir(parents=True, exist_ok=True)
    order = sorted(files, key=lambda t: (t == MARKER, t))
    for table in order:
        final = run_file(out, table, design, rep)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{table}-{design}-{rep}-", suffix=".parquet", dir=tmp_dir)
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


def finished_runs(out: Path) -> dict[str, set[int]]:
    """Design -> replications whose marker file exists."""
    done: dict[str, set[int]] = {}
    for design, ddir in _partitions(Path(out) / RUNS / MARKER, "design="):
        reps = {int(r) for r, rdir in _partitions(ddir, "rep=") if (rdir / PART).exists()}
        if reps:
            done[design] = reps
    return done


def tables_present(out: Path) -> list[str]:
    runs = Path(out) / RUNS
    return sorted(p.name for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")) if runs.is_dir() else []


def remove_runs(out: Path, keep) -> int:
    """Delete every run folder (in every table) for which ``keep(design, rep)`` is false; returns runs removed."""
    removed = set()
    for table in tables_present(out):
        for design, ddir in list(_partitions(Path(out) / RUNS / table, "design=")):
            for rep, rdir in list(_partitions(ddir, "rep=")):
                if not keep(design, int(rep)):
                    shutil.rmtree(rdir, ignore_errors=True)
                    removed.add((design, int(rep)))
            if not any(ddir.iterdir()):
                ddir.rmdir()
    shutil.rmtree(Path(out) / RUNS / TMP, ignore_errors=True)
    return len(removed)


def read_table(out: str | Path, table: str, designs: list[str] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """One table of every run (or of ``designs``) with a ``design`` column, in design and replication order.

    Columns missing from some designs (e.g. milestones in a design without milestone payments) are null
    there. Files are read one at a time, so memory is the size of the result, not of the dataset's metadata.
    """
    path = Path(out) / RUNS / table
    if not path.is_dir():
        raise DatasetError(f"{out} has no {table!r} table (looked for {path})")
    parts = []
    for design in designs if designs is not None else sorted(d for d, _ in _partitions(path, "design=")):
        files = sorted((rdir / PART for _, rdir in _partitions(path / f"design={design}", "rep=")), key=lambda f: f.parent.name)
        for f in files:
            if f.exists():
                t = pq.read_table(f, columns=columns, use_threads=False)
                parts.append(t.add_column(0, "design", pa.array([design] * t.num_rows, pa.string())))
    if not parts:
        return pd.DataFrame()
    return pa.concat_tables(parts, promote_options="permissive").to_pandas()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lock:
    """An exclusive lock file in the output folder, so two batches never write the same dataset.

    A lock left by a killed process (its pid no longer running) is taken over.
    """

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK
        self.held = False

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    raise DatasetError(f"another pbrsim batch (process {pid}) is writing to {self.path.parent}; "
                                       f"wait for it to finish, or delete {self.path} if that process is not pbrsim") from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            self.held = True
            return self
        raise DatasetError(f"cannot lock {self.path.parent}")

    def __exit__(self, *exc):
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
