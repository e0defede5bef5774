"""The caseload of a batch of replications: every client's record, and the working arrays of active clients.

Clients of all the batch's replications live in one set of arrays. The *record* arrays hold one entry
per client referred (replication by replication, each in client-index order): segment, referral month,
organisation, state, first month in each state, months by service level, end month, sustainment counts.
The *working* arrays hold only the active clients (not absorbed), with what a month's transition needs:
the client's record index, its replication's position in the batch, its random-number counter, state,
transition row and count cell. A client joins them the month it is referred and leaves them the month
it is absorbed (its place taken by the last client), so a month costs work in proportion to the clients
still active. Their order carries no meaning: a review sorts its candidates first come, first served,
and everything else a month does is a sum or a per-client update.

Bookkeeping is done for clients who move: first-entry months, end months and the running counts of
clients by (replication, organisation, segment, state) change only for them. Months in a service state
are accrued when a client leaves the state (``since``: the first month not yet counted); months at
minimal service (parked by a policy) and months without service (after a transfer) are counted as they
happen, and ``months_full`` is the service months less those.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import rng
from .behaviour import BatchReview, Review
from .referrals import draw_counts, expected_counts
from ..model.pathway import AMBIGUOUS, FULL, MINIMAL, step_bits


class PolicyError(RuntimeError):
    """A policy gave more full-service places than its capacity (a fault in the policy)."""


@dataclass
class Moves:
    """What this month's transitions did, for the claims that follow (record indices and batch positions)."""

    first_entries: list[tuple[int, np.ndarray, np.ndarray]]  # (state, clients, batch positions) first entering it
    in_states: np.ndarray  # clients whose new state is in some sustainment line's states
    in_states_rb: np.ndarray
    in_states_state: np.ndarray  # and that state


