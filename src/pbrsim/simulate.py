"""The Python API: run replications of a scenario and collect tidy pandas tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import pandas as pd

from .engine.run import Model, compile_model, run_replication
from .analysis import parking
from .analysis.columns import Batch
from .analysis.metrics import figures, frame, summarise
from .engine.records import TABLES, Tables, concat_columns, replication_columns
from .scenario.schema import Scenario


@dataclass
class SimulationResult:
    """All tables of a run; money columns in the tables are integer pence, the summary is in pounds.

    ``clients``, ``ledger``, ``monthly``, ``claims``, ``settlements`` and ``failures`` are DataFrames,
    each built from the engine's columns the first time it is read.
    """

    model: Model
    seed: int
    replications: int
    frames: Mapping[str, pd.DataFrame]  # the run tables by name (records.Tables: each built when first read)
    per_replication: pd.DataFrame
    summary: dict = field(default_factory=dict)

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


def run_tables(model: Model, seed: int, replications: Iterable[int], progress: Callable[[int], None] | None = None) -> Tables:
    """Tables (clients, ledger, monthly, claims, settlements, failures) for the given replication indices
    (a mapping of DataFrames, each built when first read)."""
    parts: dict[str, list] = {t: [] for t in TABLES}
    for rep in replications:
        r = run_replication(model, seed, rep)
        for table, cols in replication_columns(model, r).items():
            parts[table].append(cols)
        if progress:
            progress(1)
    return Tables(model, {t: concat_columns(parts[t]) for t in TABLES})


def replication_figures(model: Model, tables, seed: int | None = None) -> pd.DataFrame:
    """The per-replication table (``replications.parquet``): every figure of every replication in ``tables``.

    ``tables`` maps table names to DataFrames or to the engine's columns, for any set of replications. With a
    value section the value columns are added, which needs the ``seed`` (the counterfactual's random numbers).
    """
    labels, cols = _figures(model, tables)
    per_rep = frame(labels, cols)
    if model.scenario.value is not None:
        if seed is None:
            raise ValueError("a scenario with a value section needs the seed for its per-replication figures")
        per_rep = _with_value(model, tables, seed, per_rep)
    return per_rep


def summarise_tables(model: Model, tables, seed: int) -> tuple[pd.DataFrame, dict]:
    """Per-replication figures and the summary, from tables of any set of replications."""
    labels, cols = _figures(model, tables)
    summary = summarise(model, cols, seed)
    summary["parking"] = parking.summary(cols, model)
    per_rep = frame(labels, cols)
    if model.scenario.value is not None:  # public value against the counterfactual (pbrsim.value)
        from .value import summary as value_summary

        per_rep = _with_value(model, tables, seed, per_rep)
        summary["value"] = value_summary.summarise(model, per_rep)
    return per_rep, summary


def _with_value(model: Model, tables, seed: int, per_rep: pd.DataFrame) -> pd.DataFrame:
    """The per-replication figures joined with the value columns (docs/value.md)."""
    from .value import appraisal

    cols = appraisal.per_replication(model, tables, seed)
    return per_rep.join(cols.loc[:, ~cols.columns.isin(per_rep.columns)])


def _figures(model: Model, tables) -> tuple:
    batch = Batch(model, tables)
    cols = figures(batch)
    for name, values in parking.figures(batch).items():  # referral counts appear in both: one column
        cols.setdefault(name, values)
    return batch.labels, cols


def simulate(
    scenario: Scenario,
    seed: int = 0,
    replications: int = 1,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Run replications 0..replications-1 of ``scenario`` with root ``seed``."""
    if replications < 1:
        raise ValueError("replications must be at least 1")
    model = compile_model(scenario)
    frames = run_tables(model, seed, range(replications), progress)
    per_rep, summary = summarise_tables(model, frames, seed)
    return SimulationResult(model=model, seed=seed, replications=replications, frames=frames, per_replication=per_rep,
                            summary=summary)
