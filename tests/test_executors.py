"""Executors give identical data (serial, process pools of any size, a real Dask LocalCluster, any chunk size);
batches are bounded in memory, survive being killed or interrupted and workers dying, leave no process or
temporary file behind, refuse a changed experiment, and refuse in one line a Dask address that is not a scheduler."""

from __future__ import annotations

import dataclasses
import http.server
import json
import operator
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from pbrsim.experiments.batch import ChangedExperiment, Task, plan_chunks, run_batch
from pbrsim.cli.main import main
from pbrsim.experiments.dataset import LOCK, DatasetError, finished_runs, read_table
from pbrsim.experiments.executors import SchedulerUnreachable, WorkerLost, probe_scheduler, run_tasks
from pbrsim.experiments.experiment import load_experiment

from . import task_helpers

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "tests" / "fixtures" / "experiments" / "small.yaml"


def parquet_files(out: Path) -> list[Path]:
    return sorted(p.relative_to(out) for p in (out / "runs").rglob("*.parquet"))


def assert_same_data(a: Path, b: Path):
    """Same files, and in each the same data, schema and metadata (no timestamps anywhere)."""
    files = parquet_files(a)
    assert files == parquet_files(b)
    for f in files:
        ta, tb = pq.read_table(a / f), pq.read_table(b / f)
        assert ta.equals(tb, check_metadata=True), f


def assert_same_rows(a: Path, b: Path):
    """Same rows in every table, whatever the chunks they were written in."""
    for table in sorted(p.name for p in (a / "runs").iterdir() if not p.name.startswith(".")):
        pd.testing.assert_frame_equal(read_table(a, table), read_table(b, table), check_exact=True, obj=table)


