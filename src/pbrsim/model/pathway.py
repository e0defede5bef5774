"""The outcome pathway compiled to numpy: state indices, per segment × service level transition matrices,
and a lookup table that turns a client's random bits into its next state with one gather."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..scenario.schema import DROPPED_STATE, Scenario, forward_states

FULL, MINIMAL = 0, 1  # service level codes used throughout the engine
AMBIGUOUS = 255  # lookup-table entry: a cumulative boundary falls inside this bucket; compare exactly
MAX_TABLE_BYTES = 4 << 20


@dataclass(frozen=True)
class Pathway:
    """States (the scenario's, then ``dropped_provider_failure``) and matrices ``P[segment, level, from, to]``.

    With latent classes (``K`` > 1 classes in some segment), the rows a client moves on are those of its
    (segment, class): ``PK[segment * K + class]``; ``cum``, ``cum_t`` and ``table`` are built from ``PK``.
    Without them K = 1 and ``PK`` is ``P``."""

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
    table: np.ndarray | None = None  # uint8 [G*K*2*S << bits]: next state by (row, top `bits` bits of u), see `step_bits`
    bits: int = 0
    K: int = 1  # latent classes per segment (the most of any segment; 1 = none)
    PK: np.ndarray | None = None  # float64 [G*K, 2, S, S]: the rows of each (segment, class); P when K = 1
    class_share: np.ndarray | None = None  # float64 [G, K]: share of each class in its segment (0 for padding)
    class_progress: np.ndarray | None = None  # float64 [G, K]: multiplier on forward moves
    class_observed: np.ndarray | None = None  # bool [G]: the provider knows its clients' classes
    class_names: tuple[tuple[str, ...], ...] = ()

    def class_matrices(self, g: int) -> list[tuple[float, np.ndarray]]:
        """(share, P[2, S, S]) of each class of segment ``g`` with a positive share."""
        PK = self.P if self.PK is None else self.PK
        return [(float(self.class_share[g, k]), PK[g * self.K + k]) for k in range(self.K) if self.class_share[g, k] > 0]

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
    K, PK, share, progress, observed, names = _latent_classes(sc, P, states, absorbing)
    cum = np.cumsum(PK, axis=-1)
    # guard against rounding (rows may sum to 1 within 1e-9): from each row's last positive column on,
    # the cumulative value is exactly 1, so a uniform in [0, 1) never lands in an impossible state
    last = S - 1 - np.argmax(PK[..., ::-1] > 0, axis=-1)
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
        K=K, PK=PK, class_share=share, class_progress=progress, class_observed=observed, class_names=names,
    )


def _latent_classes(sc: Scenario, P: np.ndarray, states: tuple[str, ...], absorbing: np.ndarray):
    """Each (segment, class)'s matrices: forward moves times the class's progress, staying put takes the rest."""
    segs = list(sc.segments.values())
    G, S = P.shape[0], P.shape[-1]
    K = max([len(s.latent_classes.classes) for s in segs if s.latent_classes is not None] + [1])
    share = np.zeros((G, K))
    progress = np.ones((G, K))
    observed = np.array([s.latent_classes is None or s.latent_classes.observed for s in segs], dtype=bool)
    names = tuple(tuple(c.name for c in s.latent_classes.classes) if s.latent_classes is not None else () for s in segs)
    if K == 1:
        share[:, 0] = 1.0
        return 1, P, share, progress, observed, names
    idx = {s: i for i, s in enumerate(states)}
    fwd = {s: np.array([t in f for t in states]) for s, f in forward_states(sc).items()}
    PK = np.repeat(P, K, axis=0)  # [G*K, 2, S, S]; padding classes (share 0) keep the segment's rows
    for g, seg in enumerate(segs):
        if seg.latent_classes is None:
            share[g, 0] = 1.0
            continue
        for k, c in enumerate(seg.latent_classes.classes):
            share[g, k] = c.share
            progress[g, k] = c.progress
            if c.progress == 1.0:
                continue
            for level in (FULL, MINIMAL):
                for name, s in idx.items():
                    if absorbing[s] or name not in fwd:
                        continue
                    row = P[g, level, s]
                    mask = fwd[name].copy()  # (the engine's own dropped state is never progress)
                    mask[s] = False
                    stay, ahead = row[s], row[mask].sum()
                    if stay <= 0.0 or ahead <= 0.0:
                        continue  # nothing to speed up or slow down: the row is the segment's
                    new = row.copy()
                    new[mask] *= c.progress
                    new[s] = max(0.0, stay - (c.progress - 1.0) * ahead)
                    PK[g * K + k, level, s] = new / new.sum()
    return K, PK, share, progress, observed, names


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
