"""Scratch folders in the system temporary folder, removed by the next pbrsim process if their own was killed.

``make(prefix)`` creates ``<prefix><pid>-<random>`` and holds an exclusive ``flock`` on a file inside it
for as long as this process lives; the kernel drops that lock when the process ends, however it ends.
``remove_stale(prefix)`` removes this user's folders of that exact shape whose lock it can take: their
process is gone. (Where ``flock`` is missing, the pid in the name is checked instead.) A folder in use is
never removed, even by a process in another pid namespace sharing the temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from .lock import process_running

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

OWNER = ".pbrsim-owner"
_HELD: dict[str, int] = {}  # folder -> descriptor holding its lock


def _take(folder: Path) -> int | None:
    """A descriptor holding the folder's owner lock, or None if another process holds it (or it cannot be locked)."""
    if fcntl is None:
        return None
    try:
        fd = os.open(folder / OWNER, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_stale(prefix: str) -> list[Path]:
    """Remove ``<prefix><pid>-*`` folders of this user whose process has ended; returns those removed."""
    shape = re.compile(re.escape(prefix) + r"(\d+)-[A-Za-z0-9_]+")
    removed = []
    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return removed
    for entry in entries:
        m = shape.fullmatch(entry.name)
        if not m or entry.path in _HELD:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not entry.is_dir(follow_symlinks=False) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
                continue
        except OSError:
            continue
        folder = Path(entry.path)
        if fcntl is not None and (folder / OWNER).exists():
            fd = _take(folder)
            if fd is None:
                continue  # its process is alive
            try:
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                os.close(fd)
        elif int(m[1]) != os.getpid() and not process_running(int(m[1])):
            shutil.rmtree(folder, ignore_errors=True)
        else:
            continue
        removed.append(folder)
    return removed


def make(prefix: str) -> Path:
    """A new scratch folder ``<prefix><this pid>-<random>``, held until ``release`` or the end of this process
    (stale ones of the same prefix are removed first)."""
    remove_stale(prefix)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    fd = _take(folder)
    if fd is not None:
        _HELD[str(folder)] = fd
    return folder


def release(folder: Path) -> None:
    """Remove a folder made by ``make`` and drop its lock."""
    shutil.rmtree(folder, ignore_errors=True)
    fd = _HELD.pop(str(folder), None)
    if fd is not None:
        os.close(fd)
