"""Evaluating designs: the one place a design is simulated, the cache that makes a search resumable, and exact mode.

``replication_figures(raw, seed, reps)`` is everything a search learns about a design by Monte Carlo: the
per-replication figures of ``simulate`` (``run_tables`` then ``summarise_tables``) for the replications
asked for. Replication r of every design uses the random streams of (seed, r), never the design or the
worker, so designs are compared on common random numbers and any executor gives the same numbers. A
batched engine call that runs many replications in one set of arrays can replace its body unchanged.

``Evaluator`` cuts requests into tasks of ``chunk`` replications aligned to multiples of ``chunk``, runs
the missing ones in parallel on one ``experiments.executors.Executor`` kept open for the whole search, and
keeps each result as a Parquet file named by the hash of (scenario, seed, replications), written atomically: a rerun, or a search stopped and
started again, reuses every evaluation already made.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .. import __version__
from ..scenario.schema import scenario_from_dict

_MODELS: dict[str, Any] = {}
_MAX_MODELS = 64


def design_key(raw: dict) -> str:
    """Content hash of a scenario mapping (the design's identity in caches and tables)."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _model(raw: dict, key: str):
    from ..engine.run import compile_model

    model = _MODELS.get(key)
    if model is None:
        if len(_MODELS) >= _MAX_MODELS:
            _MODELS.pop(next(iter(_MODELS)))
        model = _MODELS[key] = compile_model(scenario_from_dict(raw, "<design>"))
    return model


def replication_figures(raw: dict, seed: int, reps: Sequence[int], key: str | None = None) -> pd.DataFrame:
    """Per-replication figures (``simulate``'s ``per_replication`` columns) of one design, indexed by replication."""
    from ..simulate import run_tables, summarise_tables

    model = _model(raw, key or design_key(raw))
    tables = run_tables(model, seed, list(reps))
    per_rep, _ = summarise_tables(model, tables, seed)
    out = per_rep.apply(pd.to_numeric, errors="coerce").astype(float)
    out.index = out.index.astype(np.int64)
    return out


@dataclass(frozen=True)
class Task:
    """Replications ``reps`` of one design: everything a worker needs, nothing that depends on where it runs."""

    key: str
    raw: dict
    seed: int
    reps: tuple[int, ...]

    @property
    def file(self) -> str:
        blob = json.dumps([self.key, self.seed, self.reps[0], self.reps[-1], len(self.reps), __version__])
        return hashlib.sha256(blob.encode()).hexdigest()[:32] + ".parquet"


def run_task(task: Task) -> pd.DataFrame:
    return replication_figures(task.raw, task.seed, task.reps, task.key)


class Cache:
    """Evaluations on disk: one Parquet file per task, named by its content hash, written atomically."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder is not None else None

    def get(self, task: Task) -> pd.DataFrame | None:
        if self.folder is None:
            return None
        path = self.folder / task.file
        if not path.exists():
            return None
        try:
            df = pd.read_parquet(path)
        except Exception:  # an unreadable file is evaluated again (and replaced)
            return None
        return df.set_index("replication")

    def put(self, task: Task, df: pd.DataFrame) -> None:
        if self.folder is None:
            return
        import io

        from ..store import write_file

        buf = io.BytesIO()
        df.rename_axis("replication").reset_index().to_parquet(buf, index=False)
        write_file(self.folder / task.file, buf.getvalue())


class Evaluator:
    """Runs Monte Carlo evaluations of designs in parallel, reusing cached ones; counts the work done."""

    def __init__(self, seed: int, *, cache: Cache | None = None, executor: str = "process", workers: int | None = None,
                 chunk: int = 10, progress: Callable[[int], None] | None = None):
        self.seed, self.cache, self.executor, self.workers, self.chunk = seed, cache or Cache(None), executor, workers, chunk
        self.progress = progress
        self.replications_run = 0
        self.replications_reused = 0
        self._memory: dict[tuple[str, int, tuple], pd.DataFrame] = {}
        self._exact: dict[str, dict[str, float]] = {}
        self._kept = None  # the executor kept across batches (experiments.executors.KeptExecutor)

    def _executor(self):
        """The executor, opened at the first parallel batch and kept for the later ones (the stages and rounds of a
        search), so that worker processes start once and keep the designs they have compiled."""
        from ..experiments.executors import KeptExecutor

        if self._kept is None:
            self._kept = KeptExecutor(self.executor, self.workers)
        return self._kept.get()

    def close(self) -> None:
        """Shut the executor down (a later batch opens a new one)."""
        if self._kept is not None:
            self._kept.close()

    def tasks(self, key: str, raw: dict, reps: Iterable[int], seed: int) -> list[Task]:
        reps = sorted(set(reps))
        out, start = [], None
        for r in reps:  # cut at multiples of the chunk, so the same tasks recur however requests grow
            if start is None or r // self.chunk != start // self.chunk:
                out.append([])
                start = r
            out[-1].append(r)
        return [Task(key, raw, seed, tuple(part)) for part in out]

    def evaluate(self, requests: dict[Any, tuple[dict, Iterable[int]]], seed: int | None = None) -> dict[Any, pd.DataFrame]:
        """``{id: (raw, replications)}`` -> ``{id: per-replication figures}``; all missing tasks run in one parallel batch."""
        seed = self.seed if seed is None else seed
        plan: dict[Any, list[Task]] = {}
        todo: dict[str, Task] = {}
        for rid, (raw, reps) in requests.items():
            key = design_key(raw)
            plan[rid] = self.tasks(key, raw, reps, seed)
            for t in plan[rid]:
                mk = (t.key, t.seed, t.reps)
                if mk in self._memory or t.file in todo:
                    continue
                cached = self.cache.get(t)
                if cached is not None and len(cached) == len(t.reps):
                    self._memory[mk] = cached
                    self.replications_reused += len(t.reps)
                    if self.progress:
                        self.progress(len(t.reps))
                    continue
                todo[t.file] = t
        if todo:
            jobs = list(todo.values())
            if self.executor == "serial" or len(jobs) == 1:
                results = ((t, run_task(t)) for t in jobs)
            else:
                results = self._executor().map(run_task, jobs, key=lambda t: f"pbrsim-design-{t.file[:-8]}")
            for t, df in results:
                self.cache.put(t, df)
                self._memory[(t.key, t.seed, t.reps)] = df
                self.replications_run += len(t.reps)
                if self.progress:
                    self.progress(len(t.reps))
        return {rid: pd.concat([self._memory[(t.key, t.seed, t.reps)] for t in ts]).sort_index() for rid, ts in plan.items()}

    def _exact_path(self, key: str) -> Path | None:
        return self.cache.folder / f"exact-{key}.json" if self.cache.folder is not None else None

    def exact(self, raws: dict[Any, dict]) -> dict[Any, dict[str, float]]:
        """``{id: raw}`` -> exact expected quantities (``exact_quantities``) of each design, the missing ones in
        parallel, kept on disk like Monte Carlo results. Raises ExactNotApplicable for a design outside exact mode."""
        keys = {rid: design_key(raw) for rid, raw in raws.items()}
        todo: dict[str, dict] = {}
        for rid, key in keys.items():
            if key in self._exact or key in todo:
                continue
            path = self._exact_path(key)
            if path is not None and path.exists():
                try:
                    self._exact[key] = json.loads(path.read_text())
                    continue
                except (OSError, ValueError):
                    pass
            todo[key] = raws[rid]
        jobs = list(todo.items())
        if self.executor == "serial" or len(jobs) < 2:
            results = ((j, _exact_task(j)) for j in jobs)
        else:
            results = self._executor().map(_exact_task, jobs, key=lambda j: f"pbrsim-exact-{j[0]}")
        for (key, _), q in results:
            if isinstance(q, str):
                from ..engine.exact import ExactNotApplicable

                raise ExactNotApplicable(q)
            self._exact[key] = q
            path = self._exact_path(key)
            if path is not None:
                from ..store import write_file

                write_file(path, json.dumps(q).encode())
        return {rid: self._exact[key] for rid, key in keys.items()}

    def pending(self, requests: dict[Any, tuple[dict, Iterable[int]]], seed: int | None = None) -> int:
        """Replications the request would run or read (for progress bars)."""
        seed = self.seed if seed is None else seed
        n = 0
        for raw, reps in requests.values():
            key = design_key(raw)
            n += sum(len(t.reps) for t in self.tasks(key, raw, reps, seed) if (t.key, t.seed, t.reps) not in self._memory)
        return n


# ---------------------------------------------------------------------------------------------
# Exact mode


def _exact_task(job: tuple[str, dict]) -> dict[str, float] | str:
    """Exact quantities of one design, or the reason exact mode does not apply (a message, so it pickles)."""
    from ..engine.exact import ExactNotApplicable

    try:
        return exact_quantities(job[1])
    except ExactNotApplicable as exc:
        return str(exc)


def exact_reasons(raw: dict) -> list[str]:
    """Why exact mode does not apply to this design (empty when it does)."""
    from ..engine.exact import check_exact

    return check_exact(_model(raw, design_key(raw)))


def exact_quantities(raw: dict) -> dict[str, float]:
    """Expected values of the per-replication columns the design figures use, by Markov-chain algebra.

    Raises ``engine.exact.ExactNotApplicable`` where exact mode does not apply."""
    from ..analysis.parking import complexity_groups
    from ..engine.exact import expected

    model = _model(raw, design_key(raw))
    ex = expected(model)
    seg = ex.segments.set_index("segment")
    out: dict[str, float] = {}
    names = list(model.pathway.segments)
    for g in names + ["all"]:
        key = "" if g == "all" else f"[{g}]"
        out[f"referrals{key}"] = float(seg.loc[g, "referrals"])
        if "outcomes" in seg:
            out[f"outcomes{key}"] = float(seg.loc[g, "outcomes"])
    pay = ex.commissioner_payments
    out["paid_total"] = float(pay["amount"].sum())
    most, least = complexity_groups(model)
    if most:
        out["referrals_complex"] = float(seg.loc[most, "referrals"].sum())
        out["referrals_least"] = float(seg.loc[least, "referrals"].sum())
        if "outcomes" in seg:
            out["outcomes_complex"] = float(seg.loc[most, "outcomes"].sum())
            out["outcomes_least"] = float(seg.loc[least, "outcomes"].sum())
        direct = float(pay.loc[pay["segment"].isin(most), "amount"].sum())
        fee = float(pay.loc[pay["segment"].isna(), "amount"].sum())
        share = out["referrals_complex"] / out["referrals"] if out["referrals"] else 0.0
        out["paid_complex"] = direct + fee * share
    for o in ex.summary()["organisations"]:
        out[f"margin[{o['organisation']}]"] = o["income"] - o["costs"]
    if model.scenario.value is not None:
        from ..value.exact import expected_value

        out.update({k: v for k, v in expected_value(model).items() if isinstance(v, float)})
    return out
