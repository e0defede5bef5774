"""The Python API: run replications of a scenario and collect tidy pandas tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from .engine.run import Model, batch_size, compile_model, run_batch
from .analysis import parking, retention
from .analysis.columns import Batch
from .analysis.metrics import arrow_frame, figures, frame, summarise
from .engine.records import TABLES, Tables, batch_columns, concat_columns
from .scenario.schema import Scenario
from .api.run_methods import RunMethods

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


@dataclass(repr=False)
class SimulationResult(RunMethods):
    """All tables of a run; money columns in the tables are integer pence, the summary is in pounds
    (``summary_table()``, ``replications_long()`` and the plots are in pounds too; docs/python.md).

    ``clients``, ``ledger``, ``monthly``, ``claims``, ``settlements`` and ``failures`` are DataFrames,
    each built from the engine's columns the first time it is read.
    """

    model: Model
    seed: int
    replications: int
    frames: Mapping[str, pd.DataFrame]  # the run tables by name (records.Tables: each built when first read)
    figures: Figures
    summary: dict = field(default_factory=dict)

    @cached_property
    def per_replication(self) -> pd.DataFrame:
        """One row per replication, every figure of it (``replications.parquet``), indexed by replication."""
        return self.figures.frame()

    @property
    def scenario(self) -> Scenario:
        return self.model.scenario

    clients = property(lambda self: self.frames["clients"], doc="One row per client per replication.")
    ledger = property(lambda self: self.frames["ledger"], doc="One row per movement of money.")
    monthly = property(lambda self: self.frames["monthly"], doc="One row per organisation per month.")
    claims = property(lambda self: self.frames["claims"], doc="Claims made and rejected.")
    settlements = property(lambda self: self.frames["settlements"], doc="Settlements due, paid and capped.")
    failures = property(lambda self: self.frames["failures"], doc="Organisations that ran out of cash.")

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables written to Parquet, by file stem."""
        return {
            "clients": self.clients,
            "ledger": self.ledger,
            "monthly": self.monthly,
            "claims": self.claims,
            "settlements": self.settlements,
            "failures": self.failures,
            "replications": self.per_replication.reset_index(),
        }

    def arrow_tables(self) -> dict[str, pa.Table]:
        """The same tables as Arrow, built from the engine's columns without pandas: what ``save`` and
        ``pbrsim run`` write (``pd.read_parquet`` gives back the DataFrames of ``tables()``)."""
        out = {name: self.frames.arrow(name) for name in TABLES}
        out["replications"] = self.figures.arrow()
        return out


@dataclass(repr=False)
class Figures:
    """The per-replication figures as arrays (``labels``: the replications, ``columns``: by name), and the value
    columns' DataFrame when the scenario has a value section; made into a DataFrame only when read."""

    labels: object
    columns: dict
    value: pd.DataFrame | None = None
    _frame: pd.DataFrame | None = field(default=None, init=False)

    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            per_rep = frame(self.labels, self.columns)
            self._frame = per_rep if self.value is None else per_rep.join(
                self.value.loc[:, ~self.value.columns.isin(per_rep.columns)])
        return self._frame

    def arrow(self) -> pa.Table:
        if self.value is None:
            return arrow_frame(self.labels, self.columns)
        import pyarrow as pa

        return pa.Table.from_pandas(self.frame().reset_index(), preserve_index=False)


def run_tables(model: Model, seed: int, replications: Iterable[int], progress: Callable[[int], None] | None = None,
               batch: int | None = None) -> Tables:
    """Tables (clients, ledger, monthly, claims, settlements, failures) for the given replication indices
    (a mapping of DataFrames, each built when first read), run ``batch`` replications at a time (default: as
    many as keep a batch's memory bounded). The tables are the same whatever the batch size."""
    reps = list(replications)
    size = batch or batch_size(model)
    parts: dict[str, list] = {t: [] for t in TABLES}
    for i in range(0, len(reps), size):
        b = run_batch(model, seed, reps[i:i + size])
        for table, cols in batch_columns(model, b).items():
            parts[table].append(cols)
        if progress:
            progress(len(b))
    return Tables(model, {t: concat_columns(parts[t]) for t in TABLES})


def replication_figures(model: Model, tables, seed: int | None = None) -> pd.DataFrame:
    """The per-replication table (``replications.parquet``): every figure of every replication in ``tables``.

    ``tables`` maps table names to DataFrames or to the engine's columns, for any set of replications. With a
    value section the value columns are added, which needs the ``seed`` (the counterfactual's random numbers).
    """
    if model.scenario.value is not None and seed is None:
        raise ValueError("a scenario with a value section needs the seed for its per-replication figures")
    return _figures_of(model, tables, seed).frame()


