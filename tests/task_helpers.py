"""Tasks for executor tests that must be importable by worker processes: some kill their own worker."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def square_or_die_once(arg: tuple[str, int, int]) -> int:
    """``i * i``; but the first time task ``victim`` runs (a marker file remembers), its worker is killed."""
    folder, i, victim = arg
    if i == victim:
        try:
            os.close(os.open(Path(folder) / f"died-{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return i * i
        os.kill(os.getpid(), signal.SIGKILL)
    return i * i


def square_or_always_die(arg: tuple[int, int]) -> int:
    """``i * i``, except task ``victim``, which kills its worker every time it runs."""
    i, victim = arg
    if i == victim:
        os.kill(os.getpid(), signal.SIGKILL)
    return i * i
