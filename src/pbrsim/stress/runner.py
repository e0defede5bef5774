"""Running stress variants: jobs of (scenario, replications) on the executors, one organisation's cash paths back.

Shared by the stress test (``stress.run``) and the reverse stress test (``stress.reverse``), with the
order-statistic ranks both use for distribution-free quantile intervals.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..scenario.limits import LARGE
from ..scenario.schema import scenario_from_dict

DEFAULT_CHUNK = 25  # replications per task


# ---------------------------------------------------------------------------------------------
# Running: jobs of (scenario, replications) on the executors, cash paths back


def scenario_key(raw: dict) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Job:
    """Run replications ``reps`` of ``raw`` and return the cash path and interest of ``org``."""

    key: str
    raw: dict
    org: str
    seed: int
    reps: tuple[int, ...]


_MODELS: dict[str, Any] = {}


def run_job(job: Job) -> tuple:
    """Month-end cash and overdraft interest of the organisation, pence, ``[len(reps), horizon]`` each; the
    investors' money received and put in ``[len(reps), 2, horizon]`` when the scenario has investor finance
    (else None); and its money and clients by segment (``stress.economics.per_replication``)."""
    from ..engine.run import compile_model, run_batch
    from ..engine.ledger import KINDS, flows_by_rep

    model = _MODELS.get(job.key)
    if model is None:
        if len(_MODELS) > 256:
            _MODELS.clear()
        model = _MODELS[job.key] = compile_model(scenario_from_dict(job.raw, "<stress>", LARGE))  # checked by the driver
    o = next(i for i, org in enumerate(model.organisations) if org.name == job.org)
    party = model.vocab.party(job.org)
    H = model.horizon
    batch = run_batch(model, job.seed, job.reps)  # the job's replications together, each as it would run alone
    cash = np.ascontiguousarray(batch.cash[:, :, o])
    interest = np.zeros((len(job.reps), H), dtype=np.int64)
    if model.organisations[o].monthly_interest > 0:
        interest = flows_by_rep(batch.ledger, party, len(job.reps), H, KINDS.index("interest"), incoming=False)
    investors = None
    if model.finance is not None:
        n = len(job.reps)
        investors = np.zeros((n, 2, H), dtype=np.int64)
        for name in model.finance.investors:
            p = model.vocab.party(name)
            investors[:, 0] += flows_by_rep(batch.ledger, p, n, H, incoming=True)
            investors[:, 1] += flows_by_rep(batch.ledger, p, n, H, incoming=False)
    from .economics import per_replication

    return cash, interest, investors, per_replication(batch, model, o)


@dataclass
class Paths:
    """Cash paths of one organisation in one variant (pence), rows in replication order."""

    reps: np.ndarray
    cash: np.ndarray
    interest: np.ndarray
    investors: np.ndarray | None = None  # [n, 2, H]: all investors' money received and put in, pence
    money: np.ndarray | None = None  # [n, G + 1, 5]: the organisation's money by segment and part (stress.economics)
    clients: np.ndarray | None = None  # [n, G]: its clients by segment


class Runner:
    """Runs groups of jobs on an executor (``pbrsim.experiments.executors``), all jobs of a call in parallel.

    The executor (a process pool, a Dask cluster) is opened at the first call that needs it and serves every
    later call — the rounds of a search — until ``close()`` or until the runner is garbage-collected.
    """

    def __init__(self, org: str, seed: int, *, executor: str = "process", workers: int | None = None,
                 chunk: int = DEFAULT_CHUNK, progress: Callable[[int], None] | None = None):
        self.org, self.seed, self.executor, self.workers, self.chunk = org, seed, executor, workers, chunk
        self.progress = progress
        self.replications_run = 0
        self._kept = None  # the executor kept across batches (experiments.executors.KeptExecutor)

    def _executor(self):
        from ..experiments.executors import KeptExecutor

        if self._kept is None:
            self._kept = KeptExecutor(self.executor, self.workers)
        return self._kept.get()

    def close(self) -> None:
        """Shut the executor down (the next call opens a new one)."""
        if self._kept is not None:
            self._kept.close()

    def run(self, requests: dict[Any, tuple[dict, Iterable[int]]]) -> dict[Any, Paths]:
        """``{id: (raw, reps)}`` -> ``{id: Paths}``; raws must be valid scenarios (with the limit removed)."""
        jobs: list[tuple[Any, Job]] = []
        for rid, (raw, reps) in requests.items():
            reps = list(reps)
            key = scenario_key(raw)
            for i in range(0, len(reps), self.chunk):
                jobs.append((rid, Job(key, raw, self.org, self.seed, tuple(reps[i:i + self.chunk]))))
        parts: dict[Any, list] = {rid: [] for rid in requests}
        if self.executor == "serial" or len(jobs) == 1:
            results = ((j, run_job(j)) for _, j in jobs)
        else:
            results = self._executor().map(run_job, (j for _, j in jobs))
        owner = {id(j): rid for rid, j in jobs}  # executors hand back the task objects submitted
        for job, (cash, interest, investors, (money, clients)) in results:
            parts[owner[id(job)]].append((job.reps, cash, interest, investors, money, clients))
            self.replications_run += len(job.reps)
            if self.progress:
                self.progress(len(job.reps))
        out = {}
        for rid, ps in parts.items():
            ps.sort(key=lambda p: p[0][0] if p[0] else -1)
            reps = np.array([r for p in ps for r in p[0]], dtype=np.int64)
            H = max((p[1].shape[1] for p in ps), default=0)
            out[rid] = Paths(reps, np.concatenate([p[1] for p in ps]) if ps else np.zeros((0, H), np.int64),
                             np.concatenate([p[2] for p in ps]) if ps else np.zeros((0, H), np.int64),
                             np.concatenate([p[3] for p in ps]) if ps and ps[0][3] is not None else None,
                             np.concatenate([p[4] for p in ps]) if ps else None, np.concatenate([p[5] for p in ps]) if ps else None)
        return out


def lockstep(searches: dict[Any, Iterator], runner: Runner) -> dict[Any, Any]:
    """Drive generator searches together: each yields ``{id: (raw, reps)}`` requests and is sent the Paths;
    all searches' requests of a round run in one parallel batch. Returns each search's return value."""
    outputs: dict[Any, Any] = {}
    pending: dict[Any, dict] = {}

    def advance(key, value=None, first=False):
        try:
            pending[key] = next(searches[key]) if first else searches[key].send(value)
        except StopIteration as stop:
            outputs[key] = stop.value
            pending.pop(key, None)

    for key in list(searches):
        advance(key, first=True)
    while pending:
        batch = {(key, rid): req for key, reqs in pending.items() for rid, req in reqs.items()}
        done = runner.run(batch)
        for key in list(pending):
            advance(key, {rid: done[(key, rid)] for rid in pending[key]})
    return outputs



# ---------------------------------------------------------------------------------------------
# Order statistics


def binomial_cdf(n: int, q: float) -> np.ndarray:
    """P(B <= j) for j = 0..n, B ~ Binomial(n, q) (log-space recurrence; no scipy)."""
    if q <= 0:
        return np.ones(n + 1)
    if q >= 1:
        out = np.zeros(n + 1)
        out[-1] = 1
        return out
    j = np.arange(n)
    logpmf = np.concatenate([[n * math.log1p(-q)], n * math.log1p(-q) + np.cumsum(np.log((n - j) / (j + 1)) + math.log(q / (1 - q)))])
    pmf = np.exp(logpmf - logpmf.max())
    return np.cumsum(pmf / pmf.sum())


def quantile_ranks(n: int, q: float, conf: float = 0.95) -> tuple[int, int]:
    """1-based order-statistic ranks (l, u) with P(X_(l) <= xi_q <= X_(u)) >= conf; 0 / n+1 mean unbounded."""
    F = binomial_cdf(n, q)
    a = (1 - conf) / 2
    # B = #{X_r <= xi_q}; X_(l) <= xi_q iff B >= l; P(B <= l - 1) = F[l-1] <= a
    ls = [j for j in range(1, n + 1) if F[j - 1] <= a]
    us = [j for j in range(1, n + 1) if F[j - 1] >= 1 - a]
    return (max(ls) if ls else 0), (min(us) if us else n + 1)
