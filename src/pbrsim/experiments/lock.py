"""The batch lock: one file in a dataset folder saying which process writes there, so two batches never do.

Taking the lock creates ``.pbrsim.lock`` atomically (``O_CREAT | O_EXCL``) and writes the owner into it:
process id, host name, the process's start time and the machine's boot id. Every step that reads,
creates or removes the file runs under a short ``flock`` on the folder itself, so a reader never sees a
half-written lock and two processes never both decide that the same stale lock is theirs to replace.

A lock whose owner is gone is stale and is replaced: on the same host, when its process is not running,
or its pid now belongs to a process started later (pid reuse), or the machine has rebooted since. A lock
held by a process on another host (a shared file system) cannot be checked from here and is never taken
over: the error names the host and the process, and the user deletes the file once that batch is
known to be gone.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: O_EXCL alone, stale recovery by pid only
    fcntl = None

LOCK = ".pbrsim.lock"
GUARD_WAIT = 10.0  # seconds to wait for another process's few-millisecond look at the lock
EMPTY_GRACE = 10.0  # without flock, an empty lock younger than this may still be being written


class LockError(Exception):
    """The folder is locked by another batch, or the lock cannot be taken."""


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, Linux), or None where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may contain spaces and parentheses: split after the last ')'
        return int(stat.rpartition(")")[2].split()[19])
    except (IndexError, ValueError):
        return None


def process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Owner:
    """Who holds a lock."""

    pid: int
    host: str | None = None
    boot_id: str | None = None
    started: int | None = None
    token: str | None = None
    since: str | None = None

    @classmethod
    def me(cls) -> "Owner":
        pid = os.getpid()
        return cls(pid, socket.gethostname(), _boot_id(), _start_ticks(pid), uuid.uuid4().hex,
                   datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @classmethod
    def parse(cls, text: str) -> "Owner | None":
        """The owner written in a lock file (JSON; a bare pid from older versions); None if unreadable."""
        text = text.strip()
        if not text:
            return None
        if text.isdigit():
            return cls(int(text))
        try:
            d = json.loads(text)
            return cls(int(d["pid"]), d.get("host"), d.get("boot_id"), d.get("started"), d.get("token"), d.get("since"))
        except (ValueError, KeyError, TypeError):
            return None

    def text(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "boot_id": self.boot_id, "started": self.started,
                           "token": self.token, "since": self.since}) + "\n"

    def on_this_host(self) -> bool:
        return self.host is None or self.host == socket.gethostname()

    def gone(self) -> bool:
        """True when the owner certainly no longer runs (checked on this host only)."""
        if not self.on_this_host():
            return False
        boot = _boot_id()
        if self.boot_id and boot and self.boot_id != boot:
            return True
        if not process_running(self.pid):
            return True
        started = _start_ticks(self.pid)
        return self.started is not None and started is not None and started != self.started

    def describe(self) -> str:
        where = "" if self.on_this_host() else f" on host {self.host}"
        since = f", since {self.since}" if self.since else ""
        return f"process {self.pid}{where}{since}"


@contextmanager
def _guard(folder: Path):
    """A short exclusive flock on ``folder`` (released by the kernel if this process dies)."""
    if fcntl is None:
        yield False
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        deadline = time.monotonic() + GUARD_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockError(f"cannot lock {folder}: another process has been looking at its lock for "
                                    f"{GUARD_WAIT:.0f} s; try again") from None
                time.sleep(0.001)
            except OSError as exc:
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF):
                    yield False  # a file system without flock: O_EXCL alone
                    return
                raise
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class Lock:
    """An exclusive lock on a dataset folder for the duration of a ``with`` block."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK
        self.owner: Owner | None = None

    @property
    def held(self) -> bool:
        return self.owner is not None

    def _create(self, me: Owner) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(me.text())
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def __enter__(self) -> "Lock":
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        me = Owner.me()
        with _guard(folder) as guarded:
            if self._create(me):
                self.owner = me
                return self
            try:
                text = self.path.read_text()
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:  # released between our attempt and now (only without flock)
                text, age = None, 0.0
            owner = Owner.parse(text) if text is not None else None
            if text is not None and owner is None:
                # unreadable: under the guard, the writer died before writing; without it, give a writer time
                stale = guarded or age > EMPTY_GRACE
            else:
                stale = owner is None or owner.gone()
            if not stale:
                held_by = owner.describe() if owner else "another process"
                if owner and owner.pid == os.getpid() and owner.on_this_host():
                    held_by += " (this process)"
                remedy = ("wait for it to finish" if owner is None or owner.on_this_host() else
                          f"pbrsim cannot check processes on {owner.host}: wait for that batch to finish")
                raise LockError(f"another pbrsim batch ({held_by}) is writing to {folder}; {remedy}, or delete "
                                f"{self.path} if that process is not a running pbrsim batch")
            if text is not None:
                self.path.unlink(missing_ok=True)
            if self._create(me):
                self.owner = me
                return self
        raise LockError(f"cannot lock {folder}: another process took the lock at the same moment; try again")

    def __exit__(self, *exc) -> None:
        if self.owner is None:
            return
        with _guard(self.path.parent):
            try:
                mine = Owner.parse(self.path.read_text())
            except FileNotFoundError:
                mine = None
            if mine is not None and mine.token == self.owner.token:
                self.path.unlink(missing_ok=True)
        self.owner = None
