"""What a client is worth to an organisation: backward induction on the client's pathway chain.

For one organisation under one contract, ``value_tables`` solves the single-client decision problem
"full or minimal service this month?" by backward induction over months left, vectorised over
segment × state × auxiliary state, and returns the *gain* of full over minimal service:

    gain = Q_full − Q_minimal     (pence, discounted to the month of the decision)
    Q_ℓ  = −cost_ℓ + fee-for-service + E[ payments earned by this month's transition
                                           + δ · V(next month) | service level ℓ now ]

* Payments: every payment rule of the contract (attachment, milestone, outcome — paid on first
  entry into their state — and sustainment — paid for each month a transition lands in one of its
  states, up to ``max_months``), valued at tariff[segment] × (1 − rejection) × the organisation's
  income share of that kind, discounted δ^(lag + extra_lag) from the month of the transition.
  The service fee does not depend on what happens to a client, so it never enters a value.
* Costs: cost_full or cost_minimal in each month the client is in a service state (costs fall in
  the month, undiscounted); non-service states cost nothing and are given minimal service.
* Discounting: δ = 1 / (1 + monthly_discount_rate) per month.
* Months left n = min(months left on the contract, transitions left on the programme). When the
  programme limit binds (or both bind together), the n-th transition is a forced exit: any
  non-absorbing destination becomes the exit state, as in the engine. Tables are kept for both
  cases (axis ``last``: 0 = contract end, 1 = forced exit).
* Continuation: ``optimal`` (default) — the organisation anticipates that it will choose the better
  level again each later month (Bellman max), i.e. a provider whose plan is consistent over time;
  ``holistic`` — every later month at full service. The policy uses ``optimal``: a return-maximising
  provider that valued continuation as if it would keep serving would overvalue clients it will park
  next month. Capacity is not part of the single-client problem (docs/behaviour.md).

Auxiliary state. First-entry payments are earned only on a client's first entry into a state, and
sustainment payments only up to ``max_months``; the chain is augmented so the continuation is exact:
* a 'visited' flag for each paid first-entry state that can be re-entered (it lies on a cycle of the
  pathway graph); a paid state that cannot be re-entered needs no flag, since any entry is a first;
* a 'payments left' counter 0..max_months for each sustainment rule.
The engine's monthly review does not say which states a client has visited, so at the decision the
auxiliary state is *inferred* from the current state: a flag is set if the flagged state is the
current state, the initial state, or dominates the current state (every path from the initial state
to it passes through the flagged state); a sustainment counter is full, less one if the client is
now in one of its states. This is exact when no paid state can be re-entered and no sustainment state
can be left and re-entered; otherwise it can overvalue a client who has already earned a payment
before falling back (docs/behaviour.md, "Approximations"). When the augmented space would exceed
``MAX_AUX`` combinations, flags and then counters are dropped (pay on every entry / every month), and
``ValueTables.approximations`` says so.

A line with ``requires`` is valued at the probability that the required claim is accepted, as if that
claim were still to come and its trigger came first: exact when the line's states can only be reached
through the required line's trigger (Work Programme sustainment after the job outcome).

Not modelled: the contract cap, the provider's own insolvency, capacity in later months.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.pathway import FULL, MINIMAL

MAX_AUX = 4096
CONTINUATIONS = ("optimal", "holistic")


@dataclass(frozen=True)
class Aux:
    """Mixed-radix encoding of the auxiliary state: visited flags, then sustainment payments left."""

    flag_states: tuple[int, ...]  # state index of each tracked flag
    sust_rules: tuple[int, ...]  # index in contract.rules of each counted sustainment rule
    sust_max: tuple[int, ...]  # max_months of each counted sustainment rule

    @property
    def radices(self) -> tuple[int, ...]:
        return (2,) * len(self.flag_states) + tuple(m + 1 for m in self.sust_max)

    @property
    def size(self) -> int:
        return int(np.prod(self.radices, dtype=np.int64))

    def digits(self) -> np.ndarray:
        """[X, D] digits of every auxiliary index."""
        X, rad = self.size, self.radices
        out = np.zeros((X, len(rad)), dtype=np.int64)
        x = np.arange(X)
        for d, r in enumerate(rad):
            out[:, d] = x % r
            x = x // r
        return out

    def encode(self, digits: np.ndarray) -> np.ndarray:
        idx = np.zeros(digits.shape[:-1], dtype=np.int64)
        mult = 1
        for d, r in enumerate(self.radices):
            idx += digits[..., d] * mult
            mult *= r
        return idx


@dataclass(frozen=True)
class ValueTables:
    """Values of full vs minimal service for one organisation; lookups are vectorised over clients."""

    gain: np.ndarray  # float64 [2, G, S, N + 1]: Q_full − Q_minimal (pence) at the inferred auxiliary state
    q: np.ndarray  # float64 [2, 2, G, S, N + 1]: [last, level, ...] Q values at the inferred auxiliary state
    serve: np.ndarray | None  # bool [2, G, S, X, N + 1] with keep_all: the continuation's choice (full?) in every auxiliary state
    q_all: np.ndarray | None  # float64 [2, 2, G, S, X, N + 1] with keep_all: Q in every auxiliary state
    aux: Aux
    aux0: np.ndarray  # int64 [S]: inferred auxiliary index for a client now in each state
    months: int  # contract length T
    max_months: int | None  # transitions allowed on the programme
    cost_gap: int  # cost_full − cost_minimal, pence
    discount: float  # δ per month
    continuation: str
    approximations: tuple[str, ...]
    classes: int = 1  # latent classes per segment: rows of ``gain`` are segment * classes + class

    @property
    def n_max(self) -> int:
        return self.gain.shape[-1] - 1

    def months_left(self, month: int, ref_month: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, last) for clients at ``month``: transitions left and whether the last one is a forced exit."""
        left_contract = self.months - month
        if self.max_months is None:
            n = np.full(len(ref_month), left_contract, dtype=np.int64)
            return n, np.zeros(len(ref_month), dtype=np.int64)
        left_prog = self.max_months - (month - ref_month.astype(np.int64))
        forced = left_prog <= left_contract
        return np.clip(np.minimum(left_prog, left_contract), 0, self.n_max), forced.astype(np.int64)

    def lookup(self, month: int, segment: np.ndarray, state: np.ndarray, ref_month: np.ndarray,
               latent_class: np.ndarray | None = None) -> np.ndarray:
        """Net value (pence) of full rather than minimal service this month for each client (with latent
        classes, of its segment and class; a class the provider does not observe is valued at the shares)."""
        n, last = self.months_left(month, ref_month)
        _, G, S, N1 = self.gain.shape
        row = segment.astype(np.int64)
        if self.classes > 1:
            row = row * self.classes + (0 if latent_class is None else latent_class.astype(np.int64))
        flat = ((last * G + row) * S + state.astype(np.int64)) * N1 + n
        return self.gain.reshape(-1)[flat]


