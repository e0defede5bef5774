"""The outcome pathway compiled to numpy: state indices and per segment × service level transition matrices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..scenario.schema import DROPPED_STATE, Scenario

FULL, MINIMAL = 0, 1  # service level codes used throughout the engine


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
    )


def step(pw: Pathway, seg: np.ndarray, state: np.ndarray, level: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One month's transition for a batch of clients: the column where ``u`` falls in the cumulative row."""
    S = pw.n_states
    row = (seg.astype(np.intp) * 2 + level) * S + state
    new = np.zeros(len(u), dtype=np.int8 if S < 127 else np.int16)
    for j in range(S - 1):  # one gather per column beats a [n, S] gather: S is small, n is large
        new += pw.cum_t[j][row] <= u
    return new.astype(state.dtype)
