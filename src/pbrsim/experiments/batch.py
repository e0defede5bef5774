"""Batches: every design x replication of an experiment, run anywhere, written chunk by chunk, resumable.

One task is one design and a chunk of consecutive replications. A worker compiles the design's model
(once per design per worker), runs the chunk's replications with ``simulate.run_tables``, computes their
per-replication figures with ``simulate.replication_figures`` and returns the chunk's tables as Parquet bytes
— nothing else. The driver moves each chunk's files into place as it arrives (``dataset.write_chunk``)
and forgets it, so memory stays bounded by the few tasks in flight. Random streams depend on the seed,
the replication and the purpose only (``pbrsim.engine.rng``), never on the design, the chunk or the
worker: replication r of every design sees the same referrals and the same draws (common random
numbers), and serial, pool and Dask runs of any chunk size write the same data.
"""

from __future__ import annotations

import math
import shutil
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd
import yaml

from .. import __version__
from .dataset import (
    LAYOUT,
    MANIFEST,
    DatasetError,
    Lock,
    LockError,
    finished_runs,
    read_manifest,
    read_table,
    remove_runs,
    remove_stale_temporaries,
    table_bytes,
    write_bytes_atomic,
    write_chunk,
    write_frame,
    write_json,
)
from .executors import DEFAULT_CONNECT_TIMEOUT, Executor, ExecutorFailed, check_executor
from .experiment import Experiment

SUMMARY_PARQUET = "summary.parquet"
SUMMARY_CSV = "summary.csv"
LONG_PARQUET = "replications_long.parquet"  # the per-replication figures in long format (experiments/long_format.py)
MAX_CHUNK = 50  # replications per task, at most
CHUNKS_PER_DESIGN = 8  # aim: a design's replications in about this many tasks (load balance, resume granularity)
CLIENTS_PER_TASK = 100_000  # memory: expected clients in one task's tables, at most


class ChangedExperiment(DatasetError):
    """The output folder holds runs of a different version of the experiment."""


class BatchInterrupted(Exception):
    """Ctrl-C: the chunks finished so far are kept; the same call resumes."""

    def __init__(self, out: Path, done: int, total: int):
        self.out, self.done, self.total = out, done, total
        super().__init__(f"interrupted with {done} of {total} runs saved in {out}")


class BatchStopped(Exception):
    """The executor failed part-way (workers kept dying, the scheduler went away); the same call resumes."""

    def __init__(self, out: Path, done: int, total: int, reason: str):
        self.out, self.done, self.total, self.reason = out, done, total, reason
        super().__init__(f"stopped: {reason}; {done} of {total} runs are saved in {out}")


@dataclass(frozen=True)
class Task:
    """Replications ``reps`` of one design; everything a worker needs, nothing that depends on where it runs."""

    experiment: str
    design: str
    fingerprint: str
    scenario: dict
    seed: int
    reps: range
    tables: tuple[str, ...] | None  # None = all tables

    @property
    def key(self) -> str:
        """Deterministic task key (used by Dask)."""
        return f"pbrsim-run-{self.design}-{self.reps.start}-{self.reps.stop - 1}-{self.fingerprint[:12]}"


@dataclass
class RunOutput:
    """A chunk's tables as Parquet bytes."""

    design: str
    reps: range
    files: dict[str, bytes]


_MODELS: dict[str, object] = {}
_MODELS_LOCK = threading.Lock()
_MAX_MODELS = 256


def _model(task: Task):
    from ..engine.run import compile_model
    from ..scenario.limits import LARGE
    from ..scenario.schema import scenario_from_dict

    with _MODELS_LOCK:
        model = _MODELS.get(task.fingerprint)
    if model is None:
        model = compile_model(scenario_from_dict(task.scenario, f"design {task.design}", LARGE))  # the driver checked the limits
        with _MODELS_LOCK:
            if len(_MODELS) >= _MAX_MODELS:
                _MODELS.pop(next(iter(_MODELS)))
            _MODELS[task.fingerprint] = model
    return model


def run_task(task: Task) -> RunOutput:
    """Run one task and return its tables as Parquet bytes (``replications`` = one row per replication)."""
    from ..simulate import replication_figures, run_tables

    model = _model(task)
    tables = run_tables(model, task.seed, task.reps)  # DataFrames are built only for the tables kept
    names = (*tables, "replications")
    keep = task.tables if task.tables is not None else names
    meta = {"experiment": task.experiment, "design": task.design, "design_sha256": task.fingerprint,
            "seed": task.seed, "replications": f"{task.reps.start}-{task.reps.stop - 1}", "version": __version__}
    files = {name: table_bytes(replication_figures(model, tables, task.seed).reset_index() if name == "replications"
                               else tables[name], {**meta, "table": name}) for name in names if name in keep}
    return RunOutput(task.design, task.reps, files)


