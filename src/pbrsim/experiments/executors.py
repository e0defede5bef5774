"""Where tasks run: in this process, on a local process pool, or on a dask.distributed cluster.

``Executor(kind, ...)`` is opened once (``with``) and runs any number of ``map(fn, tasks)`` calls, each a
generator of ``(task, result)`` in completion order; ``run_tasks(fn, tasks, ...)`` does both for one
call. A map keeps at most ``window`` tasks in flight (submitted but not yet handed back), so results never
pile up in memory however many tasks there are: the caller writes each result to disk and drops it
before asking for the next. Tasks must be deterministic functions of their arguments (no dependence on
the worker, the order or the time), so every executor gives the same results.

- ``serial``: one after another in this process (debugging, profiling, tiny batches).
- ``process``: a ``concurrent.futures`` process pool (``forkserver`` start method on POSIX, ``spawn``
  elsewhere). Workers ignore Ctrl-C, so that the driver alone decides how to stop, and exit as soon as
  the driver does, even when it is killed with SIGKILL (a thread in each worker waits on the driver's
  pidfd; Linux also gets a parent-death signal): no worker, fork server or resource tracker outlives a
  killed driver. A worker that dies (killed, out of memory) breaks the pool; the pool is restarted and
  the tasks it lost are run again, at most ``retries`` times each, then ``WorkerLost`` is raised.
- ``dask``: ``dask.distributed`` (optional extra ``pbrsim[dask]``). With ``scheduler`` an address
  (``tcp://host:8786``) or a ``distributed.Client``, tasks go to that cluster; without, a LocalCluster of
  ``workers`` single-threaded worker processes is started and closed afterwards. Before connecting, the
  address is probed: a Dask scheduler speaks first, with a small framed handshake; anything else (a
  silent listener, a web server, nothing at all) is refused within ``connect_timeout`` seconds with a
  one-line ``SchedulerUnreachable``. Each task has an explicit key given by ``key(task)``. Workers need
  pbrsim installed; results come back to the driver, so no shared file system is needed.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import multiprocessing.util
import os
import select
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

from . import scratch
from .lock import process_running

EXECUTORS = ("process", "serial", "dask")
DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds
DEFAULT_RETRIES = 2  # times a task lost with a dead worker is run again
MP_SCRATCH = "pbrsim-mp-"  # multiprocessing's temporary folder (the fork server's socket), made by pbrsim
_END = object()


class ExecutorUnavailable(RuntimeError):
    """The executor asked for cannot be used here (dask not installed, scheduler unreachable or not a scheduler)."""


class SchedulerUnreachable(ExecutorUnavailable):
    """No Dask scheduler answered at the address given, within the connection timeout."""


class ExecutorFailed(RuntimeError):
    """The executor stopped working part-way (workers dying, the scheduler gone); finished results stand."""


class WorkerLost(ExecutorFailed):
    """Worker processes kept dying while running the same task."""


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_executor(executor: str) -> None:
    """Raise ValueError / ExecutorUnavailable now, before anything is written, if ``executor`` cannot run."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose from {EXECUTORS}")
    if executor == "dask":
        _dask()


# ---------------------------------------------------------------------------------------------
# Workers that die with their driver


def _parent_death_signal() -> None:
    """Linux: SIGKILL this process when its parent (the driver, or the fork server) exits."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def watch_driver(driver: int) -> None:
    """Exit this process as soon as process ``driver`` ends, however it ends (a daemon thread waits for it)."""
    _parent_death_signal()
    try:
        fd = os.pidfd_open(driver)
    except ProcessLookupError:
        os._exit(70)
    except (AttributeError, OSError):  # not Linux >= 5.3: poll
        fd = None

    def wait():
        if fd is not None:
            select.select([fd], [], [])
        else:
            while process_running(driver):
                time.sleep(0.5)
        os._exit(70)

    threading.Thread(target=wait, name="pbrsim-driver-watch", daemon=True).start()


def _worker_init(driver: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_driver(driver)


SOCKET_PATH_MAX = 104  # bytes of a Unix socket's path (108 on Linux, 104 on macOS, less the final NUL)
_MP_NAMES = len("/pbrsim-mp-4194304-abcdefgh/listener-abcdefgh")  # what the folder and the socket add to the base


def socket_base() -> str | None:
    """Where multiprocessing's folder goes: the temporary folder, unless its path is too long for the fork
    server's socket below it (a deep TMPDIR), then /tmp or /var/tmp. None: the temporary folder."""
    base = tempfile.gettempdir()
    if len(os.fsencode(base)) + _MP_NAMES <= SOCKET_PATH_MAX:
        return None
    for alt in ("/tmp", "/var/tmp"):
        if os.path.isdir(alt) and os.access(alt, os.W_OK | os.X_OK) and len(alt) + _MP_NAMES <= SOCKET_PATH_MAX:
            return alt
    return None


