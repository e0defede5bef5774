"""Scratch folders in the system temporary folder, named after the process that made them.

A folder ``<prefix><pid>-<random>`` is removed when its process ends normally; if the process is killed,
the next pbrsim process that makes one with the same prefix removes it — only when it belongs to this
user, that pid no longer runs, and the name has the exact shape pbrsim gives it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from .lock import process_running


def remove_stale(prefix: str) -> list[Path]:
    """Remove ``<prefix><pid>-*`` folders of this user whose process no longer runs; returns those removed."""
    shape = re.compile(re.escape(prefix) + r"(\d+)-[A-Za-z0-9_]+")
    removed = []
    root = Path(tempfile.gettempdir())
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        m = shape.fullmatch(entry.name)
        if not m:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        mine = entry.is_dir(follow_symlinks=False) and (not hasattr(os, "getuid") or st.st_uid == os.getuid())
        pid = int(m[1])
        if mine and pid != os.getpid() and not process_running(pid):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def make(prefix: str) -> Path:
    """A new scratch folder ``<prefix><this pid>-<random>`` (stale ones of the same prefix are removed first)."""
    remove_stale(prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