def write_experiment(folder: Path, name: str, replications: int) -> Path:
    """The small fixture experiment cut to its first two designs (blended and outcomes-only), in a file of its own."""
    data = yaml.safe_load(SMALL.read_text())
    data.update(name=name, replications=replications, base=str(SMALL.parent.parent / "valid_small.yaml"))
    data["designs"] = data["designs"][:2]
    del data["sweeps"]
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Two designs x 4 replications, every table."""
    return load_experiment(write_experiment(tmp_path_factory.mktemp("exp"), "two", 4))


@pytest.fixture(scope="module")
def serial(experiment, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "two"
    run_batch(experiment, out, executor="serial")
    return out


def test_serial_dataset_is_complete(serial, experiment):
    assert finished_runs(serial) == {"blended": set(range(4)), "outcomes_only": set(range(4))}
    assert len(parquet_files(serial)) == 2 * 4 * 7  # designs x replications x tables


@pytest.mark.parametrize("workers", [1, 3])
def test_process_pools_of_any_size_write_identical_data(serial, experiment, tmp_path, workers):
    out = tmp_path / "pool"
    run_batch(experiment, out, executor="process", workers=workers)
    assert_same_data(serial, out)


def test_dask_local_cluster_writes_identical_data(serial, experiment, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        out = tmp_path / "dask"
        # through the command line, as a user with a running cluster would
        r = CliRunner().invoke(main, ["batch", str(experiment.path), "--out", str(out), "--executor", "dask",
                                      "--scheduler", cluster.scheduler_address, "--quiet"])
        assert r.exit_code == 0, r.output
        man = json.loads((out / "manifest.json").read_text())
        assert man["sessions"][-1]["executor"] == "dask" and man["sessions"][-1]["scheduler"] == cluster.scheduler_address
        assert_same_data(serial, out)
        # and through the Python API with a client
        with distributed.Client(cluster) as client:
            api = tmp_path / "dask_api"
            run_batch(experiment, api, executor="dask", scheduler=client)
            assert_same_data(serial, api)


def test_task_keys_are_deterministic_and_distinct(experiment):
    d = experiment.designs
    chunks = [range(0, 1), range(1, 3), range(0, 3)]
    keys = {Task(experiment.name, x.name, x.fingerprint, x.raw, 11, r, None).key for x in d for r in chunks}
    again = {Task(experiment.name, x.name, x.fingerprint, x.raw, 11, r, None).key for x in d for r in chunks}
    assert keys == again and len(keys) == 6


def test_at_most_window_tasks_are_in_flight():
    """The driver never holds more than `window` tasks or results: memory stays bounded however many tasks."""
    pulled = 0
    ahead = []

    def tasks():
        nonlocal pulled
        for i in range(60):
            pulled += 1
            yield i

    got = []
    for task, result in run_tasks(operator.neg, tasks(), executor="process", workers=2, window=4):
        ahead.append(pulled - len(got))
        got.append((task, result))
    assert sorted(got) == [(i, -i) for i in range(60)]
    assert max(ahead) <= 4


# ---------------------------------------------------------------------------------------------
# Interruptions and resuming


@pytest.fixture(scope="module")
def kill_experiment(tmp_path_factory):
    """Two designs x 16 replications, and the dataset of an uninterrupted run of it."""
    folder = tmp_path_factory.mktemp("killexp")
    path = write_experiment(folder, "killable", 16)
    reference = folder / "reference"
    run_batch(load_experiment(path), reference, executor="process", workers=2)
    return path, reference


def _start_and_stop(path: Path, out: Path, sig: int) -> subprocess.Popen:
    """Start `pbrsim batch` in its own process group and send ``sig`` to the group once some runs are on disk."""
    code = "import sys; from pbrsim.cli.main import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, "batch", str(path), "--out", str(out), "--workers", "2", "--quiet"],
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240  # generous: a loaded machine starts processes slowly
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(len(v) for v in finished_runs(out).values()) >= 6:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the batch finished before it could be interrupted"
    os.killpg(proc.pid, sig)
    proc.wait(timeout=60)
    return proc


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_or_interrupted_batch_resumes_to_the_uninterrupted_result(kill_experiment, tmp_path, sig):
    path, reference = kill_experiment
    out = tmp_path / "out"
    proc = _start_and_stop(path, out, sig)
    done = finished_runs(out)
    n_done = sum(len(v) for v in done.values())
    assert 6 <= n_done < 32
    man = json.loads((out / "manifest.json").read_text())
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert "Run the same command again" in " ".join(proc.stderr.read().decode().split())
        assert man["status"] == "interrupted" and man["runs"]["done"] == n_done
        assert not (out / LOCK).exists()
    else:
        assert proc.returncode == -signal.SIGKILL
        assert man["status"] == "running"  # it never got the chance to say otherwise

    r = CliRunner().invoke(main, ["batch", str(path), "--out", str(out), "--workers", "2"])
    assert r.exit_code == 0, r.output
    assert f"{32 - n_done} run now, {n_done} already done" in r.output
    # nothing missing, nothing duplicated, nothing left over, and the same data as a run never interrupted
    assert_same_data(reference, out)
    assert not (out / "runs" / ".tmp").exists() and not (out / LOCK).exists()
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and man["runs"] == {"total": 32, "done": 32}
    assert [s["status"] for s in man["sessions"]] == ["interrupted" if sig == signal.SIGINT else "running", "complete"]


def test_partial_runs_are_cleaned_before_resuming(kill_experiment, tmp_path):
    """A chunk killed between moving its files (clients written, replications marker not) is redone from scratch."""
    path, reference = kill_experiment
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    exp = load_experiment(path)
    assert json.loads((out / "manifest.json").read_text())["chunk"] == 2  # 16 replications: chunks of 2
    marker = out / "runs" / "replications" / "design=blended" / "reps-00002-00003.parquet"
    clients = out / "runs" / "clients" / "design=blended" / "reps-00002-00003.parquet"
    marker.unlink()
    clients.write_bytes(b"half-written")
    stray = out / "runs" / ".tmp" / "ledger-blended-7-x.parquet"
    stray.parent.mkdir()
    stray.write_bytes(b"junk")
    manifest = run_batch(exp, out, executor="serial")
    assert manifest["sessions"][-1]["runs_run"] == 2
    assert_same_data(reference, out)


# ---------------------------------------------------------------------------------------------
# Changed experiments


def test_changed_experiment_is_refused_unless_forced_and_force_keeps_valid_runs(tmp_path):
    path = write_experiment(tmp_path, "exp", 3)
    data = yaml.safe_load(path.read_text())
    out = tmp_path / "out"
    run_batch(load_experiment(path), out, executor="serial")
    blended = {p: p.stat().st_mtime_ns for p in out.rglob("design=blended/*.parquet")}
    assert len(blended) == 3 * 7

    data["designs"][1]["set"]["contract.payments[name=sustained_job].tariff"] = 3500
    data["replications"] = 4
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    r = CliRunner().invoke(main, ["batch", str(path), "--out", str(out), "--executor", "serial"])
    assert r.exit_code == 2
    text = " ".join(r.output.split())
    assert "holds runs of a different version of this experiment" in text
    assert "designs whose scenario, seed, tables or pbrsim version changed: outcomes_only" in text
    assert "replications 3 → 4" in text and "--force" in text
    with pytest.raises(ChangedExperiment):
        run_batch(load_experiment(path), out, executor="serial")

    r = CliRunner().invoke(main, ["batch", str(path), "--out", str(out), "--executor", "serial", "--force"])
    assert r.exit_code == 0, r.output
    assert "5 run now, 3 already done" in r.output  # blended rep 3 and outcomes_only reps 0-3
    assert all(p.stat().st_mtime_ns == t for p, t in blended.items())  # unchanged design: its runs were kept
    fresh = tmp_path / "fresh"
    run_batch(load_experiment(path), fresh, executor="serial")
    assert_same_data(fresh, out)


def test_a_folder_that_is_not_a_dataset_is_never_written(experiment, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="is not a pbrsim experiment dataset"):
        run_batch(experiment, tmp_path, executor="serial")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_live_batch_locks_its_folder(experiment, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (out / LOCK).write_text(str(sleeper.pid))
        with pytest.raises(DatasetError, match=f"another pbrsim batch \\(process {sleeper.pid}\\)"):
            run_batch(experiment, out, executor="serial")
    finally:
        sleeper.kill()
        sleeper.wait()
    # a lock left by a process that no longer runs is taken over
    exp = dataclasses.replace(experiment, replications=1)
    run_batch(exp, out, executor="serial")
    assert not (out / LOCK).exists()


# ---------------------------------------------------------------------------------------------
# Chunks


def test_chunk_size_and_worker_count_never_change_the_data(serial, experiment, tmp_path):
    """Replications 0-3 in chunks of 1 (serial), of 3 on two workers and of 4 in one task: the same rows in every table."""
    assert json.loads((serial / "manifest.json").read_text())["chunk"] == 1
    for chunk, workers in ((3, 2), (4, 1)):
        out = tmp_path / f"chunk{chunk}"
        run_batch(experiment, out, executor="process", workers=workers, chunk=chunk)
        assert len(parquet_files(out)) == 2 * (4 // chunk + (4 % chunk > 0)) * 7
        for table in ("clients", "ledger", "monthly", "claims", "settlements", "failures", "replications"):
            a, b = read_table(serial, table), read_table(out, table)
            assert len(a) > 0 or table == "failures"
            pd.testing.assert_frame_equal(a, b, check_exact=True, obj=f"{table} (chunk {chunk})")
        # and read as one table by pandas, as the docs show
        runs = pd.read_parquet(out / "runs" / "replications")
        assert sorted(zip(runs.design, runs.replication)) == [(d, r) for d in ("blended", "outcomes_only") for r in range(4)]


def test_plan_chunks_covers_exactly_the_missing_replications():
    assert plan_chunks(10, set(), 4) == [range(0, 4), range(4, 8), range(8, 10)]
    assert plan_chunks(10, {1, 2, 5, 9}, 4) == [range(0, 1), range(3, 4), range(4, 5), range(6, 8), range(8, 9)]
    assert plan_chunks(3, {0, 1, 2}, 2) == []


# ---------------------------------------------------------------------------------------------
# Workers that die, drivers that are killed


def test_a_killed_worker_is_replaced_and_its_tasks_rerun(tmp_path):
    """Task 4's worker is killed the first time it runs it (SIGKILL from inside): every task still gives its result, once."""
    tasks = [(str(tmp_path), i, 4) for i in range(12)]
    got = [(t[1], r) for t, r in run_tasks(task_helpers.square_or_die_once, tasks, executor="process", workers=2)]
    assert sorted(got) == [(i, i * i) for i in range(12)]
    assert (tmp_path / "died-4").exists()