# ---------------------------------------------------------------------------------------------
# Graph helpers


def _edges(pw) -> np.ndarray:
    """bool [S, S]: a move s -> s' (s != s') has positive probability for some segment and level."""
    E = (pw.P > 0).any(axis=(0, 1))
    np.fill_diagonal(E, False)
    E[pw.absorbing] = False
    return E


def _reachable(E: np.ndarray, start: int, removed: int | None = None) -> np.ndarray:
    S = len(E)
    seen = np.zeros(S, dtype=bool)
    if start == removed:
        return seen
    stack = [start]
    seen[start] = True
    while stack:
        s = stack.pop()
        for t in np.flatnonzero(E[s]):
            if t != removed and not seen[t]:
                seen[t] = True
                stack.append(t)
    return seen


def on_cycle(pw) -> np.ndarray:
    """bool [S]: the state can be left and entered again."""
    E = _edges(pw)
    out = np.zeros(pw.n_states, dtype=bool)
    for s in range(pw.n_states):
        for t in np.flatnonzero(E[s]):
            if _reachable(E, int(t))[s]:
                out[s] = True
                break
    return out


def dominators(pw) -> np.ndarray:
    """bool [p, s]: every path from the initial state to s passes through p (p = s included)."""
    E = _edges(pw)
    S = pw.n_states
    reach = _reachable(E, pw.initial)
    dom = np.zeros((S, S), dtype=bool)
    for p in range(S):
        without = _reachable(E, pw.initial, removed=p)
        dom[p] = reach & ~without
        dom[p, p] = True
    dom[pw.initial] = True
    return dom


# ---------------------------------------------------------------------------------------------
# Backward induction


