"""The Python API: run replications of a scenario and collect tidy pandas tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import pandas as pd

from .engine.run import Model, batch_size, compile_model, run_batch
from .analysis import parking
from .analysis.metrics import per_replication, summarise
from .engine.records import TABLES, batch_columns, concat_columns, to_frame
from .scenario.schema import Scenario


@dataclass
class SimulationResult:
    """All tables of a run; money columns in the tables are integer pence, the summary is in pounds."""

    model: Model
    seed: int
    replications: int
    clients: pd.DataFrame
    ledger: pd.DataFrame
    monthly: pd.DataFrame
    claims: pd.DataFrame
    settlements: pd.DataFrame
    failures: pd.DataFrame
    per_replication: pd.DataFrame
    summary: dict = field(default_factory=dict)

    @property
    def scenario(self) -> Scenario:
        return self.model.scenario

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


def run_tables(model: Model, seed: int, replications: Iterable[int], progress: Callable[[int], None] | None = None,
               batch: int | None = None) -> dict[str, pd.DataFrame]:
    """Tables (clients, ledger, monthly, claims, settlements, failures) for the given replication indices,
    run ``batch`` replications at a time (default: as many as keep a batch's memory bounded). The tables
    are the same whatever the batch size."""
    reps = list(replications)
    size = batch or batch_size(model)
    parts: dict[str, list] = {t: [] for t in TABLES}
    for i in range(0, len(reps), size):
        b = run_batch(model, seed, reps[i:i + size])
        for table, cols in batch_columns(model, b).items():
            parts[table].append(cols)
        if progress:
            progress(len(b))
    return {t: to_frame(model, t, concat_columns(parts[t])) for t in TABLES}


def summarise_tables(model: Model, tables: dict[str, pd.DataFrame], seed: int) -> tuple[pd.DataFrame, dict]:
    """Per-replication figures and the summary, from tables of any set of replications."""
    per_rep = per_replication(model, tables["clients"], tables["ledger"], tables["monthly"], tables["settlements"], tables["failures"])
    cols = parking.per_replication_columns(model, tables["clients"], tables["monthly"], tables["ledger"])
    per_rep = per_rep.join(cols.loc[:, ~cols.columns.isin(per_rep.columns)]).copy()
    summary = summarise(model, per_rep, seed)
    summary["parking"] = parking.summary(per_rep, model)
    return per_rep, summary


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
    return SimulationResult(model=model, seed=seed, replications=replications, per_replication=per_rep, summary=summary, **frames)
