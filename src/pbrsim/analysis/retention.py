"""How long outcomes last: months a client stays in the primary outcome state after first entering it.

Pathways that follow clients past their outcome (the small voluntary-sector archetype's `job_outcome` is kept
month by month until `left_work`) let a design be judged on the quality of its outcomes as well as their
number. Per replication (docs/behaviour.md §9):

* ``followed``: clients whose first entry into the primary outcome is at least ``window`` months before the
  contract's last month (the last with transitions), so that the whole window is seen;
* ``months_after``: the month ends they were still in the outcome state within the ``window`` months after the
  month of entry, summed (a client who leaves in month t after entering in month f counts t - f - 1).

``months_after / followed`` is the mean months in the outcome state in the window after an outcome (a pooled ratio).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import Batch
from .metrics import frame

WINDOW = 12


def months_after_outcome(model, clients, monthly, window: int = WINDOW) -> pd.DataFrame:
    """``followed`` and ``months_after`` per replication (module docstring), with ``segment`` suffixes too."""
    pw, c = model.pathway, model.contract
    batch = Batch(model, {"clients": clients, "monthly": monthly})
    cl = batch.table("clients")
    pos, keep = batch.rows("clients")
    out: dict[str, np.ndarray] = {}
    if c.primary_outcome < 0:
        return frame(batch.labels, out)
    name = pw.states[c.primary_outcome]
    first = cl[f"first_{name}"].astype(np.int64)
    end = cl["end_month"].astype(np.int64)
    final = cl["final_state"]
    last_month = model.months - 1  # the last month with transitions
    seen = (first >= 0) & (first + window <= last_month)
    # month ends in the state after the entry month's: to the month before it left, or to the last month
    stayed = np.where((end >= 0) & (final != c.primary_outcome), end - first - 1, last_month - first)
    months = np.clip(stayed, 0, window)
    seg = cl["segment"]
    for gi, g in enumerate(list(pw.segments) + [None]):
        sel = seen if g is None else seen & (seg == gi)
        key = "" if g is None else f"[{g}]"
        out[f"followed{key}"] = batch.count(pos, keep, sel)
        out[f"months_after{key}"] = batch.total(pos, keep, np.where(sel, months, 0))
    return frame(batch.labels, out)
