"""The investor's view of a run: each tranche's monthly cash flows from the ledger, and per-replication figures.

Flows are from the investors' side: money they put in (drawdowns, management fees) and money they receive
(repayments, coupons, guarantee payments), by replication and month; the net flow of a month is received
less put in. Every figure of a
batch of replications is computed at once from ``[n, tranches, months]`` arrays (``returns`` solves the IRRs).
One definition per figure (docs/social-investment.md):

- ``drawn``: money put in; ``repaid``: money received back from every source;
- ``multiple``: repaid / drawn; ``loss``: capital not received back (drawn - repaid, at least 0);
- ``lost``: 1 if the investors received less than they put in (by more than half a penny);
- ``irr``: annualised IRR (``returns.irr``; NaN where it has no value) with ``irr_status``;
- ``below_hurdle``: 1 if the IRR has a value below the finance's ``hurdle_rate``;
- ``payback_month``: month from which the investors are never again out of pocket (NaN if never).
"""

from __future__ import annotations

import numpy as np

from . import returns


def flows(fin, parties: tuple[str, ...], payer: np.ndarray, payee: np.ndarray, month: np.ndarray, amount: np.ndarray,
          pos: np.ndarray, n: int, horizon: int) -> np.ndarray:
    """Money into and out of each tranche's investors, ``[2, n, K, horizon]`` (pence: received, put in) from ledger
    rows given as codes into ``parties``, with ``pos`` each row's replication position (rows outside the batch
    already dropped)."""
    K = len(fin.investors)
    code = np.full(len(parties), -1, dtype=np.int64)
    for k, name in enumerate(fin.investors):
        code[parties.index(name)] = k
    out = np.zeros((2, n * K * horizon), dtype=np.float64)
    for i, party in enumerate((payee, payer)):
        k = code[party]
        sel = k >= 0
        cell = (pos[sel] * K + k[sel]) * horizon + month[sel]
        out[i] = np.bincount(cell, weights=amount[sel].astype(np.float64), minlength=n * K * horizon)
    return np.rint(out).reshape(2, n, K, horizon)


def paid_by(parties: tuple[str, ...], party: str | None, payer: np.ndarray, amount: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
    """Pence ``party`` paid (to anyone) per replication (zeros without such a party)."""
    if party is None:
        return np.zeros(n)
    sel = payer == parties.index(party)
    return np.bincount(pos[sel], weights=amount[sel].astype(np.float64), minlength=n)


def paid_to(parties: tuple[str, ...], party: str, payee: np.ndarray, amount: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
    """Pence ``party`` received per replication."""
    sel = payee == parties.index(party)
    return np.bincount(pos[sel], weights=amount[sel].astype(np.float64), minlength=n)


def figures(fin, F: np.ndarray) -> dict[str, np.ndarray]:
    """Per-replication investor figures (pounds) from the tranches' money received and put in, ``F [2, n, K, H]``
    in pence (``flows``): the investors together as ``investor_*``, and each tranche as ``investor_*[NAME]``
    when there are several. The IRR and payback month use each month's net flow."""
    out: dict[str, np.ndarray] = {}
    groups = [("", F.sum(axis=2))]
    if F.shape[2] > 1:
        groups += [(f"[{name}]", F[:, :, k]) for k, name in enumerate(fin.investors)]
    for key, (got, put) in groups:
        f = got - put
        drawn = put.sum(axis=1) / 100
        repaid = got.sum(axis=1) / 100
        out[f"investor_drawn{key}"] = drawn
        out[f"investor_repaid{key}"] = repaid
        out[f"investor_multiple{key}"] = repaid / np.where(drawn > 0, drawn, np.nan)
        loss = drawn - repaid
        out[f"investor_loss{key}"] = np.where(loss > 0, loss, 0.0)
        out[f"investor_lost{key}"] = (loss > 0.005).astype(np.int64)
        rate, status = returns.irr(f)
        out[f"investor_irr{key}"] = rate
        out[f"investor_irr_status{key}"] = status
        out[f"investor_below_hurdle{key}"] = (~np.isnan(rate) & (rate < fin.hurdle)).astype(np.int64)
        out[f"investor_payback_month{key}"] = returns.payback_month(f)
    return out