def summarise_tables(model: Model, tables, seed: int) -> tuple[pd.DataFrame, dict]:
    """Per-replication figures and the summary, from tables of any set of replications."""
    figs, summary = _summarise(model, tables, seed)
    return figs.frame(), summary


def _summarise(model: Model, tables, seed: int) -> tuple[Figures, dict]:
    """The per-replication figures (as arrays) and the summary."""
    figs = _figures_of(model, tables, seed)
    cols = figs.columns
    summary = summarise(model, cols, seed)
    summary["parking"] = parking.summary(cols, model)
    lasting = retention.summary(cols)
    if lasting is not None:  # pathways that follow clients past their outcome: how long outcomes last
        summary["outcome_duration"] = lasting
    if figs.value is not None:  # public value against the counterfactual (pbrsim.value)
        from .value import summary as value_summary

        summary["value"] = value_summary.summarise(model, figs.frame())
    return figs, summary


def _figures_of(model: Model, tables, seed: int | None) -> Figures:
    """Every figure of every replication in ``tables``, with the value columns (docs/value.md) when the scenario
    has a value section."""
    batch = Batch(model, tables)
    cols = figures(batch)
    for name, values in parking.figures(batch).items():  # referral counts appear in both: one column
        cols.setdefault(name, values)
    cols.update(retention.figures(batch))
    figs = Figures(batch.labels, cols)
    if model.scenario.value is not None:
        from .value import appraisal

        figs.value = appraisal.per_replication(model, tables, seed)
    return figs


_WORKER_MODELS: dict[str, Model] = {}


def _chunk_columns(task: tuple[str, dict, int, range]) -> dict[str, list]:
    """In a worker: the engine's columns of replications ``reps`` (the model compiled once per worker)."""
    from .scenario.limits import LARGE
    from .scenario.schema import scenario_from_dict

    key, raw, seed, reps = task
    model = _WORKER_MODELS.get(key)
    if model is None:
        _WORKER_MODELS.clear()
        model = _WORKER_MODELS[key] = compile_model(scenario_from_dict(raw, "<scenario>", LARGE))  # checked by the caller
    parts: dict[str, list] = {t: [] for t in TABLES}
    reps, size = list(reps), batch_size(model)
    for i in range(0, len(reps), size):  # as run_tables does: the tables are the same whatever the batch size
        for table, cols in batch_columns(model, run_batch(model, seed, reps[i:i + size])).items():
            parts[table].append(cols)
    return parts


def run_tables_parallel(model: Model, seed: int, replications: int, workers: int | None, executor: str = "process",
                        progress: Callable[[int], None] | None = None, scheduler=None) -> Tables:
    """``run_tables`` for replications 0..replications-1 on ``workers`` processes (or a Dask cluster): the
    same tables, row for row, as one process gives (each replication's random streams depend only on the
    seed and the replication)."""
    import hashlib
    import json

    from .experiments.executors import Executor, default_workers

    raw = model.scenario.to_dict()
    key = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    n = workers or default_workers()
    size = max(1, min(50, -(-replications // (4 * n))))  # about four chunks per worker, at most 50 replications each
    tasks = [(key, raw, seed, range(a, min(a + size, replications))) for a in range(0, replications, size)]
    done: dict[int, dict[str, list]] = {}
    with Executor(executor, workers=workers, scheduler=scheduler) as ex:
        for task, parts in ex.map(_chunk_columns, tasks, key=lambda t: f"pbrsim-sim-{t[0][:12]}-{t[3].start}"):
            done[task[3].start] = parts
            if progress:
                progress(len(task[3]))
    parts = {t: [c for start in sorted(done) for c in done[start][t]] for t in TABLES}
    return Tables(model, {t: concat_columns(parts[t]) for t in TABLES})


def simulate(
    scenario: Scenario,
    seed: int = 0,
    replications: int = 1,
    progress: Callable[[int], None] | None = None,
    *,
    workers: int | None = 1,
    executor: str = "process",
    scheduler=None,
) -> SimulationResult:
    """Run replications 0..replications-1 of ``scenario`` with root ``seed``; ``workers`` processes (None: one
    per core), or a Dask cluster (``executor="dask"``, ``scheduler`` its address), give the same result as one."""
    if replications < 1:
        raise ValueError("replications must be at least 1")
    model = compile_model(scenario)
    if executor == "serial" or (workers == 1 and executor == "process") or replications == 1:
        frames = run_tables(model, seed, range(replications), progress)
    else:
        frames = run_tables_parallel(model, seed, replications, workers, executor, progress, scheduler)
    figs, summary = _summarise(model, frames, seed)
    return SimulationResult(model=model, seed=seed, replications=replications, frames=frames, figures=figs, summary=summary)
