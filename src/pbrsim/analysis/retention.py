"""How long outcomes last: months a client stays in the primary outcome state after first entering it.

Pathways that follow clients past their outcome (the small voluntary-sector archetype's `job_outcome` is kept
month by month until `left_work`) let a design be judged on the quality of its outcomes as well as their
number. Per replication (docs/behaviour.md §9):

* ``outcomes_followed``: clients whose first entry into the primary outcome is at least ``window`` months before the
  contract's last month (the last with transitions), so that the whole window is seen;
* ``months_after_outcome``: the month ends they were still in the outcome state within the ``window`` months after the
  month of entry, summed (a client who leaves in month t after entering in month f counts t - f - 1).

``months_after_outcome / outcomes_followed`` is the mean months in the outcome state in the window after an outcome (a pooled ratio).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .columns import Batch
from .metrics import frame

if TYPE_CHECKING:
    import pandas as pd

WINDOW = 12


def months_after_outcome(model, clients, monthly, window: int = WINDOW) -> pd.DataFrame:
    """``outcomes_followed`` and ``months_after_outcome`` per replication (module docstring), by segment too."""
    batch = Batch(model, {"clients": clients, "monthly": monthly})
    return frame(batch.labels, figures(batch, window))


def follows_outcomes(model) -> bool:
    """The pathway keeps clients in the primary outcome state month by month (it is not absorbing)."""
    c, pw = model.contract, model.pathway
    return c.primary_outcome >= 0 and not bool(pw.absorbing[c.primary_outcome])


def figures(batch: Batch, window: int = WINDOW) -> dict[str, np.ndarray]:
    """The columns of the module docstring for a batch; nothing when the primary outcome is absorbing (a client
    who reaches it is never followed further, so there is nothing to measure)."""
    model = batch.model
    pw, c = model.pathway, model.contract
    out: dict[str, np.ndarray] = {}
    if not follows_outcomes(model):
        return out
    cl = batch.table("clients")
    pos, keep = batch.rows("clients")
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
        out[f"outcomes_followed{key}"] = batch.count(pos, keep, sel)
        out[f"months_after_outcome{key}"] = batch.total(pos, keep, np.where(sel, months, 0))
    return out


def summary(per_rep, window: int = WINDOW) -> dict | None:
    """Mean months in the outcome state in the ``window`` months after an outcome, overall and by segment (pooled
    ratios with 95% intervals); None when the run does not follow clients past their outcome."""
    from .estimators import ratio_ci
    from .metrics import columns_of

    cols, _ = columns_of(per_rep)
    if "outcomes_followed" not in cols:
        return None
    segs = [c[len("outcomes_followed["):-1] for c in cols if c.startswith("outcomes_followed[")]
    return {"window_months": window,
            "months_after_outcome": ratio_ci(cols["months_after_outcome"], cols["outcomes_followed"]),
            "segments": [{"segment": g, "months_after_outcome": ratio_ci(cols[f"months_after_outcome[{g}]"],
                                                                         cols[f"outcomes_followed[{g}]"])} for g in segs]}
