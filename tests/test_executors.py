"""Executors give identical data (serial, process pools of any size, a real Dask LocalCluster); batches are
bounded in memory, survive being killed or interrupted, and refuse a changed experiment."""

from __future__ import annotations

import dataclasses
import json
import operator
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from pbrsim.experiments.batch import ChangedExperiment, Task, run_batch
from pbrsim.cli.main import main
from pbrsim.experiments.dataset import LOCK, DatasetError, finished_runs
from pbrsim.experiments.executors import run_tasks
from pbrsim.experiments.experiment import load_experiment

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
    keys = {Task(experiment.name, x.name, x.fingerprint, x.raw, 11, r, None).key for x in d for r in range(3)}
    again = {Task(experiment.name, x.name, x.fingerprint, x.raw, 11, r, None).key for x in d for r in range(3)}
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
    deadline = time.monotonic() + 60
    marker = out / "runs" / "replications"
    while time.monotonic() < deadline and proc.poll() is None:
        if marker.is_dir() and sum(1 for _ in marker.rglob("part-0.parquet")) >= 6:
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
    """A run killed between moving its files (clients written, replications marker not) is redone from scratch."""
    path, reference = kill_experiment
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    exp = load_experiment(path)
    marker = out / "runs" / "replications" / "design=blended" / "rep=00003" / "part-0.parquet"
    clients = out / "runs" / "clients" / "design=blended" / "rep=00003" / "part-0.parquet"
    marker.unlink()
    clients.write_bytes(b"half-written")
    stray = out / "runs" / ".tmp" / "ledger-blended-7-x.parquet"
    stray.parent.mkdir()
    stray.write_bytes(b"junk")
    manifest = run_batch(exp, out, executor="serial")
    assert manifest["sessions"][-1]["runs_run"] == 1
    assert_same_data(reference, out)


# ---------------------------------------------------------------------------------------------
# Changed experiments


def test_changed_experiment_is_refused_unless_forced_and_force_keeps_valid_runs(tmp_path):
    path = write_experiment(tmp_path, "exp", 3)
    data = yaml.safe_load(path.read_text())
    out = tmp_path / "out"
    run_batch(load_experiment(path), out, executor="serial")
    blended = {p: p.stat().st_mtime_ns for p in out.rglob("design=blended/*/part-0.parquet")}
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