def test_a_task_that_always_kills_its_worker_stops_with_worker_lost():
    got = []
    with pytest.raises(WorkerLost, match=r"a worker process died 3 times while running \(5, 5\)"):
        for t, r in run_tasks(task_helpers.square_or_always_die, [(i, 5) for i in range(8)], executor="process",
                              workers=2, window=2):
            got.append(t[0])
    assert 5 not in got


def _session(sid: int) -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line) of the live processes in session ``sid`` (Linux /proc)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rpartition(")")[2].split()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            found.append((int(d.name), int(fields[1]), cmd))
    return found


def _batch(path: Path, out: Path, *extra: str) -> subprocess.Popen:
    code = "import sys; from pbrsim.cli.main import main; sys.exit(main())"
    return subprocess.Popen([sys.executable, "-c", code, "batch", str(path), "--out", str(out), "--workers", "2", "--quiet",
                             *extra], start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_runs(proc: subprocess.Popen, out: Path, n: int) -> None:
    deadline = time.monotonic() + 240  # generous: a loaded machine starts processes slowly
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(len(v) for v in finished_runs(out).values()) >= n:
            return
        time.sleep(0.01)
    assert proc.poll() is None, "the batch finished before it could be interrupted"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_driver_leaves_no_process_and_the_next_command_no_temporaries(kill_experiment, tmp_path):
    path, reference = kill_experiment
    out = tmp_path / "out"
    proc = _batch(path, out)
    _wait_for_runs(proc, out, 6)
    helpers = [p for p in _session(proc.pid) if p[0] != proc.pid]
    assert any("forkserver" in cmd for _, _, cmd in helpers) and any("resource_tracker" in cmd for _, _, cmd in helpers)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only, not its process group
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while _session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session(proc.pid) == []  # workers, fork server and resource tracker all gone
    assert (out / "runs" / ".tmp").is_dir() and (out / LOCK).exists()  # what the killed batch left behind

    r = CliRunner().invoke(main, ["batch", str(path), "--out", str(out), "--workers", "2"])
    assert r.exit_code == 0, r.output
    assert_same_data(reference, out)
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []  # no runs/.tmp, no .pbrsim-tmp-* files, no lock


def _workers_of(sid: int) -> list[int]:
    procs = _session(sid)
    servers = {pid for pid, _, cmd in procs if "forkserver" in cmd and pid != sid}
    return [pid for pid, ppid, _ in procs if ppid in servers]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_batch_whose_workers_keep_dying_stops_in_one_line_and_resumes(kill_experiment, tmp_path):
    """Workers killed from outside as soon as they appear: each lost task is retried twice, then the batch stops
    (exit 1, one line saying how to resume); the next run finishes it with the data of an undisturbed run.
    (A worker killed once is replaced and its task rerun: test_a_killed_worker_is_replaced_and_its_tasks_rerun.)"""
    path, reference = kill_experiment
    out2 = tmp_path / "out"
    proc = _batch(path, out2, "--chunk", "1")
    _wait_for_runs(proc, out2, 2)
    while proc.poll() is None:
        for pid in _workers_of(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)
    err = proc.stderr.read().decode()
    assert proc.returncode == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    text = " ".join(err.split())
    assert "stopped: a worker process died 3 times while running pbrsim-run-" in text
    assert "run the same command again to finish the rest" in text
    done = sum(len(v) for v in finished_runs(out2).values())
    assert f"{done} of 32 runs are saved in {out2}" in text
    assert json.loads((out2 / "manifest.json").read_text())["status"] == "interrupted"
    r = CliRunner().invoke(main, ["batch", str(path), "--out", str(out2), "--workers", "2", "--chunk", "1"])
    assert r.exit_code == 0, r.output
    assert f"{32 - done} run now, {done} already done" in r.output
    assert_same_rows(reference, out2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_compare_removes_the_temporary_folders_of_a_killed_compare(tmp_path):
    """A compare killed with SIGKILL leaves its dataset folder and multiprocessing's folder in the temporary
    folder; the next compare (here a serial one of another experiment) removes both, and nothing else."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    code = "import sys; from pbrsim.cli.main import main; sys.exit(main())"
    long = write_experiment(tmp_path, "long", 400)
    proc = subprocess.Popen([sys.executable, "-c", code, "compare", str(long), "--workers", "2", "--quiet", "--chunk", "1"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240  # generous: a loaded machine starts processes slowly
    while time.monotonic() < deadline and not list(tmp_path.glob("pbrsim-compare-*/long/runs/replications/*/*")):
        time.sleep(0.01)
    assert proc.poll() is None, "the compare ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(list(tmp_path.glob("pbrsim-compare-*"))) == 1 and len(list(tmp_path.glob("pbrsim-mp-*"))) == 1
    (tmp_path / "notes").mkdir()  # a folder of someone else's beside them is never touched
    short = write_experiment(tmp_path, "short", 1)
    done = subprocess.run([sys.executable, "-c", code, "compare", str(short), "--executor", "serial", "--quiet"],
                          env=env, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.yaml", "notes", "short.yaml"]


# ---------------------------------------------------------------------------------------------
# Dask schedulers that are not there, or are not schedulers


class _Silent(threading.Thread):
    """A TCP listener that accepts connections and never says anything."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.first_contact = None

    def run(self):
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return
            self.first_contact = self.first_contact or time.monotonic()


class _Web(http.server.ThreadingHTTPServer):
    """A real HTTP server (Python's own), noting when it is first contacted."""

    first_contact = None

    def verify_request(self, request, client_address):
        self.first_contact = self.first_contact or time.monotonic()
        return True


def test_dask_scheduler_addresses_that_are_not_schedulers_fail_in_one_line_within_15_s(serial, experiment, tmp_path):
    """A silent listener and a web server (real sockets, the real command and dask client): exit 2 within 15 s of
    first contacting the address, with the default timeout, in one line, and the dataset in --out left exactly as
    it was. (Measured from the first contact, so that a loaded machine's slow interpreter start does not count.)"""
    pytest.importorskip("distributed")
    silent = _Silent()
    silent.start()
    web = _Web(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    code = "import sys; from pbrsim.cli.main import main; sys.exit(main())"
    procs, outs = {}, {}
    try:
        for name, port in (("silent", silent.port), ("web", web.server_address[1])):
            outs[name] = tmp_path / name
            shutil.copytree(serial, outs[name])
            procs[name] = subprocess.Popen(
                [sys.executable, "-c", code, "batch", str(experiment.path), "--out", str(outs[name]), "--executor", "dask",
                 "--scheduler", f"tcp://127.0.0.1:{port}", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for name, proc in procs.items():
            proc.wait(timeout=120)
            contact = silent.first_contact if name == "silent" else web.first_contact
            elapsed = time.monotonic() - contact
            err = proc.stderr.read().decode()
            assert proc.returncode == 2 and elapsed < 15, (name, proc.returncode, elapsed, err)
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
            text = " ".join(err.split())
            assert f"tcp://127.0.0.1:{silent.port if name == 'silent' else web.server_address[1]}" in text
            assert "accepts connections but sent no Dask handshake within 10 s: it is not a Dask scheduler" in text
            assert "--connect-timeout" in text
            assert_same_data(serial, outs[name])
            assert (outs[name] / "manifest.json").read_bytes() == (serial / "manifest.json").read_bytes()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        web.shutdown()
        silent.sock.close()


def test_a_refused_or_portless_scheduler_address_is_one_line_exit_2_and_writes_nothing(experiment, tmp_path):
    pytest.importorskip("distributed")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    for address, phrase in ((f"tcp://127.0.0.1:{port}", "cannot connect to the Dask scheduler"),
                            ("tcp://127.0.0.1", "missing port number")):
        out = tmp_path / "out"
        r = CliRunner().invoke(main, ["batch", str(experiment.path), "--out", str(out), "--executor", "dask",
                                      "--scheduler", address, "--connect-timeout", "2", "--quiet"])
        assert r.exit_code == 2 and phrase in " ".join(r.output.split()), r.output
        assert not out.exists()


def test_a_dask_server_that_closes_or_speaks_another_protocol_is_recognised():
    """What a Dask scheduler sends first is checked: an SSH-like banner or a closed connection is not a handshake."""
    pytest.importorskip("distributed")
    for banner in (b"SSH-2.0-OpenSSH_9.6\r\n", b""):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def answer(srv=srv, banner=banner):
            conn, _ = srv.accept()
            conn.sendall(banner)
            conn.close()

        threading.Thread(target=answer, daemon=True).start()
        with pytest.raises(SchedulerUnreachable) as exc:
            probe_scheduler(f"tcp://127.0.0.1:{srv.getsockname()[1]}", timeout=5)
        assert ("not the Dask protocol" if banner else "closed it without a Dask handshake") in str(exc.value)
        srv.close()


def test_a_dask_cluster_lost_mid_batch_stops_in_one_line_and_the_batch_resumes(kill_experiment, tmp_path):
    distributed = pytest.importorskip("distributed")
    path, reference = kill_experiment
    out = tmp_path / "out"
    # a scheduler in this process on TCP, so the batch's own process can reach it (inproc addresses cannot be)
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                                       dashboard_address=None)
    try:
        proc = _batch(path, out, "--executor", "dask", "--scheduler", cluster.scheduler_address, "--chunk", "1")
        _wait_for_runs(proc, out, 2)
    finally:
        cluster.close()
    proc.wait(timeout=60)
    err = proc.stderr.read().decode()
    assert proc.returncode == 1, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    text = " ".join(err.split())
    assert f"stopped: {cluster.scheduler_address} failed while running pbrsim-run-" in text
    assert "run the same command again to finish the rest" in text
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    r = CliRunner().invoke(main, ["batch", str(path), "--out", str(out), "--workers", "2", "--chunk", "1"])
    assert r.exit_code == 0, r.output
    assert_same_rows(reference, out)