def chunk_size(exp: Experiment) -> int:
    """Replications per task: about CHUNKS_PER_DESIGN tasks per design, at most MAX_CHUNK replications and
    CLIENTS_PER_TASK expected clients. Depends on the experiment only (never on the workers); results never
    depend on it."""
    from ..engine.referrals import expected_totals

    clients = max(float(expected_totals(d.scenario).sum()) for d in exp.designs)
    by_memory = max(1, int(CLIENTS_PER_TASK // max(clients, 1.0)))
    return max(1, min(MAX_CHUNK, by_memory, math.ceil(exp.replications / CHUNKS_PER_DESIGN)))


def plan_chunks(replications: int, done: set[int], chunk: int) -> list[range]:
    """The replications not yet done, as runs of consecutive replications within chunk-aligned blocks."""
    todo = []
    for start in range(0, replications, chunk):
        block = [r for r in range(start, min(start + chunk, replications)) if r not in done]
        while block:
            n = 1
            while n < len(block) and block[n] == block[0] + n:
                n += 1
            todo.append(range(block[0], block[0] + n))
            block = block[n:]
    return todo


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _changes(old: dict, exp: Experiment) -> list[str]:
    """What differs between a dataset's manifest and the experiment now, in words (empty: nothing)."""
    notes = []
    file_changed = old.get("experiment", {}).get("sha256") != exp.sha256
    if file_changed:
        notes.append(f"the experiment file changed (sha256 {str(old.get('experiment', {}).get('sha256'))[:12]}… → {exp.sha256[:12]}…)")
    before = {d["name"]: d["sha256"] for d in old.get("designs", [])}
    now = {d.name: d.fingerprint for d in exp.designs}
    changed = [n for n in now if n in before and before[n] != now[n]]
    added = [n for n in now if n not in before]
    removed = [n for n in before if n not in now]
    if changed:
        notes.append(f"designs whose scenario, seed, tables or pbrsim version changed: {', '.join(changed)}")
    if added:
        notes.append(f"new designs: {', '.join(added)}")
    if removed:
        notes.append(f"designs no longer in the file: {', '.join(removed)}")
    if old.get("replications") != exp.replications:
        notes.append(f"replications {old.get('replications')} → {exp.replications}")
    elif file_changed and not (changed or added or removed):
        notes.append("no design changed (comments or formatting only?)")
    if old.get("layout") != LAYOUT:
        notes.append("the dataset was written by an earlier pbrsim, one file per run: --accept-changes rewrites it in chunks")
    return notes


def _prepare(exp: Experiment, out: Path, force: bool, overwrite: bool = False) -> dict:
    """Check the folder against the experiment, drop runs that no longer belong, return the manifest to continue."""
    old = None
    if (out / MANIFEST).exists():
        old = read_manifest(out)
        if old.get("kind") != "pbrsim-experiment":
            raise DatasetError(f"{out} holds something other than a pbrsim experiment dataset; choose another --out")
    elif not overwrite and out.exists() and any(p.name != ".pbrsim.lock" for p in out.iterdir()):
        raise DatasetError(f"{out} exists and is not a pbrsim experiment dataset; choose another --out")

    notes = _changes(old, exp) if old is not None else []
    if notes and not force:
        raise ChangedExperiment(
            f"{out} holds runs of a different version of this experiment:\n  - " + "\n  - ".join(notes)
            + "\nRerun with --accept-changes to keep the runs that are still valid and run the rest, or choose another --out."
        )
    valid = {d.name: d.fingerprint for d in exp.designs}
    before = {d["name"]: d["sha256"] for d in (old or {}).get("designs", [])}
    finished = finished_runs(out)
    # keep finished runs of unchanged designs within the replications asked for; drop the rest (and partial runs)
    remove_runs(out, lambda d, r: valid.get(d) is not None and before.get(d) == valid[d]
                and r < exp.replications and r in finished.get(d, ()))
    manifest = {
        "package": "pbrsim",
        "kind": "pbrsim-experiment",
        "version": __version__,
        "experiment": {"name": exp.name, "file": str(exp.path), "sha256": exp.sha256, "description": exp.description},
        "base_scenarios_sha256": exp.base_hashes,
        "seed": exp.seed,
        "replications": exp.replications,
        "tables": list(exp.tables) if exp.tables else "all",
        "baseline": exp.baseline.name,
        "currency": exp.baseline.scenario.currency,
        "designs": [d.manifest_entry() for d in exp.designs],
        "layout": LAYOUT,
        "random_numbers": "common: replication r of every design uses the streams of (seed, r, purpose)",
        "started_at": (old or {}).get("started_at") or _now(),
        "finished_at": None,
        "status": "running",
        "runs": {"total": exp.runs, "done": 0},
        "sessions": (old or {}).get("sessions", [])
        + ([{"at": _now(), "note": "experiment changed, accepted with --accept-changes: " + "; ".join(notes)}] if notes else []),
    }
    return manifest


def run_batch(
    exp: Experiment,
    out: str | Path,
    *,
    executor: str = "process",
    workers: int | None = None,
    scheduler=None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    chunk: int | None = None,
    force: bool = False,
    tables: tuple[str, ...] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_run: Callable[[RunOutput], None] | None = None,
    overwrite: bool = False,
) -> dict:
    """Run every design x replication of ``exp`` not yet in ``out``; returns the final manifest.

    ``chunk`` replications make one task and one file per table (default: ``chunk_size(exp)``); the data
    written never depends on it. ``tables`` overrides the experiment's choice of tables kept (``compare``
    keeps ``("replications",)``). ``on_start(runs_to_run, runs_already_done)`` is called once before the
    first task, ``on_run(chunk_output)`` after each chunk is on disk. The executor is opened (a Dask
    scheduler connected) before the folder is touched. Raises ChangedExperiment, DatasetError,
    ExecutorUnavailable (nothing written), BatchInterrupted (Ctrl-C) or BatchStopped (the executor failed
    part-way); after the last two the chunks finished so far are kept and the same call resumes. ``overwrite`` accepts a folder holding files pbrsim did not write
    (checked by the caller with ``store.check_out``: none of them has a name the dataset uses).
    """
    out = Path(out)
    check_executor(executor)
    if chunk is not None and chunk < 1:
        raise ValueError("chunk must be at least 1")
    if tables is not None:
        exp = _with_tables(exp, tables)
    chunk = chunk or chunk_size(exp)
    with Executor(executor, workers=workers, scheduler=scheduler, connect_timeout=connect_timeout) as ex:
        out.mkdir(parents=True, exist_ok=True)
        try:
            lock = Lock(out).__enter__()
        except LockError as exc:
            raise DatasetError(str(exc)) from None
        try:
            return _run_locked(exp, out, ex, chunk, force, scheduler, on_start, on_run, overwrite)
        finally:
            lock.__exit__(None, None, None)


def _run_locked(exp: Experiment, out: Path, ex: Executor, chunk: int, force: bool, scheduler, on_start, on_run,
                overwrite: bool = False) -> dict:
    remove_stale_temporaries(out)
    manifest = _prepare(exp, out, force, overwrite)
    manifest["chunk"] = chunk
    session = {"started_at": _now(), "finished_at": None, "executor": ex.kind, "workers": ex.workers,
               "scheduler": scheduler if isinstance(scheduler, str) else None, "command_line": " ".join(sys.argv),
               "chunk": chunk, "runs_run": 0, "runs_skipped": 0, "status": "running"}
    manifest["sessions"].append(session)
    _write_inputs(exp, out)
    finished = finished_runs(out)
    done = sum(len(v) for v in finished.values())
    session["runs_skipped"] = done
    manifest["runs"]["done"] = done
    write_json(out / MANIFEST, manifest)

    plans = {d.name: plan_chunks(exp.replications, finished.get(d.name, set()), chunk) for d in exp.designs}
    # block by block, each design in turn: an interrupted batch has every design about as far along
    todo = sorted(((reps.start // chunk, i, reps) for i, d in enumerate(exp.designs) for reps in plans[d.name]),
                  key=lambda t: (t[0], t[1], t[2].start))
    if on_start:
        on_start(sum(len(r) for _, _, r in todo), done)
    tasks = (Task(exp.name, exp.designs[i].name, exp.designs[i].fingerprint, exp.designs[i].raw, exp.seed, reps, exp.tables)
             for _, i, reps in todo)

    def stop(status: str) -> None:
        # the chunks on disk are the truth: an interrupt can land after a chunk's files are in place and before
        # it was counted, and that chunk is done
        on_disk = sum(len(v) for v in finished_runs(out).values())
        session["runs_run"] += on_disk - manifest["runs"]["done"]
        manifest["runs"]["done"] = on_disk
        session.update(status=status, finished_at=_now())
        manifest["status"] = status
        write_json(out / MANIFEST, manifest)

    try:
        for _task, result in ex.map(run_task, tasks, key=lambda t: t.key):
            write_chunk(out, result.design, result.reps, result.files)
            session["runs_run"] += len(result.reps)
            manifest["runs"]["done"] += len(result.reps)
            if on_run:
                on_run(result)
    except KeyboardInterrupt:
        stop("interrupted")
        raise BatchInterrupted(out, manifest["runs"]["done"], exp.runs) from None
    except ExecutorFailed as exc:
        stop("interrupted")
        raise BatchStopped(out, manifest["runs"]["done"], exp.runs, str(exc)) from None
    except BaseException:
        stop("failed")
        raise
    shutil.rmtree(out / "runs" / ".tmp", ignore_errors=True)
    summary = summarise_dataset(out, manifest)
    write_frame(summary, out / SUMMARY_PARQUET, out / SUMMARY_CSV, {"experiment_sha256": exp.sha256, "seed": exp.seed})
    write_frame(long_dataset(out, manifest), out / LONG_PARQUET, None, {"experiment_sha256": exp.sha256, "seed": exp.seed})
    session.update(status="complete", finished_at=_now())
    manifest.update(status="complete", finished_at=session["finished_at"])
    write_json(out / MANIFEST, manifest)
    return manifest


def _with_tables(exp: Experiment, tables: tuple[str, ...]) -> Experiment:
    from dataclasses import replace

    from .experiment import fingerprint

    tables = tuple(dict.fromkeys(list(tables) + ["replications"]))
    designs = tuple(replace(d, fingerprint=fingerprint(d.raw, exp.seed, tables)) for d in exp.designs)
    return replace(exp, tables=tables, designs=designs)


def _write_inputs(exp: Experiment, out: Path) -> None:
    """A copy of the experiment file and each design's complete scenario (runnable with `pbrsim run`)."""
    write_bytes_atomic(out / "experiment.yaml", exp.path.read_bytes())
    ddir = out / "designs"
    shutil.rmtree(ddir, ignore_errors=True)
    ddir.mkdir()
    for d in exp.designs:
        header = f"# Design {d.name!r} of experiment {exp.name!r} ({d.origin}): {d.base} with overrides {d.overrides}"
        if d.remove:
            header += f", removed {list(d.remove)}"
        (ddir / f"{d.name}.yaml").write_text(header + "\n" + yaml.safe_dump(d.raw, sort_keys=False, allow_unicode=True))


def _sweeps(manifest: dict) -> dict[str, dict]:
    """Each design's sweep values by label (datasets of older versions have none)."""
    return {d["name"]: d.get("sweep") or {} for d in manifest["designs"]}


def _names_in(out: Path, design: str) -> tuple[list[str], list[str]]:
    """Segment and organisation names of a design, from the complete scenario the batch wrote for it."""
    path = out / "designs" / f"{design}.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return [], []
    orgs = [o.get("name") for o in raw.get("organisations") or [] if isinstance(o, dict)]
    if not orgs and isinstance(raw.get("provider"), dict):
        orgs = [raw["provider"].get("name")]
    return list(raw.get("segments") or {}), [o for o in orgs if o]


def long_dataset(out: str | Path, manifest: dict | None = None) -> pd.DataFrame:
    """Every finished replication's figures as the long table (one row per design x replication x figure),
    with the sweep values as typed columns after ``design``."""
    from .long_format import LONG_COLUMNS, long_replications, with_sweep_columns

    out = Path(out)
    manifest = manifest or read_manifest(out)
    parts = []
    for d in manifest["designs"]:
        df = read_table(out, "replications", designs=[d["name"]])
        if df.empty:
            continue
        segments, orgs = _names_in(out, d["name"])
        part = long_replications(df.drop(columns="design"), segments, orgs)
        part.insert(0, "design", d["name"])
        parts.append(part)
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["design", *LONG_COLUMNS])
    for col in ("design", "metric", "organisation", "segment", "item"):
        table[col] = table[col].astype("string")
    return with_sweep_columns(table, "design", _sweeps(manifest))


def summarise_dataset(out: str | Path, manifest: dict | None = None) -> pd.DataFrame:
    """One row per design x metric from the per-replication tables of a dataset (see compare.summary_table),
    with the sweep values as typed columns at the end."""
    from ..analysis.compare import summary_table
    from .long_format import with_sweep_columns

    out = Path(out)
    manifest = manifest or read_manifest(out)
    names = [d["name"] for d in manifest["designs"]]
    frames = {}
    for name in names:  # one design at a time: each has its own columns (no milestones without milestone payments)
        df = read_table(out, "replications", designs=[name])
        if not df.empty:
            frames[name] = df.drop(columns="design").set_index("replication").sort_index()
    if not frames:
        raise DatasetError(f"{out} has no finished runs yet")
    summary = summary_table(frames, [n for n in names if n in frames], manifest["baseline"])
    return with_sweep_columns(summary, "design", _sweeps(manifest), at_end=True)


def resummarise(out: str | Path) -> tuple[pd.DataFrame, dict]:
    """Recompute summary.parquet and summary.csv of a dataset; returns (summary, manifest)."""
    out = Path(out)
    manifest = read_manifest(out)
    summary = summarise_dataset(out, manifest)
    meta = {"experiment_sha256": manifest["experiment"]["sha256"], "seed": manifest["seed"]}
    write_frame(summary, out / SUMMARY_PARQUET, out / SUMMARY_CSV, meta)
    write_frame(long_dataset(out, manifest), out / LONG_PARQUET, None, meta)
    return summary, manifest
