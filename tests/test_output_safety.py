"""The output rule (docs/outputs.md): pbrsim never deletes or overwrites a file it did not write.

Checked on the file system, command by command: refusal of a folder holding other files, --overwrite
keeping them, re-runs replacing only pbrsim's own files, hostile names staying under the output root,
`kill -9` during a write, a full disk, and the permissions results get.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pbrsim.cli.main import main
from pbrsim.store import (
    KIND_RUN,
    KIND_STRESS,
    MANIFEST,
    TEMP_MARKER,
    TEMP_PREFIX,
    OutputRefused,
    _host,
    output_path,
    remove_stale_temporaries,
    safe_name,
    write_folder,
)

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
SMALL = FIX / "valid_small.yaml"
INDIGO = FIX / "indigo"
INDIGO_PROJECT = "INDIGO-POJ-9901"
CALIBRATE_SCENARIO = FIX / "calibrate" / "scenario.yaml"
TARGETS = {
    "parameters": [{"name": "easy_find", "paths": ["pathway.transitions.easy.full.engaged.job"], "balance": "engaged"}],
    "targets": [{"name": "easy job 6", "segment": "easy", "state": "job", "within_months": 6, "rate": 0.58, "tolerance": 0.01}],
}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def tree(path: Path) -> dict:
    """Everything under ``path``: each entry's kind, permission bits and (for files) bytes."""
    out = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        st = p.lstat()
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", st.st_mode & 0o777)
        else:
            out[rel] = ("file", st.st_mode & 0o777, p.read_bytes())
    return out


def foreign(folder: Path) -> dict:
    """A folder of the user's own files (a note, a hidden file, a sub-folder, a chart); returns its tree."""
    (folder / "data").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes\n")
    (folder / ".keep").write_bytes(b"\x00\x01")
    (folder / "data" / "survey.csv").write_text("a,b\n1,2\n")
    (folder / "chart.png").write_bytes(b"not a pbrsim chart")
    return tree(folder)


def one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def pbrsim_temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX) or p.name == TEMP_MARKER]


def exact_scenario(tmp_path: Path) -> Path:
    """The small scenario with nothing that keeps exact mode from applying (no capacity, cap or interest)."""
    d = yaml.safe_load(SMALL.read_text())
    d["provider"]["capacity"] = None
    d["provider"]["credit"] = {"limit": None, "monthly_interest": 0}
    d["contract"].pop("cap", None)
    path = tmp_path / "exact.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("safety") / "run"
    r = invoke("run", SMALL, "-n", 2, "--quiet", "--out", out)
    assert r.exit_code == 0, r.output
    return out


def tiny_experiment(tmp_path: Path) -> Path:
    """Two designs of the small scenario, two replications each: a batch in a second or two."""
    path = tmp_path / "tiny_experiment.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "base": str(SMALL), "seed": 3, "replications": 2,
        "designs": [{"name": "blended", "baseline": True},
                    {"name": "outcomes_only", "remove": ["contract.service_fee"]}]}, sort_keys=False))
    return path


