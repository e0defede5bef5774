"""Batches: every design x replication of an experiment, run anywhere, written run by run, resumable.

One task is one (design, replication). A worker compiles the design's model (once per design per
worker), runs that replication with ``simulate.run_tables``, computes its row of per-replication figures
with ``simulate.replication_figures`` and returns the run's tables as Parquet bytes — nothing else. The
driver moves each run's files into place as it arrives (``dataset.write_run``) and forgets it, so memory
stays bounded by the few tasks in flight. Random streams depend on the seed, the replication and the
purpose only (``pbrsim.engine.rng``), never on the design or the worker: replication r of every design sees
the same referrals and the same draws (common random numbers), and serial, pool and Dask runs write the
same data.
"""

from __future__ import annotations

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
    MANIFEST,
    DatasetError,
    Lock,
    finished_runs,
    read_manifest,
    read_table,
    remove_runs,
    table_bytes,
    write_bytes_atomic,
    write_frame,
    write_json,
    write_run,
)
from .executors import check_executor, run_tasks
from .experiment import Experiment

SUMMARY_PARQUET = "summary.parquet"
SUMMARY_CSV = "summary.csv"


class ChangedExperiment(DatasetError):
    """The output folder holds runs of a different version of the experiment."""


class BatchInterrupted(Exception):
    def __init__(self, out: Path, done: int, total: int):
        self.out, self.done, self.total = out, done, total
        super().__init__(f"interrupted with {done} of {total} runs saved in {out}")


@dataclass(frozen=True)
class Task:
    """One replication of one design; everything a worker needs, nothing that depends on where it runs."""

    experiment: str
    design: str
    fingerprint: str
    scenario: dict
    seed: int
    replication: int
    tables: tuple[str, ...] | None  # None = all tables

    @property
    def key(self) -> str:
        """Deterministic task key (used by Dask)."""
        return f"pbrsim-run-{self.design}-{self.replication}-{self.fingerprint[:12]}"


@dataclass
class RunOutput:
    design: str
    replication: int
    files: dict[str, bytes]


_MODELS: dict[str, object] = {}
_MODELS_LOCK = threading.Lock()
_MAX_MODELS = 256


def _model(task: Task):
    from ..engine.run import compile_model
    from ..scenario.schema import scenario_from_dict

    with _MODELS_LOCK:
        model = _MODELS.get(task.fingerprint)
    if model is None:
        model = compile_model(scenario_from_dict(task.scenario, f"design {task.design}"))
        with _MODELS_LOCK:
            if len(_MODELS) >= _MAX_MODELS:
                _MODELS.pop(next(iter(_MODELS)))
            _MODELS[task.fingerprint] = model
    return model


def run_task(task: Task) -> RunOutput:
    """Run one task and return its tables as Parquet bytes (``replications`` = its per-replication row)."""
    from ..simulate import replication_figures, run_tables

    model = _model(task)
    tables = run_tables(model, task.seed, [task.replication])  # DataFrames are built only for the tables kept
    names = (*tables, "replications")
    keep = task.tables if task.tables is not None else names
    meta = {"experiment": task.experiment, "design": task.design, "design_sha256": task.fingerprint,
            "seed": task.seed, "replication": task.replication, "version": __version__}
    files = {name: table_bytes(replication_figures(model, tables).reset_index() if name == "replications" else tables[name],
                               {**meta, "table": name}) for name in names if name in keep}
    return RunOutput(task.design, task.replication, files)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _changes(old: dict, exp: Experiment) -> list[str]:
    """What differs between a dataset's manifest and the experiment now, in words (empty: nothing)."""
    notes = []
    if old.get("experiment", {}).get("sha256") != exp.sha256:
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
    if notes and not (changed or added or removed) and old.get("replications") == exp.replications:
        notes.append("no design changed (comments or formatting only?)")
    return notes


