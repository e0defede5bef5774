"""The batch lock is exclusive under a real race (processes and threads taking it at the same instant), a
stale lock is taken over only when its owner is certainly gone, and a lock from another host is never."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pbrsim.experiments.lock import LOCK, Lock, LockError, Owner

TRIALS = 100
PROCESSES = 3
THREADS = 2


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _contend(folders: list[str], barrier, results) -> None:
    """In one process: THREADS threads take each folder's lock at the same instant; report who held it."""
    held = {i: 0 for i in range(len(folders))}
    count = threading.Lock()

    def thread():
        for i, folder in enumerate(folders):
            lock = Lock(Path(folder))
            barrier.wait()
            try:
                lock.__enter__()
            except LockError:
                pass
            else:
                with count:
                    held[i] += 1
            barrier.wait()  # everyone has tried while the winner still holds it
            lock.__exit__(None, None, None)

    threads = [threading.Thread(target=thread) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(held)


def test_exactly_one_holder_in_every_trial_of_a_race(tmp_path):
    """100 trials, each: 3 processes x 2 threads take one folder's lock at once. Every third folder starts with a
    stale lock of a dead process (JSON or the bare pid of older versions), so that taking over races too."""
    dead = _dead_pid()
    folders = []
    for i in range(TRIALS):
        folder = tmp_path / f"trial{i:03d}"
        folder.mkdir()
        if i % 3 == 1:
            (folder / LOCK).write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
        elif i % 3 == 2:
            (folder / LOCK).write_text(str(dead))
        folders.append(str(folder))
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCESSES * THREADS, timeout=60)
    results = ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(folders, barrier, results)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    held = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    per_trial = [sum(h[i] for h in held) for i in range(TRIALS)]
    assert per_trial == [1] * TRIALS, [i for i, n in enumerate(per_trial) if n != 1]
    assert not any((Path(f) / LOCK).exists() for f in folders)  # every winner released its lock


def test_lock_records_its_owner_and_refuses_a_second_taker(tmp_path):
    with Lock(tmp_path) as lock:
        owner = Owner.parse((tmp_path / LOCK).read_text())
        assert owner.pid == os.getpid() and owner.host == socket.gethostname() and owner.token == lock.owner.token
        with pytest.raises(LockError, match=f"another pbrsim batch \\(process {os.getpid()}, since .* \\(this process\\)\\)"):
            Lock(tmp_path).__enter__()
    assert not (tmp_path / LOCK).exists()


def test_a_reused_pid_or_a_reboot_makes_a_lock_stale(tmp_path):
    me = Owner.me()
    # this very pid, but a process that started at another time: the pid was reused
    reused = Owner(me.pid, me.host, me.boot_id, (me.started or 0) + 1, "x")
    rebooted = Owner(me.pid, me.host, "another-boot", me.started, "y")
    for stale in ([reused] if me.started is not None else []) + ([rebooted] if me.boot_id else []):
        (tmp_path / LOCK).write_text(stale.text())
        with Lock(tmp_path) as lock:
            assert Owner.parse((tmp_path / LOCK).read_text()).token == lock.owner.token


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    (tmp_path / LOCK).write_text(Owner(_dead_pid(), "elsewhere.example", None, None, "z", "2026-01-01T00:00:00+00:00").text())
    with pytest.raises(LockError) as exc:
        Lock(tmp_path).__enter__()
    text = str(exc.value)
    assert "process" in text and "on host elsewhere.example" in text and "cannot check processes on elsewhere.example" in text
    assert str(tmp_path / LOCK) in text  # says which file to delete once that batch is known to be gone
    assert Owner.parse((tmp_path / LOCK).read_text()).host == "elsewhere.example"


def test_an_empty_lock_left_by_a_process_killed_while_creating_it_is_stale(tmp_path):
    (tmp_path / LOCK).write_text("")
    with Lock(tmp_path):
        pass
    assert not (tmp_path / LOCK).exists()