def targets_file(tmp_path: Path) -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(yaml.safe_dump(TARGETS, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------
# A folder (or file) holding the user's files is refused, by every command that writes


FOLDER_COMMANDS = {
    "run": lambda out, tmp, run_dir: ["run", SMALL, "-n", 2, "--quiet", "--out", out],
    "run --method exact": lambda out, tmp, run_dir: ["run", exact_scenario(tmp), "--method", "exact", "--quiet", "--out", out],
    "run --report": lambda out, tmp, run_dir: ["run", SMALL, "-n", 2, "--quiet", "--report", "--out", out],
    "stress": lambda out, tmp, run_dir: ["stress", SMALL, "-n", 2, "--only", "delay_3", "--executor", "serial", "--quiet", "--out", out],
    "compare": lambda out, tmp, run_dir: ["compare", tiny_experiment(tmp), "--executor", "serial", "--quiet", "--out", out],
    "batch": lambda out, tmp, run_dir: ["batch", tiny_experiment(tmp), "--executor", "serial", "--quiet", "--out", out],
    "report": lambda out, tmp, run_dir: ["report", run_dir, "--out", out, "--quiet"],
    "design": lambda out, tmp, run_dir: ["design", SMALL, "--lever", "contract.service_fee.share_of_value", "--target",
                                         "failure(small_charity) <= 0.5", "--range", 0, 0.4, "--step", 0.2, "-n", 10,
                                         "--verify-replications", 10, "--executor", "serial", "--quiet", "--out", out],
}


@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_a_folder_of_other_files_is_refused_untouched(command, tmp_path, run_dir):
    out = tmp_path / "mine"
    before = foreign(out)
    r = invoke(*FOLDER_COMMANDS[command](out, tmp_path, run_dir))
    assert r.exit_code == 2, r.output
    line = one_line_error(r)
    assert str(out) in line and "--overwrite" in line and "not written by pbrsim" in line
    assert tree(out) == before


def test_run_report_refuses_a_report_folder_of_other_files_before_running(tmp_path):
    out = tmp_path / "run"
    before = foreign(out / "report")
    r = invoke("run", SMALL, "-n", 2, "--quiet", "--report", "--out", out)
    assert r.exit_code == 2 and "--overwrite" in one_line_error(r)
    assert tree(out) == {"report": ("dir", (out / "report").stat().st_mode & 0o777), **{f"report/{k}": v for k, v in before.items()}}


@pytest.mark.parametrize("command", ["run", "run --method exact", "stress", "batch", "report", "design"])
def test_overwrite_keeps_other_files_and_writes_pbrsims(command, tmp_path, run_dir):
    out = tmp_path / "mine"
    before = foreign(out)
    r = invoke(*FOLDER_COMMANDS[command](out, tmp_path, run_dir), "--overwrite")
    assert r.exit_code == 0, r.output
    after = tree(out)
    assert {k: after.get(k) for k in before} == before  # every file of the user's, byte for byte
    man = json.loads((out / MANIFEST).read_text())
    assert man["package"] == "pbrsim"
    if command == "batch":  # the dataset: its own layout beside the user's files
        assert man["kind"] == "pbrsim-experiment" and (out / "runs" / "replications").is_dir()
        return
    assert set(man["files"]) >= {MANIFEST} and all((out / f).is_file() for f in man["files"])
    new = {k for k in after if k not in before and after[k][0] == "file"}
    assert new == set(man["files"])  # pbrsim wrote exactly the files its manifest lists


def test_overwrite_never_replaces_a_file_pbrsim_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "clients.parquet").write_bytes(b"the user's own file of that name")
    (out / MANIFEST).write_text('{"mine": true}')
    before = tree(out)
    r = invoke("run", SMALL, "-n", 2, "--quiet", "--out", out, "--overwrite")
    assert r.exit_code == 2
    line = one_line_error(r)
    assert "'clients.parquet'" in line and "'manifest.json'" in line and "not written by pbrsim" in line
    assert tree(out) == before


def test_file_commands_refuse_a_file_they_did_not_write(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("# my scenario, not pbrsim's\n")
    tg = targets_file(tmp_path)
    before = tree(tmp_path)
    for args in (["calibrate", CALIBRATE_SCENARIO, tg, "--out", mine],
                 ["import-indigo", INDIGO_PROJECT, "--folder", INDIGO, "--out", mine]):
        r = invoke(*args)
        assert r.exit_code == 2, r.output
        assert "--overwrite" in one_line_error(r)
        assert tree(tmp_path) == before
    r = invoke("calibrate", CALIBRATE_SCENARIO, tg, "--out", mine, "--overwrite")
    assert r.exit_code in (0, 3), r.output
    assert mine.read_text().startswith("# ==== pbrsim calibrate")
    # a file calibrate wrote is its own: calibrating again replaces it without --overwrite
    r = invoke("calibrate", CALIBRATE_SCENARIO, tg, "--out", mine)
    assert r.exit_code in (0, 3), r.output
    assert not pbrsim_temporaries(tmp_path)


def test_summarise_writes_only_into_an_experiment_dataset(run_dir):
    before = tree(run_dir)
    r = invoke("summarise", run_dir)
    assert r.exit_code == 2 and "pbrsim run folder, not a pbrsim experiment dataset" in one_line_error(r)
    assert tree(run_dir) == before


# ---------------------------------------------------------------------------------------------
# Re-running into pbrsim's own folder replaces only pbrsim's own files


def test_rerun_replaces_its_own_files_and_nothing_else(tmp_path):
    out = tmp_path / "run"
    r = invoke("run", SMALL, "-n", 2, "--quiet", "--out", out)
    assert r.exit_code == 0, r.output
    first = set(json.loads((out / MANIFEST).read_text())["files"])
    (out / "notes.txt").write_text("mine\n")
    (out / "report").mkdir()
    (out / "report" / "my_chart.png").write_bytes(b"mine")
    # the same folder, now expected values: the Monte Carlo tables (pbrsim's) go, the user's files stay
    r = invoke("run", exact_scenario(tmp_path), "--method", "exact", "--quiet", "--out", out)
    assert r.exit_code == 0, r.output
    files = set(json.loads((out / MANIFEST).read_text())["files"])
    assert "segments.parquet" in files and "clients.parquet" not in files
    assert {p.name for p in out.iterdir()} == files | {"notes.txt", "report"}
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "report" / "my_chart.png").read_bytes() == b"mine"
    assert first - files and not any((out / f).exists() for f in first - files)


def test_rerun_removes_the_report_of_the_results_it_replaces(tmp_path):
    out = tmp_path / "run"
    write_folder(out, {"replications": pd.DataFrame({"replication": [0]})}, {"note": "first"}, {"package": "pbrsim"})
    report = out / "report"
    from pbrsim.store import KIND_REPORT, write_files
    write_files(report, {"report.html": b"<html>old</html>", "old.png": b"png"}, {"package": "pbrsim"}, kind=KIND_REPORT)
    (report / "mine.txt").write_text("mine\n")
    write_folder(out, {"replications": pd.DataFrame({"replication": [1]})}, {"note": "second"}, {"package": "pbrsim"})
    assert json.loads((out / "summary.json").read_text()) == {"note": "second"}
    assert sorted(p.name for p in report.iterdir()) == ["mine.txt"]  # the stale report's files went, the user's stayed


def test_a_folder_written_by_an_older_pbrsim_is_still_its_own(tmp_path, run_dir):
    out = tmp_path / "old"
    shutil.copytree(run_dir, out)
    man = json.loads((out / MANIFEST).read_text())
    del man["files"], man["kind"]  # manifests of older versions listed no files
    (out / MANIFEST).write_text(json.dumps(man))
    (out / "analysis.parquet").write_bytes(b"the user's own table")
    r = invoke("run", SMALL, "-n", 3, "--quiet", "--out", out)
    assert r.exit_code == 0, r.output
    assert (out / "analysis.parquet").read_bytes() == b"the user's own table"
    assert json.loads((out / "summary.json").read_text())["replications"] == 3


def test_another_kind_of_pbrsim_folder_needs_overwrite(tmp_path):
    out = tmp_path / "stress"
    write_folder(out, {"stresses": pd.DataFrame({"stress": ["base"]})}, {"s": 1}, {"package": "pbrsim"}, kind=KIND_STRESS)
    (out / "notes.txt").write_text("mine\n")
    before = tree(out)
    r = invoke("run", SMALL, "-n", 2, "--quiet", "--out", out)
    assert r.exit_code == 2 and "holds a pbrsim stress-test folder, not a run" in one_line_error(r)
    assert tree(out) == before
    r = invoke("run", SMALL, "-n", 2, "--quiet", "--out", out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert not (out / "stresses.parquet").exists() and (out / "clients.parquet").exists()
    assert (out / "notes.txt").read_text() == "mine\n"
    assert json.loads((out / MANIFEST).read_text())["kind"] == KIND_RUN


# ---------------------------------------------------------------------------------------------
# `--out .`


def test_out_dot_refuses_a_working_folder_of_other_files(tmp_path, monkeypatch):
    work = tmp_path / "work"
    before = foreign(work)
    monkeypatch.chdir(work)
    r = invoke("run", SMALL, "-n", 2, "--quiet", "--out", ".")
    assert r.exit_code == 2 and "--overwrite" in one_line_error(r)
    assert tree(work) == before
    r = invoke("run", SMALL, "-n", 2, "--quiet", "--out", ".", "--overwrite")
    assert r.exit_code == 0, r.output
    after = tree(work)
    assert {k: after[k] for k in before} == before
    assert (work / "clients.parquet").exists() and not pbrsim_temporaries(tmp_path)


def test_out_dot_in_an_empty_folder_writes_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # and again: its own results are replaced
        r = invoke("run", SMALL, "-n", 2, "--quiet", "--out", ".")
        assert r.exit_code == 0, r.output
    assert {p.name for p in tmp_path.iterdir()} == set(json.loads((tmp_path / MANIFEST).read_text())["files"])


# ---------------------------------------------------------------------------------------------
# Names read from files stay under the output root


HOSTILE = ["../x", "../../../escape", "a/../../b", "..", ".", ".hidden", "~", "$HOME", "-rf", "\\..\\..\\win",
           "ｆｕｌｌ／ｗｉｄｔｈ／..／..", "x\u202etxt.exe", "\u200b", "名前/../..", "e\u0301" * 5, "a" * 1000, "é" * 300,
           "line\nbreak", "tab\there"]


@pytest.mark.parametrize("name", HOSTILE + ["<absolute>"])
def test_safe_names_stay_under_the_root(name, tmp_path):
    if name == "<absolute>":
        name = str(tmp_path / "abs" / "dir")
    root = tmp_path / "results"
    slug = safe_name(name)
    assert slug and not slug.startswith(".") and "/" not in slug and "\\" not in slug and slug not in (".", "..")
    assert len(slug.encode()) <= 100 and slug == safe_name(name)
    path = output_path(root, name)
    path.mkdir(parents=True)
    assert path.parent == root and [p.name for p in tmp_path.iterdir()] == ["results"]
    assert [p.name for p in root.iterdir()] == [slug]


def test_long_names_stay_distinct():
    a, b = "x" * 300 + "1", "x" * 300 + "2"
    assert safe_name(a) != safe_name(b) and len(safe_name(a).encode()) <= 100


def test_the_output_root_itself_is_refused():
    with pytest.raises(OutputRefused):
        output_path("results")


def hostile_scenario(tmp_path: Path, name: str, org: str | None = None) -> Path:
    d = yaml.safe_load(SMALL.read_text())
    d["name"] = name
    if org is not None:
        d["provider"]["name"] = org
    path = tmp_path / "in" / "hostile.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(d, allow_unicode=True))
    return path


@pytest.mark.parametrize("name", ["../x", "<absolute>", "a/../../b", "..", ".hidden", "ｆｕｌｌ／..／..", "x\u202e/..", "n" * 400])
def test_a_hostile_scenario_name_cannot_write_outside_results(name, tmp_path, monkeypatch):
    if name == "<absolute>":
        name = str(tmp_path / "abs" / "dir")
    sc = hostile_scenario(tmp_path, name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    outside = tree(tmp_path)
    r = invoke("run", sc, "-n", 1, "--quiet")
    assert r.exit_code in (0, 2), r.output  # written under results/, or refused as input
    now = tree(tmp_path)
    changed = {k for k in set(now) | set(outside) if now.get(k) != outside.get(k)}
    assert all(k.startswith("work/results") for k in changed), sorted(changed)
    if r.exit_code == 0:
        (folder,) = (work / "results").iterdir()
        assert folder.name == safe_name(name) and (folder / "clients.parquet").exists()


@pytest.mark.parametrize("org", ["../../../x", "<absolute>"])
def test_a_hostile_organisation_name_cannot_write_outside_results(org, tmp_path, monkeypatch):
    if org == "<absolute>":
        org = str(tmp_path / "abs")
    sc = hostile_scenario(tmp_path, "../up", org)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    outside = tree(tmp_path)
    r = invoke("stress", sc, "--organisation", org, "-n", 2, "--only", "delay_3", "--executor", "serial", "--quiet")
    assert r.exit_code in (0, 2), r.output
    now = tree(tmp_path)
    changed = {k for k in set(now) | set(outside) if now.get(k) != outside.get(k)}
    assert all(k in ("work/results", "work/results/stress") or k.startswith("work/results/stress/") for k in changed), sorted(changed)
    if r.exit_code == 0:
        assert (work / "results" / "stress" / safe_name("../up") / safe_name(org) / "stresses.parquet").exists()


# ---------------------------------------------------------------------------------------------
# Temporaries: removed on failure, and when left by a killed process


def _children(pid: int) -> list[int]:
    kids = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat_file.read_text()
        except OSError:
            continue
        if int(text[text.rfind(")") + 2:].split()[1]) == pid:
            kids.append(int(stat_file.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rfind(")") + 2:].split()[0] not in ("Z", "X")


def _kill_when_writing(out: Path, where: Path, replications: int) -> tuple[list[Path], list[int]] | None:
    """Start `pbrsim run` into ``out``; SIGKILL it the moment its temporary folder appears in ``where``.
    Returns (temporary folders left, the process's children at the kill), or None if the run finished first."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "pbrsim", "run", str(SMALL), "-n", str(replications), "--quiet",
                             "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    prefix = f"{TEMP_PREFIX}{_host()}-{proc.pid}-"
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if any(name.startswith(prefix) for name in os.listdir(where)):
                    kids = _children(proc.pid)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    left = [p for p in where.iterdir() if p.name.startswith(prefix)]
                    return (left, kids) if left else None
            except FileNotFoundError:
                pass
            time.sleep(0.0005)
        assert proc.returncode == 0, proc.stderr.read().decode()
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.mark.parametrize("existing", [False, True], ids=["new folder", "earlier results"])
def test_kill_9_during_a_write_leaves_nothing_after_the_next_command(existing, tmp_path):
    root = tmp_path / "results"
    out = root / "small"
    root.mkdir()
    not_ours = root / ".pbrsim-tmp-looks-like-it"  # a look-alike: never touched
    not_ours.mkdir()
    (not_ours / "x").write_text("x")
    live = root / f"{TEMP_PREFIX}{_host()}-{os.getpid()}-0badc0de"  # a live process's temporary: never touched
    live.mkdir()
    (live / TEMP_MARKER).write_text(json.dumps({"package": "pbrsim", "pid": os.getpid(), "host": _host(), "start": None}))
    before = None
    if existing:
        r = invoke("run", SMALL, "-n", 2, "--quiet", "--out", out)
        assert r.exit_code == 0, r.output
        before = tree(out)
    caught = None
    for replications in (3, 12, 48):  # a bigger run writes for longer, should the first finish before the kill
        caught = _kill_when_writing(out, out if existing else root, replications)
        if caught:
            break
        if not existing:
            shutil.rmtree(out, ignore_errors=True)
    assert caught, "the run always finished before its temporary folder was seen"
    left, kids = caught
    assert left  # the kill left a temporary folder behind ...
    assert not any(_alive(k) for k in kids)  # ... and no process
    if existing:
        after = tree(out)
        assert {k: v for k, v in after.items() if not k.startswith(TEMP_PREFIX)} == before  # earlier results intact
    else:
        assert not out.exists() or json.loads((out / MANIFEST).read_text())["package"] == "pbrsim"
    r = invoke("run", SMALL, "-n", 2, "--quiet", "--out", out)
    assert r.exit_code == 0, r.output
    # the killed process's temporary folder is gone; the live one (with its marker) and the look-alike stay
    assert sorted(p.relative_to(root).as_posix() for p in pbrsim_temporaries(tmp_path)) == sorted(
        [live.name, f"{live.name}/{TEMP_MARKER}", not_ours.name])
    assert (not_ours / "x").read_text() == "x"


def test_only_stale_pbrsim_temporaries_are_removed(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = int(done.stdout)  # a process that has ended

    def temp(pid: int, tag: str, marker: dict | None, content: bool = True) -> Path:
        p = tmp_path / f"{TEMP_PREFIX}{_host()}-{pid}-{tag}"
        p.mkdir()
        if marker is not None:
            (p / TEMP_MARKER).write_text(json.dumps(marker))
        if content:
            (p / "clients.parquet").write_bytes(b"x")
        return p

    mark = {"package": "pbrsim", "host": _host(), "start": None}
    stale = temp(dead, "0000000a", {**mark, "pid": dead})
    stale_unmarked_empty = temp(dead, "0000000b", None, content=False)
    live = temp(os.getpid(), "0000000c", {**mark, "pid": os.getpid()})
    unmarked = temp(dead, "0000000d", None)  # not certainly ours: kept
    mismatched = temp(dead, "0000000e", {**mark, "pid": dead + 1})  # marker disagrees with the name: kept
    elsewhere = tmp_path / f"{TEMP_PREFIX}0123abcd-{dead}-0000000f"  # another host, made just now: kept
    elsewhere.mkdir()
    (elsewhere / TEMP_MARKER).write_text(json.dumps({**mark, "host": "0123abcd", "pid": dead, "created": time.time()}))
    stale_file = tmp_path / f"{TEMP_PREFIX}{_host()}-{dead}-00000010-x.yaml"
    stale_file.write_text("half a file")
    target = tmp_path / "elsewhere_data"
    target.mkdir()
    (target / "keep").write_text("keep")
    link = tmp_path / f"{TEMP_PREFIX}{_host()}-{dead}-00000011"
    link.symlink_to(target)
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([stale.name, stale_unmarked_empty.name, stale_file.name])
    assert live.exists() and unmarked.exists() and mismatched.exists() and elsewhere.exists() and link.is_symlink()
    assert (target / "keep").read_text() == "keep"


# ---------------------------------------------------------------------------------------------
# A write the machine refuses: nothing half-written, the earlier results intact, one line, exit 1


@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here ({exc}); the file-size-limit test covers a failed write")
    yield mnt
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], check=True)  # detached at once, freed when nothing uses it
        pytest.fail(f"{mnt} was still in use after the test: a file was left open")


def test_a_full_disk_leaves_the_earlier_results_intact(tiny_disk):
    out = tiny_disk / "run"
    r = invoke("run", SMALL, "-n", 2, "--quiet", "--out", out)
    assert r.exit_code == 0, r.output
    before = tree(tiny_disk)
    r = invoke("run", SMALL, "-n", 2, "--quiet", "--out", out)  # its temporary copy does not fit beside the first
    assert r.exit_code == 1, r.output
    line = one_line_error(r)
    assert "No space left on device" in line and str(out) in line and "is as it was" in line
    assert tree(tiny_disk) == before
    r = invoke("run", SMALL, "-n", 2, "--quiet", "--out", tiny_disk / "new")
    assert r.exit_code == 1 and "nothing was written" in one_line_error(r)
    assert tree(tiny_disk) == before


def test_a_file_size_limit_leaves_the_earlier_results_intact(tmp_path, run_dir):
    """RLIMIT_FSIZE makes the kernel refuse a large write (EFBIG) without needing a small disk. (Python ignores
    SIGXFSZ, so the write fails with an error instead of killing the process.)"""
    import resource

    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    before = tree(tmp_path)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
    try:
        r = invoke("run", SMALL, "-n", 3, "--quiet", "--out", out)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert r.exit_code == 1, r.output
    assert "File too large" in one_line_error(r)
    assert tree(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# Results get the user's usual permissions


@pytest.fixture
def umask():
    """A umask other than the usual 022, so that the modes tell it apart from mkdtemp's 0700 and mkstemp's 0600."""
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def test_results_get_the_usual_permissions(umask, tmp_path):
    results = tmp_path / "results"
    assert invoke("run", SMALL, "-n", 2, "--quiet", "--out", results / "run").exit_code == 0
    r = invoke("batch", tiny_experiment(tmp_path), "--executor", "serial", "--quiet", "--out", results / "dataset")
    assert r.exit_code == 0, r.output
    r = invoke("import-indigo", INDIGO_PROJECT, "--folder", INDIGO, "--out", results / "draft.yaml")
    assert r.exit_code == 0, r.output
    r = invoke("calibrate", CALIBRATE_SCENARIO, targets_file(tmp_path), "--out", results / "calibrated.yaml")
    assert r.exit_code in (0, 3), r.output
    modes = {rel: entry[1] for rel, entry in tree(results).items()}
    wrong = {rel: oct(mode) for rel, mode in modes.items()
             if mode != (0o777 & ~umask if (results / rel).is_dir() else 0o666 & ~umask)}
    assert not wrong
    assert {"run", "dataset", "draft.yaml", "calibrated.yaml", "dataset/runs/replications"} <= set(modes)


def test_a_manifest_cannot_lead_pbrsim_to_delete_outside_its_folder(tmp_path):
    out = tmp_path / "run"
    write_folder(out, {"replications": pd.DataFrame({"replication": [0]})}, {}, {"package": "pbrsim"})
    victim_dir = tmp_path / "elsewhere"
    victim_dir.mkdir()
    (victim_dir / "victim.txt").write_text("keep")
    (tmp_path / "outside.txt").write_text("keep")
    (out / "link").symlink_to(victim_dir)
    man = json.loads((out / MANIFEST).read_text())
    man["files"] += ["link/victim.txt"]
    (out / MANIFEST).write_text(json.dumps(man))
    write_folder(out, {"replications": pd.DataFrame({"replication": [1]})}, {}, {"package": "pbrsim"})
    man["files"] = ["../outside.txt", "summary.json"]  # not a path inside the folder: the manifest is not believed
    (out / MANIFEST).write_text(json.dumps(man))
    write_folder(out, {"clients": pd.DataFrame({"replication": [1]})}, {}, {"package": "pbrsim"})
    assert (victim_dir / "victim.txt").read_text() == "keep" and (tmp_path / "outside.txt").read_text() == "keep"
    assert (out / "link").is_symlink() and (out / "clients.parquet").exists()