def value_tables(model, org, monthly_discount_rate: float = 0.0, continuation: str = "optimal",
                 keep_all: bool = False, max_aux: int = MAX_AUX) -> ValueTables:
    """Backward induction for ``org`` (an ``Organisation``) under ``model``'s pathway and contract.

    ``keep_all`` also keeps Q values and the continuation's choices for every auxiliary state (tests,
    analysis); the policies need only the values at the inferred auxiliary state.
    """
    if continuation not in CONTINUATIONS:
        raise ValueError(f"continuation must be one of {CONTINUATIONS}, not {continuation!r}")
    pw, contract = model.pathway, model.contract
    K = pw.K
    G, S = len(pw.segments) * K, pw.n_states  # one row of the tables per (segment, latent class)
    T = model.months
    M = pw.max_months
    N = T if M is None else min(T, M)
    delta = 1.0 / (1.0 + monthly_discount_rate)
    extra_lag = int(getattr(org, "extra_lag", 0))
    is_prime = getattr(org, "index", 0) == 0
    share = dict(getattr(org, "income_share", {}) or {})
    approximations: list[str] = []

    def worth(rule) -> np.ndarray:
        s = share.get(rule.kind, 1.0 if is_prime else 0.0)
        accepted = 1.0 - rule.rejection
        if rule.requires >= 0:  # paid only after an accepted claim on the required line (approximation: see below)
            accepted *= 1.0 - contract.rules[rule.requires].rejection
        tariff = rule.class_tariff if rule.class_tariff is not None else np.repeat(rule.tariff, K)
        return tariff.astype(float) * accepted * s * delta ** (rule.lag + extra_lag)

    first_rules = [r for r in contract.rules if not r.is_sustainment and r.state >= 0]
    sust_rules = [r for r in contract.rules if r.is_sustainment]
    cyc = on_cycle(pw)
    flag_states = sorted({r.state for r in first_rules if cyc[r.state] and worth(r).any()})
    counted = [r for r in sust_rules if worth(r).any()]
    aux = Aux(tuple(flag_states), tuple(r.index for r in counted), tuple(r.max_months for r in counted))
    if aux.size > max_aux and flag_states:
        approximations.append("first-entry payments valued on every entry (too many re-enterable paid states to track)")
        flag_states = []
        aux = Aux((), aux.sust_rules, aux.sust_max)
    if aux.size > max_aux:
        approximations.append("sustainment payments valued for every month in their states (max_months not tracked)")
        counted = []
        aux = Aux((), (), ())
    if flag_states:
        approximations.append("a client's visited paid states are inferred from the current state (dominators)")
    if any(cyc[contract.rules[i].in_states].any() for i in aux.sust_rules):
        approximations.append("a client's sustainment payments so far are inferred from the current state")
    X = aux.size
    digits = aux.digits()  # [X, D]
    F = len(aux.flag_states)

    # -- payments on a transition into s', given the auxiliary state before it -----------------
    entry_pay = np.zeros((G, S, X))
    for r in first_rules:
        w = worth(r)
        if not w.any():
            continue
        if r.state in aux.flag_states:
            unvisited = digits[:, aux.flag_states.index(r.state)] == 0
            entry_pay[:, r.state, :] += w[:, None] * unvisited[None, :]
        else:
            entry_pay[:, r.state, :] += w[:, None]
    sust_pay = np.zeros((G, S, X))
    upd = np.tile(np.arange(X), (S, 1))  # [S, X]: auxiliary index after landing in s'
    new_digits = np.broadcast_to(digits, (S,) + digits.shape).copy()  # [S, X, D]
    for j, fs in enumerate(aux.flag_states):
        new_digits[fs, :, j] = 1
    for r in sust_rules:
        w = worth(r)
        if not w.any():
            continue
        if r.index in aux.sust_rules:
            d = F + aux.sust_rules.index(r.index)
            left = digits[:, d]
            for s in np.flatnonzero(r.in_states):
                sust_pay[:, s, :] += w[:, None] * (left > 0)[None, :]
                new_digits[s, :, d] = np.maximum(left - 1, 0)
        else:
            sust_pay[:, r.in_states, :] += w[:, None, None]
    if X > 1:
        upd = aux.encode(new_digits)

    # -- the month's transition matrices: normal, and the forced exit at the programme limit ----
    P = pw.P if pw.PK is None else pw.PK  # [G*K, 2, S, S]
    Pf = P.copy()
    if M is not None and pw.exit_state >= 0:
        transient = pw.exit_applies  # every non-absorbing state unless pathway.exit_applies_to narrows it
        moved = Pf[:, :, :, transient].sum(axis=-1)
        Pf[:, :, :, transient] = 0.0
        Pf[:, :, :, pw.exit_state] += moved
    Pboth = np.stack([P, Pf])  # [2(last), G, 2(level), S, S]
    off = Pboth.copy()
    idx = np.arange(S)
    off[..., idx, idx] = 0.0
    # expected first-entry payments of this month's move, by (last, g, level, s, x)
    EP = off @ entry_pay[None, :, None]  # [2, G, 2, S, X]

    cost = np.array([org.cost_full, org.cost_minimal], dtype=float)
    ffs = float(getattr(org, "ffs_month", 0)) * delta ** extra_lag
    service = pw.service
    absorbing = pw.absorbing

    V = np.zeros((2, G, S, X))  # value with n − 1 transitions left
    gain = np.zeros((2, G, S, N + 1))
    q_inf = np.zeros((2, 2, G, S, N + 1))
    serve = np.zeros((2, G, S, X, N + 1), dtype=bool) if keep_all else None
    q_all = np.zeros((2, 2, G, S, X, N + 1)) if keep_all else None

    aux0 = _inferred_aux(pw, aux, contract)
    rows = np.arange(S)
    for n in range(1, N + 1):
        # base[s', x] = sustainment earned on landing in s' + δ V(s', x after landing)
        base = sust_pay[None] + delta * np.take_along_axis(V, np.broadcast_to(upd, (2, G, S, X)), axis=-1)
        # the forced table differs only at n == 1 (the exit happens on the last transition)
        E = np.empty((2, G, 2, S, X))
        for last in (0, 1):
            Pl = Pboth[last] if n == 1 else Pboth[0]
            EPl = EP[last] if n == 1 else EP[0]
            E[last] = Pl @ base[last][:, None] + EPl
        Q = E.copy()  # [last, g, level, s, x]
        Q[:, :, FULL] += (-cost[FULL] + ffs) * service[:, None]
        Q[:, :, MINIMAL] += (-cost[MINIMAL] + ffs) * service[:, None]
        choose_full = Q[:, :, FULL] >= Q[:, :, MINIMAL]
        if continuation == "optimal":
            Vn = np.where(service[None, None, :, None], np.maximum(Q[:, :, FULL], Q[:, :, MINIMAL]), Q[:, :, MINIMAL])
        else:
            Vn = np.where(service[None, None, :, None], Q[:, :, FULL], Q[:, :, MINIMAL])
        Vn[:, :, absorbing, :] = 0.0
        if continuation == "holistic":
            choose_full = np.ones_like(choose_full)
        if keep_all:
            serve[..., n] = choose_full & service[None, None, :, None]
            q_all[..., n] = np.moveaxis(Q, 2, 1)
        at0 = Q[:, :, :, rows, aux0]  # [last, g, level, S]
        q_inf[..., n] = np.moveaxis(at0, 2, 1)
        gain[..., n] = at0[:, :, FULL] - at0[:, :, MINIMAL]
        V = Vn
    gain[:, :, ~service, :] = 0.0
    if K > 1:
        blind(pw, gain, axis=1)
        blind(pw, q_inf, axis=2)
    return ValueTables(
        gain=gain, q=q_inf, serve=serve, q_all=q_all, aux=aux, aux0=aux0, months=T, max_months=M,
        cost_gap=int(org.cost_full - org.cost_minimal), discount=delta, continuation=continuation,
        approximations=tuple(approximations), classes=K,
    )


