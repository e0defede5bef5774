"""Public value under stress: the net present public value of each stressed scenario, paired with the base.

Each variant (a stressed copy of the scenario) is run for replications 0..n-1 with the same seed, so
replication r of every variant meets the same clients and the same luck; its counterfactual is run as
for any run (``value.appraisal``). The change against the unstressed base is the mean per-replication
difference with a 95% interval. Stresses change the programme; the counterfactual is as the value
section writes it (a recession that would also hit people without the programme is not applied to it).
"""

from __future__ import annotations

from typing import Callable, Iterable

import pandas as pd

from ..analysis.metrics import mean_ci, ratio_ci
from ..engine.records import TABLES, batch_columns, concat_columns, to_frame
from ..engine.run import Model, batch_size, compile_model, run_batch
from ..scenario.schema import scenario_from_dict
from .appraisal import per_replication


def run_tables(model: Model, seed: int, reps: Iterable[int]) -> dict[str, pd.DataFrame]:
    """The tables of replications ``reps`` (as ``pbrsim.simulate.run_tables``)."""
    parts: dict[str, list] = {t: [] for t in TABLES}
    reps, size = list(reps), batch_size(model)
    for lo in range(0, len(reps), size):
        for table, cols in batch_columns(model, run_batch(model, seed, reps[lo:lo + size])).items():
            parts[table].append(cols)
    return {t: to_frame(model, t, concat_columns(parts[t])) for t in TABLES}


def value_under_stress(variants: list[tuple[str, str, dict]], seed: int, replications: int,
                       progress: Callable[[int], None] | None = None) -> list[dict]:
    """Rows ``{name, label, net_public_value, benefit_cost_ratio, fiscal_return, change}`` for ``(name, label, raw)``
    variants, the first being the unstressed base; ``change`` is the paired difference from the base."""
    rows, base = [], None
    for name, label, raw in variants:
        model = compile_model(scenario_from_dict(raw, f"stress {name}"))
        reps = range(replications)
        cols = per_replication(model, run_tables(model, seed, reps), seed)
        if progress:
            progress(replications)
        npv = cols["net_public_value"]
        row = {"name": name, "label": label, "net_public_value": mean_ci(npv),
               "benefit_cost_ratio": ratio_ci(cols["value_benefits"].to_numpy(), cols["value_costs"].to_numpy()),
               "fiscal_return": ratio_ci(cols["value_public_benefits"].to_numpy(), cols["value_costs"].to_numpy())}
        if base is None:
            base = npv
        else:
            row["change"] = mean_ci(npv - base)
        rows.append(row)
    return rows