class Caseload:
    """Record and working arrays of the clients of replications ``reps`` (batch positions 0..R-1)."""

    def __init__(self, model, seed: int, reps: list[int], n_sust: int):
        sc, pw = model.scenario, model.pathway
        self.pw = pw
        self.R, self.O, self.G, self.S, self.T = len(reps), len(model.organisations), len(pw.segments), pw.n_states, model.months
        R, O, G, S, T = self.R, self.O, self.G, self.S, self.T
        self.reps = np.asarray(reps, dtype=np.int64)
        self.seed = seed
        self._service_keys = None  # keys of the SERVICE stream [R, T], derived on first use
        mean = expected_counts(sc)
        counts = np.stack([draw_counts(sc, seed, r, mean) for r in reps]) if R else np.zeros((0, T, G), dtype=np.int64)  # [R, T, G]
        per_month = counts.sum(axis=2)
        self.month_start = np.zeros((R, T + 1), dtype=np.int64)
        np.cumsum(per_month, axis=1, out=self.month_start[:, 1:])
        n_rep = self.month_start[:, -1]
        self.offset = np.zeros(R + 1, dtype=np.int64)
        np.cumsum(n_rep, out=self.offset[1:])
        N = int(self.offset[-1])
        self.N = N
        # the within-month order of segments: one permutation per month with referrals, months in order
        seg = np.repeat(np.tile(np.arange(G, dtype=np.int16), R * T), counts.reshape(-1))  # in segment order each month
        for b, r in enumerate(reps if G > 1 else ()):  # (one segment: every order is the same)
            order_rng = rng.stream(seed, r, rng.TIE_BREAKS)
            base = self.offset[b]
            for t in np.flatnonzero(per_month[b]):
                lo, hi = base + self.month_start[b, t], base + self.month_start[b, t + 1]
                order_rng.shuffle(seg[lo:hi])  # what ``permutation`` does to a copy
        self.seg = seg
        # latent classes: each client's class from its own stream, so every other draw is unchanged
        self.K = pw.K
        self.cls = _draw_classes(pw, seed, self.reps, seg, self.offset) if pw.K > 1 else None
        self.ref_month = np.repeat(np.tile(np.arange(T, dtype=np.int16), R), per_month.reshape(-1))
        self.org = np.zeros(N, dtype=np.int16)
        self.first_org = np.zeros(N, dtype=np.int16)
        self.state = np.full(N, -1, dtype=np.int16)
        self.first_month = np.full((N, S), -1, dtype=np.int16)
        self.months_full = np.zeros(N, dtype=np.int16)
        self.months_minimal = np.zeros(N, dtype=np.int16)
        self.months_no_service = np.zeros(N, dtype=np.int16)
        self.end_month = np.full(N, -1, dtype=np.int16)
        self.since = np.zeros(N, dtype=np.int16)  # first month in the current state not yet accrued
        self.sust_count = np.zeros((N, n_sust), dtype=np.int16)
        self.admitted = np.zeros(R, dtype=np.int64)  # clients admitted so far, per replication
        # keys for every month's transitions (and allocations), derived once
        months = np.arange(T)
        spawn = lambda purpose: np.stack([np.repeat(self.reps, T), np.full(R * T, purpose), np.tile(months, R)], axis=1)  # noqa: E731
        self.trans_keys = rng.keys(seed, spawn(rng.TRANSITIONS)).reshape(R, T) if R * T else np.zeros((R, T), np.uint64)
        self.alloc_keys = rng.keys(seed, spawn(rng.ALLOCATION)).reshape(R, T) if O > 1 and R * T else None
        # state tables
        self.absorbing = pw.absorbing
        self.service = pw.service & ~pw.absorbing
        self.svc16 = self.service.astype(np.int16)
        level = np.where(self.service, FULL, MINIMAL)
        # transition row of a client at its usual level (full in a service state), less its segment's base
        self.row_of_state = (level * S + np.arange(S)).astype(np.int64)
        self.state_dtype = np.uint8 if S < AMBIGUOUS else np.int16
        # running counts of clients by (replication, organisation, segment, state), absorbed ones included
        self.counts = np.zeros(R * O * G * S, dtype=np.int64)
        self.n_active = np.zeros(R, dtype=np.int64)
        self.client_months = np.zeros(R, dtype=np.int64)
        # working arrays (active clients): buffers with spare room, the first ``n`` entries in use
        self.n = 0
        self.any_paused = False  # some client has been transferred with a gap (the working column "pause")
        self._w = {
            "g": np.zeros(0, dtype=np.int64),  # record index
            "rb": np.zeros(0, dtype=np.int64),  # batch position
            "ctr": np.zeros(0, dtype=np.uint64),  # counter half of the client's random draws
            "state": np.zeros(0, dtype=self.state_dtype),
            "row": np.zeros(0, dtype=np.int64),  # the client's row of the lookup table at its usual level, << bits
            "ref": np.zeros(0, dtype=np.int16),
            "cell": np.zeros(0, dtype=np.int64),  # (batch position * O + organisation) * G + segment
        }
        bits = pw.bits if pw.table is not None else 0
        self.bits = bits
        self.row_of_state_k = self.row_of_state << bits
        self.minimal_shift = (MINIMAL - FULL) * S << bits  # a service state's minimal row, relative to its full row

    # -- helpers ------------------------------------------------------------------------------------
    def __getattr__(self, name: str):
        """``w_<column>``: the working column in use (a view)."""
        if name.startswith("w_"):
            w = self.__dict__["_w"]
            if name[2:] in w:
                return w[name[2:]][: self.__dict__["n"]]
        raise AttributeError(name)

    def local(self, g: np.ndarray, rb: np.ndarray) -> np.ndarray:
        """Client index within its replication."""
        return g - self.offset[rb]

    def _append(self, columns: dict[str, np.ndarray]):
        k = len(columns["g"])
        n = self.n
        cap = len(self._w["g"])
        if n + k > cap:
            cap = max(n + k, 2 * cap, 1024)
            for name, buf in self._w.items():
                grown = np.zeros(cap, dtype=buf.dtype) if name != "pause" else np.full(cap, -1, dtype=buf.dtype)
                grown[:n] = buf[:n]
                self._w[name] = grown
        for name, buf in self._w.items():
            buf[n:n + k] = columns[name] if name in columns else -1
        self.n = n + k

    def _remove(self, pos: np.ndarray):
        """Take working positions ``pos`` (distinct) out: the last clients in use fill their places."""
        a = len(pos)
        if not a:
            return
        m = self.n - a
        holes = pos[pos < m]
        stay = np.ones(a, dtype=bool)
        stay[pos[pos >= m] - m] = False
        fillers = m + np.flatnonzero(stay)
        for buf in self._w.values():
            buf[holes] = buf[fillers]
        self.n = m

    def _count(self, cell: np.ndarray, state: np.ndarray, sign: int):
        idx = cell * self.S + state.astype(np.int64)
        if len(idx) * 8 < len(self.counts):
            np.add.at(self.counts, idx, sign)
        else:
            self.counts += sign * np.bincount(idx, minlength=len(self.counts))

    def counts_rogs(self) -> np.ndarray:
        """Running counts as [R, O, G, S] (a view)."""
        return self.counts.reshape(self.R, self.O, self.G, self.S)

    # -- referrals --------------------------------------------------------------------------------
    def new_clients(self, t: int, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Record indices and batch positions of month ``t``'s referrals in the ``live`` replications, in
        batch order and client-index order within each; they count as admitted from now on."""
        reps = np.flatnonzero(live)
        lo = self.month_start[reps, t]
        hi = self.month_start[reps, t + 1]
        self.admitted[reps] = hi
        n = hi - lo
        total = int(n.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        rb = np.repeat(reps, n)
        start = np.repeat(self.offset[reps] + lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
        return start + np.arange(total), rb

    def admit(self, t: int, g: np.ndarray, rb: np.ndarray, org: np.ndarray | None):
        """Put new clients on the caseload in the initial state (allocated to ``org``, or the prime)."""
        if not len(g):
            return
        init = self.pw.initial
        if org is not None:
            self.org[g] = org
            self.first_org[g] = org
            org64 = org.astype(np.int64)
        else:
            org64 = 0
        self.state[g] = init
        self.first_month[g, init] = t
        self.since[g] = t
        seg = self.seg[g].astype(np.int64)
        cell = (rb * self.O + org64) * self.G + seg
        self._count(cell, np.full(len(g), init), +1)
        self.n_active += np.bincount(rb, minlength=self.R)
        rows = seg if self.cls is None else seg * self.K + self.cls[g]  # the (segment, class) whose rows the client moves on
        self._append({"g": g, "rb": rb, "ctr": rng.counters(self.local(g, rb)), "state": np.full(len(g), init, dtype=self.state_dtype),
                      "row": ((rows * (2 * self.S)) << self.bits) + self.row_of_state_k[init], "ref": self.ref_month[g], "cell": cell})

    # -- review -----------------------------------------------------------------------------------
    def review(self, t: int, orgs, policies, cash: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Service levels this month. Returns the working positions of clients transitioning at minimal
        service although in a service state (parked, or paused after a transfer) and the month's
        client-months by level ``[R, O, G, 2]``; records months at each level."""
        R, O, G, S = self.R, self.O, self.G, self.S
        self.client_months += self.n_active
        in_service = self.counts_rogs()[..., self.service].sum(axis=-1)  # [R, O, G]
        slow = []
        paused_in_service = np.zeros((R, O, G), dtype=np.int64)
        if self.any_paused:
            pos = np.flatnonzero((self.w_pause >= t) & self.service[self.w_state])
            if len(pos):
                self.months_no_service[self.w_g[pos]] += 1
                paused_in_service = np.bincount(self.w_cell[pos], minlength=R * O * G).reshape(R, O, G)
                slow.append(pos)
        eligible = in_service - paused_in_service
        minimal = np.zeros((R, O, G), dtype=np.int64)
        # which (replication, organisation) groups need their policy this month
        need = np.zeros((R, O), dtype=bool)
        for o, org in enumerate(orgs):
            pol = policies[o]
            if getattr(pol, "serves_all_within_capacity", False):
                if org.capacity is not None:
                    need[:, o] = eligible[:, o].sum(axis=1) > org.capacity
            else:
                need[:, o] = eligible[:, o].sum(axis=1) > 0
        need &= live[:, None]
        if need.any():
            cand = np.flatnonzero(need.reshape(-1)[self.w_cell // G] & self.service[self.w_state])
            if self.any_paused:
                cand = cand[self.w_pause[cand] < t]
            grp = self.w_cell[cand] // G  # rb * O + o
            # first come first served within each group, where the decision can depend on order
            ordered = any(need[:, o].any() and (org.capacity is not None or not hasattr(policies[o], "batch")
                                                or getattr(policies[o], "needs_order", False))
                          for o, org in enumerate(orgs))
            if ordered:
                order = np.lexsort((self.w_g[cand], grp))
                cand, grp = cand[order], grp[order]
            for o, org in enumerate(orgs):
                rows = np.flatnonzero(need[:, o])
                if not len(rows):
                    continue
                c, rb = (cand, grp) if O == 1 else (cand[grp % O == o], grp[grp % O == o] // O)
                position = np.full(R, -1)
                position[rows] = np.arange(len(rows))
                full = self._decide(t, org, policies[o], c, position[rb], cash[rows, o], rows, ordered)
                parked = c[~full]
                if len(parked):
                    g = self.w_g[parked]
                    self.months_minimal[g] += 1
                    self.months_full[g] -= 1
                    minimal += np.bincount(self.w_cell[parked], minlength=R * O * G).reshape(R, O, G)
                    slow.append(parked)
        levels = np.stack([eligible - minimal, minimal], axis=-1)
        levels[~live] = 0
        slow_pos = np.concatenate(slow) if slow else np.zeros(0, dtype=np.int64)
        return slow_pos, levels

    def _decide(self, t: int, org, policy, c: np.ndarray, group: np.ndarray, cash: np.ndarray, rows: np.ndarray,
                ordered: bool) -> np.ndarray:
        """Full service (True) or minimal for candidates ``c`` (working positions) of groups (replications
        ``rows``); ``ordered``: sorted by group, first come first served within each."""
        g = self.w_g[c]
        seg, state, ref = self.seg[g], self.w_state[c].astype(np.int16), self.w_ref[c]
        starts = np.searchsorted(group, np.arange(len(rows) + 1)) if ordered else None
        uniforms = (lambda: self._service_uniforms(t, c)) if getattr(policy, "draws", False) else None
        batch = getattr(policy, "batch", None)
        if batch is not None:
            full = np.asarray(batch(BatchReview(month=t, segment=seg, state=state, ref_month=ref, group=group, starts=starts,
                                                capacity=org.capacity, cash=cash,
                                                latent_class=None if self.cls is None else self.cls[g], uniforms=uniforms)), dtype=bool)
            if org.capacity is not None and len(full):
                over = np.bincount(group[full], minlength=len(rows)) > org.capacity
                if over.any():
                    n = int(np.bincount(group[full], minlength=len(rows))[over][0])
                    raise PolicyError(f"policy {org.policy.name!r} gave {n} full places, capacity {org.capacity}")
            return full
        full = np.empty(len(c), dtype=bool)
        for j in range(len(rows)):
            lo, hi = starts[j], starts[j + 1]
            review = Review(month=t, candidates=self.local(g[lo:hi], self.w_rb[c[lo:hi]]), segment=seg[lo:hi], state=state[lo:hi],
                            ref_month=ref[lo:hi], capacity=org.capacity, cash=int(cash[j]),
                            latent_class=None if self.cls is None else self.cls[g[lo:hi]],
                            uniforms=None if uniforms is None else (lambda lo=lo, hi=hi: self._service_uniforms(t, c[lo:hi])))
            f = np.asarray(policy(review), dtype=bool)
            if org.capacity is not None and f.sum() > org.capacity:
                raise PolicyError(f"policy {org.policy.name!r} gave {f.sum()} full places, capacity {org.capacity}")
            full[lo:hi] = f
        return full

    def _service_uniforms(self, t: int, pos: np.ndarray) -> np.ndarray:
        """A uniform per client at working positions ``pos`` for month ``t``'s service choice (stream SERVICE)."""
        if self._service_keys is None:
            R, T = self.R, self.T
            spawn = np.stack([np.repeat(self.reps, T), np.full(R * T, rng.SERVICE), np.tile(np.arange(T), R)], axis=1)
            self._service_keys = rng.keys(self.seed, spawn).reshape(R, T) if R * T else np.zeros((R, T), np.uint64)
        rb = self.w_rb[pos]
        return rng.uniforms_from_keys(self._service_keys[rb, t], rng.counters(self.local(self.w_g[pos], rb)))

    # -- transitions --------------------------------------------------------------------------------
    def transition(self, t: int, slow: np.ndarray, sust_any: np.ndarray | None, first_states: list[int],
                   target_state: int = -1, hits: np.ndarray | None = None) -> Moves:
        """Every active client draws its next state (``slow`` positions at their minimal row); forced exits;
        first-entry and end months; counts; absorbed clients leave the working arrays."""
        pw, S = self.pw, self.S
        n = self.n
        empty = np.zeros(0, dtype=np.int64)
        if n == 0:
            return Moves([(s, empty, empty) for s in first_states], empty, empty, empty)
        k = self.trans_keys[:, t]
        state = self.w_state
        z = self.w_ctr + (k[:1] if self.R == 1 else k[self.w_rb])  # arrays: uint64 wraps silently
        rng.mix_bits(z)
        if pw.table is None:
            row = self.w_row.copy()
            if len(slow):
                row[slow] += self.minimal_shift
            new = step_bits(pw, row, z)
        else:
            # one gather from the lookup table; exact comparisons only where a bucket is ambiguous
            idx = (z >> np.uint64(64 - pw.bits)).view(np.int64)
            idx += self.w_row
            if len(slow):
                idx[slow] += self.minimal_shift
            new = pw.table[idx]
        fix = _AmbiguousFix(pw, new, idx if pw.table is not None else None, z)
        if pw.max_months is not None:
            old_enough = np.flatnonzero(self.w_ref <= t + 1 - pw.max_months)
            if len(old_enough):
                fix(old_enough)
                forced = old_enough[pw.exit_applies[new[old_enough]]]
                new[forced] = pw.exit_state
        mv = np.flatnonzero(new != state)
        if len(mv) and fix.needed:
            fix(mv)
            mv = mv[new[mv] != state[mv]]
        sust_pos = _members(new, sust_any) if sust_any is not None else empty
        in_states, in_states_rb, in_states_state = self.w_g[sust_pos], self.w_rb[sust_pos], new[sust_pos]
        if not len(mv):
            return Moves([(s, empty, empty) for s in first_states], in_states, in_states_rb, in_states_state)
        g, rb, cell = self.w_g[mv], self.w_rb[mv], self.w_cell[mv]
        old, nw = state[mv].astype(np.int64), new[mv].astype(np.int64)
        # service months accrued in the state left
        since = self.since[g]
        if self.any_paused:  # paused clients accrue nothing until their pause ends
            self.months_full[g] += np.maximum(0, t - since + 1).astype(np.int16) * self.svc16[old]
            self.since[g] = np.maximum(since, t + 1)
        else:
            self.months_full[g] += (t + 1 - since) * self.svc16[old]
            self.since[g] = t + 1
        state[mv] = nw
        self.w_row[mv] += self.row_of_state_k[nw] - self.row_of_state_k[old]
        self._count(cell, old, -1)
        self._count(cell, nw, +1)
        flat = self.first_month.reshape(-1)
        pos = g * S + nw
        first = flat[pos] < 0
        flat[pos[first]] = t
        gf, rbf, nf = g[first], rb[first], nw[first]
        entries = []
        for s in first_states:
            hit = nf == s
            entries.append((s, gf[hit], rbf[hit]))
        if hits is not None and target_state >= 0:
            hit = nf == target_state
            np.add.at(hits, (rbf[hit], self.first_org[gf[hit]]), 1)
        absorbed = self.absorbing[nw]
        if absorbed.any():
            ga = g[absorbed]
            self.end_month[ga] = t
            self.state[ga] = nw[absorbed]
            self.n_active -= np.bincount(rb[absorbed], minlength=self.R)
            self._remove(mv[absorbed])
        return Moves(entries, in_states, in_states_rb, in_states_state)

    # -- failures -----------------------------------------------------------------------------------
    def active_of(self, b: int, o: int | None) -> np.ndarray:
        """Working positions of replication ``b``'s active clients (of organisation ``o``, or all), first come first served."""
        cells = self.w_cell // self.G
        lo, hi = b * self.O, (b + 1) * self.O
        pos = np.flatnonzero((cells == b * self.O + o) if o is not None else (cells >= lo) & (cells < hi))
        return pos[np.argsort(self.w_g[pos])]

    def _accrue(self, pos: np.ndarray, through: int):
        """Count service months up to and including month ``through`` for clients at working ``pos``."""
        g = self.w_g[pos]
        st = self.w_state[pos].astype(np.int64)
        self.months_full[g] += np.maximum(0, through - self.since[g] + 1).astype(np.int16) * self.svc16[st]
        self.since[g] = through + 1

    def drop(self, t: int, pos: np.ndarray):
        """Clients at working ``pos`` leave for the dropped state at month end ``t`` (their provider failed)."""
        if not len(pos):
            return
        self._accrue(pos, t)
        g, cell = self.w_g[pos], self.w_cell[pos]
        dropped = self.pw.dropped
        self._count(cell, self.w_state[pos], -1)
        self._count(cell, np.full(len(pos), dropped), +1)
        self.state[g] = dropped
        self.first_month[g, dropped] = t
        self.end_month[g] = t
        self.n_active -= np.bincount(self.w_rb[pos], minlength=self.R)
        self._remove(pos)

    def transfer(self, t: int, pos: np.ndarray, target: int, gap: int, restart: int | None):
        """Clients at working ``pos`` move to organisation ``target``, unserved for ``gap`` months, restarting
        in state ``restart`` if given (not an entry: nothing is paid)."""
        if not len(pos):
            return
        self._accrue(pos, t)
        g, cell = self.w_g[pos], self.w_cell[pos]
        self._count(cell, self.w_state[pos], -1)
        rb, seg = self.w_rb[pos], self.seg[g].astype(np.int64)
        new_cell = (rb * self.O + target) * self.G + seg
        self.org[g] = target
        self.since[g] = t + gap + 1
        if restart is not None:
            self.w_row[pos] += self.row_of_state_k[restart] - self.row_of_state_k[self.w_state[pos].astype(np.int64)]
            self.w_state[pos] = restart
        self._count(new_cell, self.w_state[pos], +1)
        self.w_cell[pos] = new_cell
        if gap > 0:
            if "pause" not in self._w:
                self._w["pause"] = np.full(len(self._w["g"]), -1, dtype=np.int16)
            self.w_pause[pos] = t + gap
            self.any_paused = True

    def finish(self):
        """Accrue the service months of clients still active at the end of the contract."""
        if self.n:
            self._accrue(np.arange(self.n), self.T - 1)
            self.state[self.w_g] = self.w_state


def _draw_classes(pw, seed: int, reps: np.ndarray, seg: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Latent class of every client of the batch (int64, record order): a uniform per client from the stream of
    (replication, LATENT_CLASS), against its segment's cumulative class shares."""
    keys = rng.keys(seed, np.stack([reps, np.full(len(reps), rng.LATENT_CLASS)], axis=1)) if len(reps) else np.zeros(0, np.uint64)
    n = np.diff(offset)
    local = np.arange(len(seg)) - np.repeat(offset[:-1], n)
    u = rng.uniforms_from_keys(np.repeat(keys, n), rng.counters(local))
    cum = np.cumsum(pw.class_share, axis=1)
    last = pw.K - 1 - np.argmax(pw.class_share[:, ::-1] > 0, axis=1)  # each segment's last class with a share
    cum[np.arange(pw.K)[None, :] >= last[:, None]] = 1.0  # rounding never puts a client in a padding class
    s = seg.astype(np.int64)
    cls = np.zeros(len(seg), dtype=np.int64)
    for k in range(pw.K - 1):
        cls += u >= cum[s, k]
    return cls


class _AmbiguousFix:
    """Exact next states, on demand, for the draws whose lookup-table bucket holds a cumulative boundary."""

    def __init__(self, pw, new: np.ndarray, idx: np.ndarray | None, z: np.ndarray):
        self.pw, self.new, self.idx, self.z = pw, new, idx, z
        self.needed = idx is not None

    def __call__(self, pos: np.ndarray):
        if not self.needed:
            return
        amb = pos[self.new[pos] == AMBIGUOUS]
        if len(amb):
            row = self.idx[amb] >> self.pw.bits
            self.new[amb] = step_bits(self.pw, row, self.z[amb])


def _members(values: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Positions of ``values`` (small integers) for which ``member[value]`` is True."""
    states = np.flatnonzero(member)
    if len(states) == 1:
        return np.flatnonzero(values == states[0])
    if len(states) == 2:
        return np.flatnonzero((values == states[0]) | (values == states[1]))
    return np.flatnonzero(member[values])