def _own_multiprocessing_tempdir() -> None:
    """Give multiprocessing a temporary folder named after this process, so that the folder of a driver that
    was killed (multiprocessing removes its own only at a normal exit) is removed by the next pool. The
    folder is somewhere short enough for the fork server's socket path (``socket_base``)."""
    base = socket_base()
    scratch.remove_stale(MP_SCRATCH, base)
    try:
        config = multiprocessing.process.current_process()._config
    except AttributeError:
        return
    if config.get("tempdir") is None:
        folder = scratch.make(MP_SCRATCH, base)
        multiprocessing.util.Finalize(None, scratch.release, args=(folder,), exitpriority=-100)
        config["tempdir"] = str(folder)


def _discard_broken(pool: cf.ProcessPoolExecutor) -> None:
    """Shut a broken pool down without waiting on it, killing every worker it still has.

    (A worker started just as the pool broke is not terminated by ``concurrent.futures`` itself, and
    ``shutdown(wait=True)`` then waits for it forever.)
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        try:
            p.kill()
        except (OSError, ValueError, AttributeError):
            pass
    for p in processes:
        try:
            p.join(timeout=10)
        except (OSError, ValueError, AssertionError):
            pass


def _pool_context():
    _own_multiprocessing_tempdir()
    if sys.platform != "win32" and "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        # import the package once in the fork server, so each worker starts warm
        ctx.set_forkserver_preload(["pbrsim.experiments.batch"])
        return ctx
    return multiprocessing.get_context("spawn")


# ---------------------------------------------------------------------------------------------
# Dask: probe, connect


def _dask():
    try:
        import distributed
    except ImportError:
        raise ExecutorUnavailable(
            "the dask executor needs dask.distributed: pip install 'pbrsim[dask]' (or pip install 'dask[distributed]')"
        ) from None
    return distributed


def _recv(sock: socket.socket, n: int, deadline: float) -> bytes:
    """Up to ``n`` bytes before ``deadline`` (fewer if the peer closes); raises socket.timeout."""
    data = b""
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout
        sock.settimeout(left)
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def probe_scheduler(address: str, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
    """Raise SchedulerUnreachable within about ``timeout`` seconds unless a Dask scheduler answers at ``address``.

    A Dask server speaks first on a new connection: an 8-byte length, then a few framed msgpack bytes
    (its handshake). A silent listener, a web server (which waits for a request) or something else is
    told apart from a scheduler by that opening, without sending anything. Only ``tcp://`` addresses are
    probed; for ``tls://`` and others the client's own connection timeout applies.
    """
    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, loc = parse_address(address)
    if scheme != "tcp":
        return
    try:
        host, port = parse_host_port(loc)
    except ValueError as exc:
        raise SchedulerUnreachable(f"--scheduler {address}: {exc} (e.g. tcp://host:8786)") from None
    deadline = time.monotonic() + timeout
    advice = "check the address and that `dask scheduler` is running there (its default port is 8786)"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except (socket.timeout, TimeoutError):
        raise SchedulerUnreachable(f"no answer from {address} within {timeout:g} s; {advice}") from None
    except OSError as exc:
        raise SchedulerUnreachable(f"cannot connect to the Dask scheduler at {address}: {exc.strerror or exc}; "
                                   f"{advice}") from None
    with sock:
        try:
            head = _recv(sock, 8, deadline)
            if len(head) < 8:
                raise SchedulerUnreachable(f"{address} accepted the connection and closed it without a Dask handshake; "
                                           f"it is not a Dask scheduler; {advice}")
            (size,) = struct.unpack("<Q", head)
            body = _recv(sock, min(size, 1 << 16), deadline) if 16 <= size <= 1 << 16 else b""
        except (socket.timeout, TimeoutError):
            raise SchedulerUnreachable(
                f"{address} accepts connections but sent no Dask handshake within {timeout:g} s: it is not a Dask "
                f"scheduler (perhaps a web server, such as the dashboard on port 8787), or one too busy to answer; "
                f"{advice}, or allow longer with --connect-timeout") from None
        except OSError as exc:
            raise SchedulerUnreachable(f"connection to {address} failed: {exc.strerror or exc}; {advice}") from None
    if len(body) == size and size >= 16:
        (nframes,) = struct.unpack_from("<Q", body)
        if 1 <= nframes <= 64 and 8 * (1 + nframes) <= size:
            return  # a framed message of a plausible size: a Dask server
    opening = head.decode("ascii", "replace")
    kind = "a web server (HTTP)" if head.startswith(b"HTTP/") else "not a Dask scheduler"
    raise SchedulerUnreachable(f"{address} answered with {opening!r}..., which is not the Dask protocol: it is {kind}; "
                               f"{advice}")


def connect_client(address: str, timeout: float = DEFAULT_CONNECT_TIMEOUT):
    """A ``distributed.Client`` for the scheduler at ``address``, or SchedulerUnreachable within ~2 x ``timeout``."""
    distributed = _dask()
    probe_scheduler(address, timeout)
    try:
        return distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachable(f"cannot connect to the Dask scheduler at {address}: {exc}") from None
    except Exception as exc:  # the server answered, but not as a scheduler does (a Dask worker or nanny?)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SchedulerUnreachable(f"{address} speaks the Dask protocol but did not act as a scheduler (is it a "
                                   f"worker's address?): {first}") from None


def _dask_failures(distributed) -> tuple[type, ...]:
    """Exceptions from a future that mean the cluster failed, not the task."""
    from distributed.comm import CommClosedError

    errors = [CommClosedError, distributed.client.FutureCancelledError, OSError]
    killed = getattr(distributed, "KilledWorker", None) or getattr(distributed.scheduler, "KilledWorker", None)
    if killed is not None:
        errors.append(killed)
    return tuple(errors)


# ---------------------------------------------------------------------------------------------
# The executor


class Executor:
    """An open executor: ``with Executor("process", workers=2) as ex: for task, result in ex.map(fn, tasks): ...``.

    A process pool starts at the first ``map`` and serves later ones (a stress test's rounds reuse it);
    a Dask client connects (or a LocalCluster starts) on entering, so a bad address fails before any work.
    """

    def __init__(self, kind: str = "process", *, workers: int | None = None, scheduler: Any = None,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, retries: int = DEFAULT_RETRIES):
        if kind not in EXECUTORS:
            raise ValueError(f"unknown executor {kind!r}; choose from {EXECUTORS}")
        self.kind, self.workers, self.scheduler = kind, workers, scheduler
        self.connect_timeout, self.retries = connect_timeout, retries
        self._pool: cf.ProcessPoolExecutor | None = None
        self._client = self._cluster = None
        self._own_client = False

    # -- lifetime

    def __enter__(self) -> "Executor":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        scratch.remove_stale(MP_SCRATCH, socket_base())
        if self.kind != "dask" or self._client is not None:
            return
        distributed = _dask()
        if isinstance(self.scheduler, distributed.Client):
            self._client = self.scheduler
        elif self.scheduler:
            self._client, self._own_client = connect_client(self.scheduler, self.connect_timeout), True
        else:
            self._cluster = distributed.LocalCluster(n_workers=self.workers or default_workers(), threads_per_worker=1,
                                                     processes=True, dashboard_address=None)
            self._client, self._own_client = distributed.Client(self._cluster, set_as_default=False), True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._client is not None and self._own_client:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    # -- running

    def map(self, fn: Callable[[Any], Any], tasks: Iterable[Any], *, key: Callable[[Any], str] | None = None,
            window: int | None = None) -> Iterator[tuple[Any, Any]]:
        """Run ``fn(task)`` for every task; yield ``(task, result)`` as each finishes.

        Closing the generator early (an exception or Ctrl-C in the caller) cancels the tasks not yet started.
        """
        if self.kind == "serial":
            return ((task, fn(task)) for task in tasks)
        if self.kind == "process":
            return self._map_pool(fn, tasks, key, window)
        self.open()
        return self._map_dask(fn, tasks, key, window)

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=self.workers or default_workers(), mp_context=_pool_context(),
                                      initializer=_worker_init, initargs=(os.getpid(),))

    def _map_pool(self, fn, tasks, key, window) -> Iterator[tuple[Any, Any]]:
        window = window or 2 * (self.workers or default_workers())
        pending = iter(tasks)
        again: deque = deque()  # tasks lost with a dead worker, run first
        lost_count: dict[int, int] = {}
        inflight: dict[cf.Future, Any] = {}
        if self._pool is None:
            self._pool = self._new_pool()

        def fill() -> bool:
            """Submit up to the window; False if the pool turned out to be broken."""
            while len(inflight) < window:
                task = again.popleft() if again else next(pending, _END)
                if task is _END:
                    return True
                try:
                    inflight[self._pool.submit(fn, task)] = task
                except BrokenProcessPool:
                    again.appendleft(task)
                    return False
            return True

        def restart(lost: list) -> None:
            """Replace the broken pool; count each lost task's loss and give up on one lost too often."""
            for task in lost:
                n = lost_count[id(task)] = lost_count.get(id(task), 0) + 1
                if n > self.retries:
                    what = key(task) if key else repr(task)[:80]
                    raise WorkerLost(f"a worker process died {n} times while running {what} (killed, or out of memory?)")
            again.extendleft(reversed(lost))
            self._pool = self._new_pool()

        try:
            healthy = fill()
            while inflight or again or not healthy:
                if healthy and inflight:
                    done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
                else:
                    done = set()
                lost = []
                for fut in [f for f in inflight if f in done or not healthy]:
                    if not fut.done():
                        continue
                    task = inflight.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        healthy = False
                        lost.append(task)
                        continue
                    del fut
                    lost_count.pop(id(task), None)
                    yield task, result
                if not healthy:
                    # every other task in flight is lost too: collect the ones that finished, requeue the rest
                    _discard_broken(self._pool)
                    self._pool = None
                    for fut, task in list(inflight.items()):
                        del inflight[fut]
                        if fut.done() and not fut.cancelled() and fut.exception() is None:
                            yield task, fut.result()
                        else:
                            lost.append(task)
                    restart(lost)
                    healthy = True
                healthy = fill() and healthy
        finally:
            for fut in inflight:
                fut.cancel()
            if inflight and self._pool is not None:  # stopped early: do not leave work queued in a reused pool
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def _map_dask(self, fn, tasks, key, window) -> Iterator[tuple[Any, Any]]:
        distributed = _dask()
        failures = _dask_failures(distributed)
        client = self._client
        inflight: dict[str, tuple[Any, Any]] = {}
        where = self.scheduler if isinstance(self.scheduler, str) else "the Dask cluster"
        try:
            window = window or 2 * max(1, sum(client.nthreads().values()))
            pending = iter(tasks)
            queue = distributed.as_completed(loop=client.loop)

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
                try:
                    result = fut.result()
                except failures as exc:
                    what = key(task) if key else repr(task)[:80]
                    detail = (str(exc).splitlines() or [""])[0].rstrip(". ")
                    raise ExecutorFailed(f"{where} failed while running {what} ({type(exc).__name__}"
                                         f"{': ' + detail if detail else ''})") from None
                fut.release()
                del fut
                yield task, result
                fill()
        finally:
            for fut, _ in inflight.values():
                fut.cancel()


def run_tasks(
    fn: Callable[[Any], Any],
    tasks: Iterable[Any],
    *,
    executor: str = "process",
    workers: int | None = None,
    scheduler: Any = None,
    key: Callable[[Any], str] | None = None,
    window: int | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
) -> Iterator[tuple[Any, Any]]:
    """Open an executor, yield ``(task, result)`` for every task as each finishes, close it."""
    with Executor(executor, workers=workers, scheduler=scheduler, connect_timeout=connect_timeout, retries=retries) as ex:
        yield from ex.map(fn, tasks, key=key, window=window)


class KeptExecutor:
    """An executor opened on first use and kept open for later batches (the rounds of a search, the stages of a
    design search), so that worker processes start once and keep what they compiled; shut by ``close()`` or
    when its owner lets it go (garbage collection)."""

    def __init__(self, kind: str = "process", workers: int | None = None):
        self.kind, self.workers = kind, workers
        self._open: Executor | None = None
        self._finalizer = None

    def get(self) -> Executor:
        import weakref

        if self._open is None:
            self._open = Executor(self.kind, workers=self.workers)
            self._open.open()
            self._finalizer = weakref.finalize(self, self._open.close)
        return self._open

    def close(self) -> None:
        """Shut the executor down (the next ``get`` opens a new one)."""
        if self._finalizer is not None:
            self._finalizer()
        self._open = self._finalizer = None
