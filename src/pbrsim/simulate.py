"""The Python API: run replications of a scenario and collect tidy pandas tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from .engine import Model, compile_model, run_replication
from .metrics import per_replication, summarise
from .records import TABLES, concat_columns, replication_columns, to_frame
from .scenario import Scenario

FAILURE_COLUMNS = ["replication", "organisation", "failure_month", "clients_affected"]


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
    parts: dict[str, list] = {t: [] for t in TABLES}
    failures = []
    for rep in range(replications):
        r = run_replication(model, seed, rep)
        for table, cols in replication_columns(model, r).items():
            parts[table].append(cols)
        if r.failure_month >= 0:
            failures.append((rep, model.provider.name, r.failure_month, int((r.state == model.pathway.dropped).sum())))
        if progress:
            progress(1)
    frames = {t: to_frame(model, t, concat_columns(parts[t])) for t in TABLES}
    fail_df = pd.DataFrame(failures, columns=FAILURE_COLUMNS)
    per_rep = per_replication(model, frames["clients"], frames["ledger"], frames["monthly"], frames["settlements"], fail_df, replications)
    result = SimulationResult(model=model, seed=seed, replications=replications, failures=fail_df, per_replication=per_rep, **frames)
    result.summary = summarise(model, per_rep, seed)
    return result