def blind(pw, table: np.ndarray, axis: int) -> None:
    """In place: for segments whose classes the provider does not observe, every class's entry along ``axis``
    (segment * K + class) becomes the class-share-weighted mean, the value of a client of unknown class."""
    K = pw.K
    for g in np.flatnonzero(~pw.class_observed):
        rows = np.take(table, np.arange(g * K, (g + 1) * K), axis=axis)
        w = pw.class_share[g].reshape((1,) * axis + (K,) + (1,) * (table.ndim - axis - 1))
        mean = (rows * w).sum(axis=axis, keepdims=True)
        idx = [slice(None)] * table.ndim
        idx[axis] = slice(g * K, (g + 1) * K)
        table[tuple(idx)] = mean


def _inferred_aux(pw, aux: Aux, contract) -> np.ndarray:
    """Auxiliary index assumed for a client now in each state (module docstring)."""
    S = pw.n_states
    if aux.size == 1:
        return np.zeros(S, dtype=np.int64)
    dom = dominators(pw)
    digits = np.zeros((S, len(aux.radices)), dtype=np.int64)
    for j, fs in enumerate(aux.flag_states):
        digits[:, j] = dom[fs]
    F = len(aux.flag_states)
    for k, (ri, m) in enumerate(zip(aux.sust_rules, aux.sust_max)):
        in_states = contract.rules[ri].in_states.copy()
        in_states[pw.initial] = False
        digits[:, F + k] = m - in_states.astype(np.int64)
    return aux.encode(digits)


# ---------------------------------------------------------------------------------------------
# One set of tables per (model, organisation, rate): the engine builds policies once per replication.

_CACHE: dict[tuple, tuple] = {}


def cached_value_tables(model, org, monthly_discount_rate: float = 0.0) -> ValueTables:
    """``value_tables`` memoised on the identity of the model and organisation objects."""
    import weakref

    key = (id(model), id(org), float(monthly_discount_rate))
    hit = _CACHE.get(key)
    if hit is not None:
        model_ref, org_ref, tables = hit
        if model_ref() is model and org_ref() is org:
            return tables
    tables = value_tables(model, org, monthly_discount_rate)
    if len(_CACHE) > 64:
        _CACHE.clear()
    try:
        _CACHE[key] = (weakref.ref(model), weakref.ref(org), tables)
    except TypeError:  # objects without weak references: do not cache
        pass
    return tables
