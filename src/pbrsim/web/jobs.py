"""Long work off the server's loop: Monte Carlo runs, comparisons, stress tests and goal seeks run on worker
threads, one job each, with progress the page polls. The table of jobs is shared by every request and
guarded by a lock; a job's own fields are written only by its worker (under the same lock)."""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

MAX_JOBS = 50  # finished jobs kept (what the page shows); the oldest finished ones go first
MAX_KEPT = 4  # finished jobs that keep their simulation result for downloads (a result holds every table of the run)
MAX_WAITING = 8  # jobs queued or running at once; more are refused until some finish


class Busy(Exception):
    """Too many jobs are waiting: the page says to wait for them."""


@dataclass
class Job:
    id: str
    kind: str
    total: int
    done: int = 0
    state: str = "queued"  # queued, running, done, failed
    stage: str = ""
    result: Any = None  # what the page shows (JSON)
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    keep: dict = field(default_factory=dict)  # what downloads need (the simulation result, the design)

    def view(self) -> dict:
        return {"id": self.id, "kind": self.kind, "state": self.state, "done": self.done, "total": self.total,
                "stage": self.stage, "error": self.error, "result": self.result if self.state == "done" else None,
                "seconds": round((self.finished or time.monotonic()) - self.started, 2)}


class Jobs:
    """Jobs by id; ``workers`` threads run them (the rest wait their turn)."""

    def __init__(self, workers: int = 2):
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pbrsim-job")

    def submit(self, kind: str, total: int, work: Callable[[Job, Callable[..., None]], Any]) -> Job:
        """Start ``work(job, progress)`` on a worker; ``progress(k, stage=None, total=None)`` adds k units done (a
        ``total`` restarts the count towards it). ``work``
        returns the page's result; an exception makes the job fail with its message."""
        with self._lock:
            waiting = sum(j.state in ("queued", "running") for j in self._jobs.values())
            if waiting >= MAX_WAITING:
                raise Busy(f"{waiting} jobs are already queued or running; wait for them to finish and try again")
            job = Job(f"j{next(self._ids)}", kind, total)
            self._jobs[job.id] = job
            self._trim()

        def progress(k: int = 0, stage: str | None = None, total: int | None = None) -> None:
            with self._lock:
                if total:
                    job.total, job.done = int(total), 0
                job.done = min(job.total, job.done + int(k))
                if stage is not None:
                    job.stage = stage

        def run() -> None:
            with self._lock:
                job.state, job.started = "running", time.monotonic()
            try:
                result = work(job, progress)
            except Exception as exc:  # noqa: BLE001 - the page shows the message; the server goes on
                message = getattr(exc, "problems", None)
                text = "; ".join(f"{p}: {r}" if p else r for p, r in message) if message else f"{type(exc).__name__}: {exc}"
                if not message:
                    traceback.print_exc()
                with self._lock:
                    job.state, job.error, job.finished = "failed", text, time.monotonic()
                return
            with self._lock:
                job.result, job.state, job.done, job.finished = result, "done", job.total, time.monotonic()
                self._trim()

        self._pool.submit(run)
        return job

    def _trim(self) -> None:
        """Forget the oldest finished jobs beyond MAX_JOBS, and the results of all but the latest MAX_KEPT."""
        finished = [j for j in self._jobs.values() if j.state in ("done", "failed")]
        for j in finished[: max(0, len(self._jobs) - MAX_JOBS)]:
            del self._jobs[j.id]
        kept = [j for j in self._jobs.values() if j.keep and j.state == "done"]
        for j in kept[: max(0, len(kept) - MAX_KEPT)]:
            j.keep = {}

    def view(self, jid: str) -> dict:
        with self._lock:
            return self._jobs[jid].view()

    def get(self, jid: str) -> Job:
        with self._lock:
            return self._jobs[jid]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