def _prepare(exp: Experiment, out: Path, force: bool) -> dict:
    """Check the folder against the experiment, drop runs that no longer belong, return the manifest to continue."""
    old = None
    if (out / MANIFEST).exists():
        old = read_manifest(out)
        if old.get("kind") != "pbrsim-experiment":
            raise DatasetError(f"{out} holds something other than a pbrsim experiment dataset; choose another --out")
    elif out.exists() and any(p.name != ".pbrsim.lock" for p in out.iterdir()):
        raise DatasetError(f"{out} exists and is not a pbrsim experiment dataset; choose another --out")

    notes = _changes(old, exp) if old is not None else []
    if notes and not force:
        raise ChangedExperiment(
            f"{out} holds runs of a different version of this experiment:\n  - " + "\n  - ".join(notes)
            + "\nRerun with --force to keep the runs that are still valid and run the rest, or choose another --out."
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
        "layout": "runs/<table>/design=<design>/rep=<replication, 5 digits>/part-0.parquet",
        "random_numbers": "common: replication r of every design uses the streams of (seed, r, purpose)",
        "started_at": (old or {}).get("started_at") or _now(),
        "finished_at": None,
        "status": "running",
        "runs": {"total": exp.runs, "done": 0},
        "sessions": (old or {}).get("sessions", [])
        + ([{"at": _now(), "note": "experiment changed, accepted with --force: " + "; ".join(notes)}] if notes else []),
    }
    return manifest


def run_batch(
    exp: Experiment,
    out: str | Path,
    *,
    executor: str = "process",
    workers: int | None = None,
    scheduler=None,
    force: bool = False,
    tables: tuple[str, ...] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_run: Callable[[RunOutput], None] | None = None,
) -> dict:
    """Run every design x replication of ``exp`` not yet in ``out``; returns the final manifest.

    ``tables`` overrides the experiment's choice of tables kept (``compare`` keeps ``("replications",)``).
    ``on_start(to_run, already_done)`` is called once before the first task, ``on_run`` after each run is
    on disk. Raises ChangedExperiment, DatasetError, or BatchInterrupted (Ctrl-C; the runs finished so far
    are kept and the same call resumes).
    """
    out = Path(out)
    check_executor(executor)
    if tables is not None:
        exp = _with_tables(exp, tables)
    out.mkdir(parents=True, exist_ok=True)
    with Lock(out):
        manifest = _prepare(exp, out, force)
        session = {"started_at": _now(), "finished_at": None, "executor": executor, "workers": workers,
                   "scheduler": scheduler if isinstance(scheduler, str) else None, "command_line": " ".join(sys.argv),
                   "runs_run": 0, "runs_skipped": 0, "status": "running"}
        manifest["sessions"].append(session)
        _write_inputs(exp, out)
        finished = finished_runs(out)
        done = sum(len(v) for v in finished.values())
        session["runs_skipped"] = done
        manifest["runs"]["done"] = done
        write_json(out / MANIFEST, manifest)

        todo = [(rep, d) for rep in range(exp.replications) for d in exp.designs if rep not in finished.get(d.name, ())]
        if on_start:
            on_start(len(todo), done)
        tasks = (Task(exp.name, d.name, d.fingerprint, d.raw, exp.seed, rep, exp.tables) for rep, d in todo)
        try:
            for _task, result in run_tasks(run_task, tasks, executor=executor, workers=workers, scheduler=scheduler,
                                           key=lambda t: t.key):
                write_run(out, result.design, result.replication, result.files)
                session["runs_run"] += 1
                manifest["runs"]["done"] += 1
                if on_run:
                    on_run(result)
        except KeyboardInterrupt:
            session.update(status="interrupted", finished_at=_now())
            manifest["status"] = "interrupted"
            write_json(out / MANIFEST, manifest)
            raise BatchInterrupted(out, manifest["runs"]["done"], exp.runs) from None
        except BaseException:
            session.update(status="failed", finished_at=_now())
            manifest["status"] = "failed"
            write_json(out / MANIFEST, manifest)
            raise
        shutil.rmtree(out / "runs" / ".tmp", ignore_errors=True)
        summary = summarise_dataset(out, manifest)
        write_frame(summary, out / SUMMARY_PARQUET, out / SUMMARY_CSV, {"experiment_sha256": exp.sha256, "seed": exp.seed})
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


def summarise_dataset(out: str | Path, manifest: dict | None = None) -> pd.DataFrame:
    """One row per design x metric from the per-replication tables of a dataset (see compare.summary_table)."""
    from ..analysis.compare import summary_table

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
    return summary_table(frames, [n for n in names if n in frames], manifest["baseline"])


def resummarise(out: str | Path) -> tuple[pd.DataFrame, dict]:
    """Recompute summary.parquet and summary.csv of a dataset; returns (summary, manifest)."""
    out = Path(out)
    manifest = read_manifest(out)
    summary = summarise_dataset(out, manifest)
    write_frame(summary, out / SUMMARY_PARQUET, out / SUMMARY_CSV,
                {"experiment_sha256": manifest["experiment"]["sha256"], "seed": manifest["seed"]})
    return summary, manifest
