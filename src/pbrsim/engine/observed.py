"""Observed outcome rates: what clients could achieve (the transition rates under full service) times the
service the provider's behaviour actually gives them.

The calibration targets of the scenario library are rates *observed* in real programmes, where providers
parked some clients. ``reach_rates`` gives a segment's chance of first entering some states within n
monthly transitions of referral when every month each client in a service state gets full service with the
chance the provider's policy gives it, and minimal service otherwise; averaged over the segment's expected
referrals by month, its latent classes (by share) and the organisations it is allocated to.

A policy qualifies when that chance depends only on the client itself (its segment, class, state, referral
month and the month): ``holistic`` and ``needs_first`` (1 in a service state), ``return_maximising`` (1 when
the net value of full service is >= 0, else 0) and ``graded`` with a ``temperature`` (exp(net value /
temperature) below 0). ``graded`` with a ``protected_share`` and ``cash_stressed`` depend on the rest of the
caseload or on cash and are refused, as is a capacity (rates here never run out of places). Months after the
contract end count at full service, as with the holistic rates (the net value of a month with nothing
left to earn is 0, so every policy serves).
"""

from __future__ import annotations

import numpy as np

from ..model.money import to_pence
from ..model.pathway import FULL, MINIMAL
from .behaviour import TIE_TOLERANCE, serve_chance
from .client_value import cached_value_tables
from .referrals import expected_counts

PER_CLIENT_POLICIES = ("holistic", "needs_first", "return_maximising", "graded")


def unsupported(model) -> list[str]:
    """Why observed rates cannot be computed for ``model`` (empty when they can)."""
    out = []
    for o in model.organisations:
        p = o.policy
        if p.name not in PER_CLIENT_POLICIES:
            out.append(f"organisation {o.name!r}: policy {p.name!r} depends on cash, not on the client alone")
        elif p.name == "graded" and p.protected_share is not None:
            out.append(f"organisation {o.name!r}: a graded policy with protected_share depends on the whole caseload; "
                       "give it a temperature instead")
    return out


def _chances(model, org, g: int, k: int, ref: np.ndarray, n: int) -> np.ndarray:
    """[n, R, S]: chance of full service at each transition 1..n (month ref + age - 1) for clients of segment
    ``g``, class ``k``, referred in months ``ref``, in each state."""
    pw = model.pathway
    S = pw.n_states
    service = pw.service & ~pw.absorbing
    name = org.policy.name
    if name in ("holistic", "needs_first"):
        return np.broadcast_to(service.astype(float), (n, len(ref), S))
    tables = cached_value_tables(model, org, org.policy.monthly_discount_rate)
    T, M = model.months, pw.max_months
    age = np.arange(1, n + 1)[:, None]
    t = ref[None, :] + age - 1  # [n, R]
    left = T - t
    if M is None:
        months, last = left, np.zeros_like(t)
    else:
        prog = M - (t - ref[None, :])
        last = (prog <= left).astype(np.int64)
        months = np.minimum(prog, left)
    months = np.clip(months, 0, tables.n_max)
    net = tables.gain[last[..., None], g * pw.K + k, np.arange(S)[None, None, :], months[..., None]]  # [n, R, S] pence
    if name == "return_maximising":
        q = (net >= -TIE_TOLERANCE).astype(float)
    else:
        q = serve_chance(net, float(to_pence(org.policy.temperature)))
    return q * service


def reach_rates(model, g: int, mask: np.ndarray, n: int) -> float:
    """P(first entry into ``mask`` within ``n`` transitions of referral) for segment ``g``'s expected referrals,
    with each month's service drawn from the provider's policy (module docstring)."""
    why = unsupported(model)
    if why:
        raise ValueError("; ".join(why))
    pw = model.pathway
    S = pw.n_states
    counts = expected_counts(model.scenario)[:, g]
    ref = np.flatnonzero(counts > 0)
    if not len(ref):
        return float("nan")
    weight = counts[ref] / counts[ref].sum()
    if mask[pw.initial]:
        return 1.0
    active = ~pw.absorbing
    exit_cols = pw.exit_applies if pw.max_months is not None else None
    total = 0.0
    for o, org in enumerate(model.organisations):
        share_o = model.allocation.shares[g, o]
        if share_o <= 0:
            continue
        for k in range(pw.K):
            share_k = pw.class_share[g, k]
            if share_k <= 0:
                continue
            P = (pw.P if pw.PK is None else pw.PK)[g * pw.K + k]
            full, minimal = P[FULL], P[MINIMAL]
            x = np.zeros((len(ref), S))
            x[:, pw.initial] = 1.0
            reached = np.zeros(len(ref))
            chances = _chances(model, org, g, k, ref, n)
            for age in range(1, n + 1):
                q = chances[age - 1]
                xa = np.where(active, x, 0.0)
                y = xa @ minimal + (xa * q) @ (full - minimal) + np.where(active, 0.0, x)
                if exit_cols is not None and age >= pw.max_months:
                    # forced exit: this transition's moves of active clients into states it applies to go to the exit state
                    moved = xa @ minimal + (xa * q) @ (full - minimal)
                    diverted = moved[:, exit_cols].sum(axis=1)
                    y[:, exit_cols] -= moved[:, exit_cols]
                    y[:, pw.exit_state] += diverted
                reached += y[:, mask].sum(axis=1)
                y[:, mask] = 0.0
                x = y
            total += share_o * share_k * float(weight @ reached)
    return total
