"""The outcome pathway compiled to numpy: state indices, per segment × service level transition matrices,
and a lookup table that turns a client's random bits into its next state with one gather."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..scenario.schema import DROPPED_STATE, Scenario

FULL, MINIMAL = 0, 1  # service level codes used throughout the engine
AMBIGUOUS = 255  # lookup-table entry: a cumulative boundary falls inside this bucket; compare exactly
MAX_TABLE_BYTES = 4 << 20


@dataclass(frozen=True)
class Pathway:
    """States (the scenario's, then ``dropped_provider_failure``) and matrices ``P[segment, level, from, to]``."""

    states: tuple[str, ...]
    segments: tuple[str, ...]
    initial: int
    absorbing: np.ndarray  # bool [S]
    service: np.ndarray  # bool [S]: provider delivers service (and pays for it) in this state
    exit_state: int  # -1 when there is no forced exit
    max_months: int | None
    exit_applies: np.ndarray  # bool [S]: a move into this state after max_months becomes a forced exit
    P: np.ndarray  # float64 [G, 2, S, S]
    cum: np.ndarray  # float64 [G, 2, S, S], cumulative rows with the last column forced to 1
    cum_t: np.ndarray  # float64 [S, G*2*S]: cum with rows flattened and transposed, for `step`
    table: np.ndarray | None = None  # uint8 [G*2*S << bits]: next state by (row, top `bits` bits of u), see `step_bits`
    bits: int = 0

    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def dropped(self) -> int:
        return self.states.index(DROPPED_STATE)

    def index(self, state: str) -> int:
        return self.states.index(state)


def compile_pathway(sc: Scenario) -> Pathway:
    states = tuple(sc.all_states)
    idx = {s: i for i, s in enumerate(states)}
    S, G = len(states), len(sc.segments)
    absorbing = np.zeros(S, dtype=bool)
    for s in sc.pathway.absorbing:
        absorbing[idx[s]] = True
    absorbing[idx[DROPPED_STATE]] = True
    if sc.pathway.service_states is None:
        service = ~absorbing
    else:
        service = np.zeros(S, dtype=bool)
        for s in sc.pathway.service_states:
            service[idx[s]] = True
    P = np.zeros((G, 2, S, S))
    for g, seg in enumerate(sc.segments):
        rows = sc.pathway.transitions[seg]
        for level, table in ((FULL, rows.full), (MINIMAL, rows.minimal)):
            for s in range(S):
                if absorbing[s]:
                    P[g, level, s, s] = 1.0
            for frm, row in table.items():
                P[g, level, idx[frm], :] = 0.0
                for to, p in row.items():
                    P[g, level, idx[frm], idx[to]] = p
    cum = np.cumsum(P, axis=-1)
    # guard against rounding (rows may sum to 1 within 1e-9): from each row's last positive column on,
    # the cumulative value is exactly 1, so a uniform in [0, 1) never lands in an impossible state
    last = S - 1 - np.argmax(P[..., ::-1] > 0, axis=-1)
    cum[np.arange(S)[None, None, None, :] >= last[..., None]] = 1.0
    exit_state = idx[sc.pathway.exit_state] if sc.pathway.exit_state else -1
    if sc.pathway.exit_applies_to is None:
        exit_applies = ~absorbing
    else:
        exit_applies = np.zeros(S, dtype=bool)
        exit_applies[[idx[s] for s in sc.pathway.exit_applies_to]] = True
    return Pathway(
        states=states,
        segments=tuple(sc.segments),
        initial=idx[sc.pathway.initial_state],
        absorbing=absorbing,
        service=service,
        exit_state=exit_state,
        max_months=sc.pathway.max_months_on_programme,
        exit_applies=exit_applies,
        P=P,
        cum=cum,
        cum_t=np.ascontiguousarray(cum.reshape(-1, S).T),
        **_lookup_table(cum),
    )


def _lookup_table(cum: np.ndarray) -> dict:
    """For each row (segment, level, from-state) and each bucket [j, j+1) / 2**bits of u, the next state
    when no cumulative boundary lies strictly inside the bucket (then every u in it gives the same state:
    the number of boundaries <= u), else AMBIGUOUS. About (S - 1) / 2**bits of draws need an exact compare."""
    S = cum.shape[-1]
    rows = cum.reshape(-1, S)[:, : S - 1]  # the last column is 1 and never <= u
    if S >= AMBIGUOUS:
        return {"table": None, "bits": 0}
    bits = 12
    while bits > 6 and len(rows) << bits > MAX_TABLE_BYTES:
        bits -= 1
    K = 1 << bits
    lo = np.arange(K) / K  # bucket starts, exact in binary
    hi = np.arange(1, K + 1) / K
    table = np.empty((len(rows), K), dtype=np.uint8)
    for r, c in enumerate(rows):
        state = np.searchsorted(c, lo, side="right")  # boundaries <= the bucket start
        inside = np.searchsorted(c, hi, side="left") > state  # a boundary strictly inside (start, end)
        table[r] = np.where(inside, AMBIGUOUS, state)
    return {"table": table.reshape(-1), "bits": bits}


def row_index(pw: Pathway, seg, level, state):
    """Row of ``P`` (flattened to [G*2*S, S]) for clients of ``seg`` at service ``level`` in ``state``."""
    return (np.asarray(seg, dtype=np.intp) * 2 + level) * pw.n_states + state


def step_bits(pw: Pathway, row: np.ndarray, z: np.ndarray) -> np.ndarray:
    """One month's transition from mixed random bits ``z`` (uint64; u = top 53 bits / 2**53) for clients on
    rows ``row``: one table gather, and an exact comparison for the few draws in an ambiguous bucket. The
    result is exactly ``step``'s: the number of cumulative entries <= u."""
    if pw.table is None:
        u = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return _count_below(pw, row, u)
    bucket = (z >> np.uint64(64 - pw.bits)).astype(np.intp)
    new = pw.table[(row.astype(np.intp) << pw.bits) | bucket]
    amb = np.flatnonzero(new == AMBIGUOUS)
    if len(amb):
        u = (z[amb] >> np.uint64(11)).astype(np.float64) * 2.0**-53
        new[amb] = _count_below(pw, row[amb], u)
    return new


def _count_below(pw: Pathway, row: np.ndarray, u: np.ndarray) -> np.ndarray:
    new = np.zeros(len(u), dtype=np.uint8 if pw.n_states < AMBIGUOUS else np.int16)
    for j in range(pw.n_states - 1):
        new += pw.cum_t[j][row] <= u
    return new


def step(pw: Pathway, seg: np.ndarray, state: np.ndarray, level: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One month's transition for a batch of clients: the column where ``u`` falls in the cumulative row."""
    S = pw.n_states
    row = (seg.astype(np.intp) * 2 + level) * S + state
    new = np.zeros(len(u), dtype=np.int8 if S < 127 else np.int16)
    for j in range(S - 1):  # one gather per column beats a [n, S] gather: S is small, n is large
        new += pw.cum_t[j][row] <= u
    return new.astype(state.dtype)
