"""Where tasks run: in this process, on a local process pool, or on a dask.distributed cluster.

``run_tasks(fn, tasks, ...)`` is a generator of ``(task, result)`` in completion order. It keeps at most
``window`` tasks in flight (submitted but not yet handed back), so results never pile up in memory
however many tasks there are: the caller writes each result to disk and drops it before asking for the
next. Tasks must be deterministic functions of their arguments (no dependence on the worker, the order
or the time), so every executor gives the same results.

- ``serial``: one after another in this process (debugging, profiling, tiny batches).
- ``process``: a ``concurrent.futures`` process pool (``forkserver`` start method on POSIX, ``spawn``
  elsewhere); workers ignore Ctrl-C so that the driver alone decides how to stop.
- ``dask``: ``dask.distributed`` (optional extra ``pbrsim[dask]``). With ``scheduler`` an address
  (``tcp://host:8786``) or a ``distributed.Client``, tasks go to that cluster; without, a LocalCluster of
  ``workers`` single-threaded worker processes is started and closed afterwards. Each task has an
  explicit key given by ``key(task)``. Workers need pbrsim installed; results come back to the driver,
  so no shared file system is needed.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import sys
from typing import Any, Callable, Iterable, Iterator

EXECUTORS = ("process", "serial", "dask")
_END = object()


class ExecutorUnavailable(RuntimeError):
    """The executor asked for cannot be used here (e.g. dask is not installed)."""


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool_context():
    if sys.platform != "win32" and "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        # import the package once in the fork server, so each worker starts warm
        ctx.set_forkserver_preload(["pbrsim.experiments.batch"])
        return ctx
    return multiprocessing.get_context("spawn")


def run_tasks(
    fn: Callable[[Any], Any],
    tasks: Iterable[Any],
    *,
    executor: str = "process",
    workers: int | None = None,
    scheduler: Any = None,
    key: Callable[[Any], str] | None = None,
    window: int | None = None,
) -> Iterator[tuple[Any, Any]]:
    """Run ``fn(task)`` for every task; yield ``(task, result)`` as each finishes.

    Closing the generator early (an exception or Ctrl-C in the caller) cancels the tasks not yet
    started and shuts the pool or cluster down.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose from {EXECUTORS}")
    if executor == "serial":
        for task in tasks:
            yield task, fn(task)
        return
    if executor == "process":
        yield from _run_pool(fn, tasks, workers or default_workers(), window)
        return
    yield from _run_dask(fn, tasks, workers, scheduler, key, window)


def _run_pool(fn, tasks, workers: int, window: int | None) -> Iterator[tuple[Any, Any]]:
    window = window or 2 * workers
    pending = iter(tasks)
    inflight: dict[cf.Future, Any] = {}
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(), initializer=_ignore_sigint)
    try:
        def fill():
            while len(inflight) < window:
                task = next(pending, _END)
                if task is _END:
                    return
                inflight[pool.submit(fn, task)] = task

        fill()
        while inflight:
            done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                task = inflight.pop(fut)
                result = fut.result()
                del fut
                yield task, result
            fill()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def check_executor(executor: str) -> None:
    """Raise ValueError / ExecutorUnavailable now, before anything is written, if ``executor`` cannot run."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose from {EXECUTORS}")
    if executor == "dask":
        _dask()


def _dask():
    try:
        import distributed
    except ImportError:
        raise ExecutorUnavailable(
            "the dask executor needs dask.distributed: pip install 'pbrsim[dask]' (or pip install 'dask[distributed]')"
        ) from None
    return distributed


def _run_dask(fn, tasks, workers, scheduler, key, window) -> Iterator[tuple[Any, Any]]:
    distributed = _dask()
    cluster = None
    own_client = True
    if isinstance(scheduler, distributed.Client):
        client, own_client = scheduler, False
    elif scheduler:
        client = distributed.Client(scheduler)
    else:
        cluster = distributed.LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1,
                                           processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
    inflight: dict[str, tuple[Any, Any]] = {}
    try:
        window = window or 2 * max(1, sum(client.nthreads().values()))
        pending = iter(tasks)
        queue = distributed.as_completed()

        def fill():
            while len(inflight) < window:
                task = next(pending, _END)
                if task is _END:
                    return
                fut = client.submit(fn, task, key=key(task) if key else None, pure=False)
                inflight[fut.key] = (fut, task)
                queue.add(fut)

        fill()
        while inflight:
            fut = next(queue)
            _, task = inflight.pop(fut.key)
            result = fut.result()
            fut.release()
            del fut
            yield task, result
            fill()
    finally:
        for fut, _ in inflight.values():
            fut.cancel()
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()
