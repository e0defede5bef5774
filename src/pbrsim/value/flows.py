"""Value flows: what value lines are worth month by month, from where clients are and when they first
entered states, and the appraisal figures (present values, payback) from those flows.

Everything is linear in the occupancy and entry counts, so the same functions serve Monte Carlo
(counts per replication) and exact mode (expected counts).
"""

from __future__ import annotations

import numpy as np

from .spec import Line, ValueModel


def line_flows(vm: ValueModel, occ: np.ndarray, entries: list[np.ndarray | None], T: int) -> np.ndarray:
    """Gains by holder and month ``[R, holders, M]`` (base-year pounds, before optimism bias).

    ``occ[r, t, s]``: clients in state s at the end of contract month t (t < T); ``entries[i][r, t, g]``:
    clients of segment g whose first entry into line i's states was in month t (per: entry lines only).
    """
    R, M = occ.shape[0], vm.months
    out = np.zeros((R, len(vm.holders), M))
    Tm = min(T, M)
    for i, line in enumerate(vm.lines):
        h = vm.holders.index(line.holder)
        if line.per == "month":
            n = occ[:, :, line.states].sum(axis=2)  # [R, T]
            g = float(line.gain[0])
            out[:, h, :Tm] += g * n[:, :Tm]
            if line.after and T <= M:
                k = np.arange(1, line.after + 1)
                k = k[T - 1 + k < M]
                out[:, h, T - 1 + k] += g * n[:, T - 1, None] * (1.0 - line.decay) ** (k / 12.0)
        else:
            a = entries[i] @ line.gain  # [R, T] pounds triggered by entries in each month
            kernel = _persistence(line)
            for j, w in enumerate(kernel):
                if j >= M:
                    break
                out[:, h, j:j + Tm] += w * a[:, : min(Tm, M - j)]
    return out


def _persistence(line: Line) -> np.ndarray:
    """Weight of an entry's gain in each month from the entry month: once, or ``months`` months decaying."""
    if line.months is None:
        return np.ones(1)
    return (1.0 - line.decay) ** (np.arange(line.months) / 12.0)


def figures(vm: ValueModel, gains: np.ndarray, costs: np.ndarray) -> dict[str, np.ndarray]:
    """Per-replication appraisal figures from programme-minus-counterfactual ``gains [R, holders, M]`` and the
    commissioner's spend ``costs [R, M]`` (both base-year pounds, optimism bias applied)."""
    D = vm.discount
    saves = gains @ D  # [R, holders]
    pv_cost = costs @ D
    public = [i for i, h in enumerate(vm.holders) if h in vm.public]
    public_saves = saves[:, public].sum(axis=1)
    net = D * (gains[:, public, :].sum(axis=1) - costs)  # [R, M] discounted public net flow
    cum = np.cumsum(net, axis=1)
    out = {
        "net_public_value": public_saves - pv_cost,
        "value_benefits": saves.sum(axis=1),
        "value_public_benefits": public_saves,
        "value_costs": pv_cost,
        "payback_months": payback(cum),
    }
    for i, h in enumerate(vm.holders):
        out[f"value_saves[{h}]"] = saves[:, i]
        if h in vm.public:
            out[f"net_public_value[{h}]"] = saves[:, i] - (pv_cost if h == vm.commissioner else 0.0)
    return out


def payback(cum: np.ndarray) -> np.ndarray:
    """Months until the cumulative discounted net value turns non-negative for good: m + 1 for the first
    month m from which it stays at or above zero to the end of the appraisal (NaN if it ends below zero)."""
    below = cum < -1e-9
    M = cum.shape[1]
    last = np.where(below.any(axis=1), M - 1 - np.argmax(below[:, ::-1], axis=1), -1)
    out = (last + 2).astype(float)
    out[last == M - 1] = np.nan
    return out
