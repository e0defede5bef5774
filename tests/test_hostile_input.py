"""Broken and hostile input: every file of the corpus in fixtures/broken/ is refused cleanly.

The corpus: ``broken/*.yaml`` (one scenario per validation rule; expectations in test_validation.EXPECTED)
and the folders ``input/`` (the file as a whole: encodings, YAML tags, nesting, aliases), ``extends/``,
``limits/`` (size limits), ``money/`` (totals beyond integer pence), ``experiments/``, ``stresses/`` and
``targets/``. Each file in a folder says what is wrong and what must be reported in its header::

    # BROKEN: what is wrong
    # EXPECT: field.path | regular expression the rule must match   ("-" for the file as a whole)
    # FILE: parents/x.yaml    (optional: the file the problem is reported under, relative to this one)

Files in ``parents/`` folders are the other links of ``extends`` chains, not cases. Every case runs
through the command that reads that kind of file, with ``--out`` beside an earlier result, and must exit
with code 2, report the expected problem on one line naming the file and the field, print no traceback,
write nothing and leave the earlier result byte for byte as it was. Cases too big or too special to keep
as files (a 50 MB scenario, a pipe, ``/dev/zero``) are made at test time; the bombs also run in a real
process under a memory and CPU limit, to show the refusals take bounded time and memory.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import pbrsim
from pbrsim.cli.main import main
from pbrsim.scenario import limits
from pbrsim.scenario.schema import ScenarioError, load_scenario

from .test_validation import EXPECTED as RULES

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
CORPUS = FIXTURES / "broken"
VALID = FIXTURES / "valid_small.yaml"
CALIBRATE_SCENARIO = FIXTURES / "calibrate" / "scenario.yaml"
INDIGO = FIXTURES / "indigo"
KINDS = {"input": "scenario", "extends": "scenario", "limits": "scenario", "money": "scenario",
         "experiments": "experiment", "stresses": "stresses", "targets": "targets"}
# files whose header cannot be read as UTF-8 text
SPECIAL = {"input/utf16.yaml": ("", r"not UTF-8 text: byte 0xff at line 1, column 1")}
SRC = HERE.parent / "src"


@dataclass(frozen=True)
class Case:
    file: Path
    kind: str
    reported: Path  # the file the problem is reported under
    field: str
    pattern: str

    @property
    def id(self) -> str:
        return self.file.relative_to(CORPUS).as_posix()


def read_header(f: Path) -> tuple[str, str, str | None]:
    head = f.read_bytes()[:4000].decode("utf-8", "replace").splitlines()
    expect = next(ln for ln in head if ln.startswith("# EXPECT: "))[len("# EXPECT: "):]
    field, pattern = (x.strip() for x in expect.split(" | ", 1))
    file = next((ln[len("# FILE: "):].strip() for ln in head if ln.startswith("# FILE: ")), None)
    return ("" if field == "-" else field), pattern, file


def corpus() -> list[Case]:
    cases = [Case(f, "scenario", f, *RULES[f.stem]) for f in sorted(CORPUS.glob("*.yaml"))]
    for folder, kind in KINDS.items():
        for f in sorted((CORPUS / folder).glob("*.yaml")):
            rel = f.relative_to(CORPUS).as_posix()
            if rel in SPECIAL:
                field, pattern, file = *SPECIAL[rel], None
            else:
                field, pattern, file = read_header(f)
            cases.append(Case(f, kind, f.parent / file if file else f, field, pattern))
    return cases


CASES = corpus()


def invoke(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


def command(case: Case, out: Path) -> list:
    if case.kind == "scenario":
        return ["run", case.file, "--out", out, "-n", 2, "--quiet"]
    if case.kind == "experiment":
        return ["batch", case.file, "--out", out, "--executor", "serial", "--quiet"]
    if case.kind == "stresses":
        return ["stress", VALID, "--stresses", case.file, "--out", out, "-n", 2, "--executor", "serial", "--quiet"]
    return ["calibrate", CALIBRATE_SCENARIO, case.file, "--out", out.with_suffix(".yaml")]


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with the SHA-256 of its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
    return out


def problem_lines(stderr: str, reported: Path, field: str) -> list[str]:
    prefix = f"{reported}: {field}: " if field else f"{reported}: "
    return [ln.strip()[len(prefix):] for ln in stderr.splitlines() if ln.strip().startswith(prefix)]


def assert_refused(result, reported: Path | str, field: str, pattern: str):
    """Exit 2, no traceback, and the problem on one line ``FILE: field: rule`` (``FILE: rule`` for the file as a whole)."""
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    rules = problem_lines(result.stderr, Path(reported), field)
    assert any(re.search(pattern, r) for r in rules), (
        f"no line '{reported}: {field + ': ' if field else ''}<rule matching /{pattern}/>' in stderr:\n{result.stderr}")
    # a header "FILE: N problems" is followed by exactly N one-line problems, each naming a file
    m = re.search(r"^(\S.*): (\d+) problems?$", result.stderr, re.M)
    if m:
        after = result.stderr[m.end():].strip("\n").splitlines()
        n = int(m.group(2))
        assert len(after) > n and all(re.match(r"^  \S+\.(yaml|csv): ", ln) for ln in after[:n]), result.stderr


@pytest.fixture(scope="module")
def results_root(tmp_path_factory):
    """A results folder holding an earlier run, which no refused command may touch."""
    root = tmp_path_factory.mktemp("results")
    r = invoke("run", VALID, "-n", 2, "--seed", 3, "--quiet", "--out", root / "earlier")
    assert r.exit_code == 0, r.output
    return root


# ---------------------------------------------------------------------------------------------
# The corpus


def test_the_corpus_is_large_and_every_file_is_a_case():
    files = [p for p in CORPUS.rglob("*") if p.is_file() and "parents" not in p.parts]
    assert len(files) >= 100
    assert sorted(c.file for c in CASES) == sorted(files)
    assert len({c.id for c in CASES}) == len(CASES)
    for folder in KINDS:
        for f in (CORPUS / folder).glob("*.yaml"):
            if f.relative_to(CORPUS).as_posix() not in SPECIAL:
                assert f.read_bytes().startswith(b"# BROKEN: "), f


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_broken_file_is_refused_cleanly(case, results_root):
    before = snapshot(results_root)
    result = invoke(*command(case, results_root / "new"))
    assert_refused(result, case.reported, case.field, case.pattern)
    assert snapshot(results_root) == before, "something was written or changed"


def test_the_corpus_folder_is_unchanged_by_the_runs():
    # nothing is ever written beside an input (no calibrated files, no temporary files)
    names = sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*"))
    assert not [n for n in names if "calibrated" in n or n.rsplit("/", 1)[-1].startswith(".")]


# ---------------------------------------------------------------------------------------------
# Cases made at test time


def test_made_cases_are_refused(tmp_path, results_root):
    made = {}
    big = tmp_path / "fifty_megabytes.yaml"
    with big.open("w") as f:
        f.write(VALID.read_text())
        f.write(("# " + "x" * 1022 + "\n") * (50 * 1024))
    made[big] = ("", r"the file is 50 MB; a YAML file may be at most 1 MB.*--allow-large")
    just_over = tmp_path / "just_over_1mb.yaml"
    just_over.write_text(VALID.read_text() + "#" * (1 << 20) + "\n")
    made[just_over] = ("", r"a YAML file may be at most 1 MB")
    values = tmp_path / "too_many_values.yaml"
    values.write_text(VALID.read_text() + "description: [" + "0," * 100_001 + "]\n")
    made[values] = ("", r"at line \d+, column \d+: the file holds more than 100,000 values")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # opening it would wait for a writer for ever
    made[fifo] = ("", r"not a regular file")
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    made[zero] = ("", r"not a regular file")
    for f, (field, pattern) in made.items():
        before = snapshot(results_root)
        result = invoke("run", f, "--out", results_root / "new", "-n", 2, "--quiet")
        assert_refused(result, f, field, pattern)
        assert snapshot(results_root) == before


def test_a_folder_is_refused(tmp_path):
    folder = tmp_path / "a_folder.yaml"
    folder.mkdir()
    r = invoke("run", folder, "--out", tmp_path / "o", "--quiet")
    assert r.exit_code == 2 and f"'{folder}' is a directory" in " ".join(r.stderr.split())
    r = invoke("validate", VALID, folder)  # click refuses it before pbrsim reads anything
    assert r.exit_code == 2 and "is a directory" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_folder.yaml"]


def test_a_pipe_as_stresses_or_targets_file_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    r = invoke("stress", VALID, "--stresses", fifo, "-n", 2, "--executor", "serial", "--quiet", "--out", tmp_path / "o")
    assert_refused(r, fifo, "", r"not a regular file")
    r = invoke("calibrate", CALIBRATE_SCENARIO, fifo, "--out", tmp_path / "c.yaml")
    assert_refused(r, fifo, "", r"not a regular file")
    r = invoke("validate", fifo)
    assert r.exit_code == 2 and f"{fifo}: is not a regular file" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.yaml"]


BOMBS = ["input/alias_bomb.yaml", "input/alias_bomb_merge.yaml", "input/deep_flow_nesting.yaml", "extends/split_alias_bomb.yaml",
         "extends/dev_zero.yaml", "extends/dev_urandom.yaml", "limits/referral_rate_1e12.yaml", "limits/lag_1e9.yaml"]


def _limited():
    """In the child: at most 2 GB of address space and 60 s of CPU (it is killed beyond either)."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    resource.setrlimit(resource.RLIMIT_CPU, (60, 60))


def test_bombs_are_refused_in_a_real_process_within_bounded_memory_and_time(tmp_path):
    """Before the input limits, the split alias bomb ran 80 s and took 5.5 GB, /dev/zero was read for ever
    and referral rates of 1e12 tried to allocate terabytes. Under a 2 GB / 60 s CPU limit the process is
    killed if any refusal is not bounded; here all are refused with exit 2 in one process."""
    big = tmp_path / "fifty_megabytes.yaml"
    big.write_bytes(b"# " + b"x" * (50 << 20) + b"\n")
    files = [CORPUS / b for b in BOMBS] + [big]
    env = {k: v for k, v in os.environ.items() if k != limits.ALLOW_LARGE_ENV}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "pbrsim", "validate", *map(str, files)], capture_output=True, text=True,
                          env=env, preexec_fn=_limited, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for b in BOMBS:
        case = next(c for c in CASES if c.id == b)
        prefix = f"{case.reported}: {case.field + ': ' if case.field else ''}"
        assert any(ln.startswith(prefix) and re.search(case.pattern, ln[len(prefix):]) for ln in proc.stderr.splitlines()), b
    assert f"{big}: the file is 50 MB" in proc.stderr


# ---------------------------------------------------------------------------------------------
# What is accepted: YAML 1.2 numbers, merge keys, --allow-large


def test_yaml_1_2_numbers_and_words(tmp_path):
    text = VALID.read_text().replace("      tariff: 1500\n", "      tariff: 1e3\n").replace("  opening_cash: 5000", "  opening_cash: 5.0E+3")
    text = text.replace("name: valid_small", "name: on")  # YAML 1.1 read `on` as true
    f = tmp_path / "numbers.yaml"
    f.write_text(text)
    sc = load_scenario(f)
    assert sc.contract.payments[2].tariff == 1000.0
    assert sc.provider.opening_cash == 5000.0
    assert sc.name == "on"


def test_merge_keys_with_overriding_keys(tmp_path):
    """``<<: *x`` followed by a key of its own is a merge and an override, not a duplicate key."""
    text = VALID.read_text().replace(
        "  easy:    {share: 0.6}\n  complex: {share: 0.4}\n",
        "  easy: &segment {share: 0.6, complexity: 1}\n  complex:\n    <<: *segment\n    share: 0.4\n").replace(
        "  cost_per_client_month: {full: 60, minimal: 15}\n",
        "  cost_per_client_month:\n    <<: [{full: 60, minimal: 15}, {full: 99}]\n    minimal: 20\n")
    f = tmp_path / "merge.yaml"
    f.write_text(text)
    sc = load_scenario(f)
    assert (sc.segments["complex"].share, sc.segments["complex"].complexity) == (0.4, 1)
    # the first mapping of a merge list wins over later ones; the mapping's own keys win over all
    assert (sc.provider.cost_per_client_month.full, sc.provider.cost_per_client_month.minimal) == (60, 20)


def test_a_parent_problem_is_reported_under_the_parent_and_a_child_problem_under_the_child(tmp_path):
    parent = tmp_path / "parent.yaml"
    parent.write_text(VALID.read_text().replace("months: 18", "months: 0"))
    child = tmp_path / "sub" / "child.yaml"
    child.parent.mkdir()
    child.write_text("extends: ../parent.yaml\nname: child\ncurency: GBP\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(child)
    by_path = dict(zip((p for p, _ in info.value.problems), info.value.sources))
    assert by_path == {"months": str(child.parent / "../parent.yaml"), "curency": str(child)}


def test_allow_large_lifts_the_size_limits_only(tmp_path, monkeypatch):
    months = CORPUS / "limits" / "months_601.yaml"
    assert invoke("validate", months).exit_code == 2
    r = invoke("validate", "--allow-large", months)
    assert r.exit_code == 0, r.output
    monkeypatch.setenv(limits.ALLOW_LARGE_ENV, "1")
    assert invoke("validate", months).exit_code == 0
    assert load_scenario(months).months == 601
    # hard limits stay: months beyond 16-bit month columns, money beyond 2^53 pence, aliases and nesting
    for rel in ("limits/months_100000.yaml", "money/tariff_total_overflow.yaml", "input/alias_bomb.yaml", "input/deep_flow_nesting.yaml"):
        assert invoke("validate", "--allow-large", CORPUS / rel).exit_code == 2, rel
    monkeypatch.delenv(limits.ALLOW_LARGE_ENV)
    assert invoke("validate", months).exit_code == 2  # the flag lasted one command


def test_every_command_that_runs_things_takes_allow_large():
    for name in ("run", "validate", "compare", "batch", "stress", "calibrate", "import-indigo", "report"):
        r = invoke(name, "--help")
        assert "--allow-large" in r.output, name


# ---------------------------------------------------------------------------------------------
# Runs: replications times the scenario


def test_too_many_replications_are_refused_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    r = invoke("run", VALID, "-n", 10**9, "--out", out, "--quiet")
    assert_refused(r, VALID, "months", r"1,000,000,000 replications .* estimated [\d.,]+ GB of memory; at most 4\.0 GB.*--replications")
    r = invoke("stress", VALID, "-n", 10**9, "--out", out, "--quiet", "--executor", "serial")
    assert_refused(r, VALID, "months", r"estimated .*\(--replications\)")
    assert list(tmp_path.iterdir()) == []


def test_money_times_replications_must_fit_64_bit_totals(tmp_path):
    f = tmp_path / "rich.yaml"
    f.write_text(VALID.read_text().replace("      tariff: 1500\n", "      tariff: 1.0e10\n"))
    assert load_scenario(f)  # one replication fits (about £1.4e12)
    r = invoke("run", f, "-n", 100_000, "--allow-large", "--out", tmp_path / "out", "--quiet")
    assert_refused(r, f, "contract.payments[2].tariff", r"100,000 replications of up to £[\d,.e+]+ each could add up to more than 64-bit")
    assert not (tmp_path / "out").exists()


def test_extra_reserve_beyond_money_limits_is_refused(tmp_path):
    r = invoke("stress", VALID, "-n", 2, "--extra-reserve", 9.0e13, "--out", tmp_path / "o", "--quiet", "--executor", "serial")
    assert r.exit_code == 2 and "--extra-reserve" in r.stderr and "2^53 pence" in r.stderr
    assert not (tmp_path / "o").exists()


def test_design_values_limit(tmp_path, monkeypatch):
    small = limits.Limits(**{**limits.DEFAULT.__dict__, "design_values": 1000})
    monkeypatch.setattr(limits, "DEFAULT", small)
    exp = tmp_path / "e.yaml"
    exp.write_text(f"base: {VALID}\nreplications: 2\nsweeps:\n  - name: s\n    grid:\n      provider.opening_cash: [1, 2, 3, 4, 5]\n")
    r = invoke("batch", exp, "--out", tmp_path / "o", "--executor", "serial", "--quiet")
    assert_refused(r, exp, "designs", r"5 designs of scenarios of about \d+ values each hold [\d,]+ values in all; at most 1,000")


# ---------------------------------------------------------------------------------------------
# INDIGO import


def indigo_copy(tmp_path: Path, table: str | None = None, old: str | None = None, new: str | None = None) -> Path:
    folder = tmp_path / "indigo"
    shutil.copytree(INDIGO, folder)
    if table:
        p = folder / table
        text = p.read_text(encoding="utf-8")
        assert old in text, old
        p.write_text(text.replace(old, new, 1), encoding="utf-8")
    return folder


def import_indigo(folder: Path, out: Path, project="INDIGO-POJ-9901", *extra):
    return invoke("import-indigo", project, "--folder", folder, "--out", out, *extra)


def set_cell(folder: Path, table: str, column: str, value: str, metric: str | None = None, project: str = "INDIGO-POJ-9901"):
    """Set the cell of ``column`` (header prefix) in the first row of ``project`` (and ``metric``) of an INDIGO file."""
    p = folder / table
    rows = list(csv.reader(io.StringIO(p.read_text(encoding="utf-8"))))
    col = next(i for i, h in enumerate(rows[0]) if h.startswith(column))
    row = next(r for r in rows[1:] if r[0] == project and (metric is None or metric in r))
    row[col] = value
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    p.write_text(buf.getvalue(), encoding="utf-8")


FOUR_HUNDRED = "9" * 400
INDIGO_CASES = {  # table, column, metric, the file and column the message must name
    "price": ("projects_outcome_pricings.csv", "Price Per Unit - Amount - (Value)", "outcomemetric1",
              r'projects_outcome_pricings\.csv: "Price Per Unit - Amount - \(Value\)" of INDIGO-POJ-9901 outcomemetric1: '
              r'999999999999…999999 \(400 characters\) is too large'),
    "engaged": ("projects_results.csv", "Number engaged", "Final",
                r'projects_results\.csv: "Number engaged In impact bond - \(Value\)" of INDIGO-POJ-9901 outcomemetric1: .* is too large'),
    "cap": ("projects.csv", "Overall project finance - Maximum potential outcome payment - Amount", None,
            r'projects\.csv: "Overall project finance - Maximum potential outcome payment - Amount - \(Value\)" of INDIGO-POJ-9901: .* is too large'),
    "targeted": ("projects.csv", "Service and beneficiaries - Targeted number", None, r'projects\.csv: "Service and beneficiaries - Targeted .* is too large'),
}


@pytest.mark.parametrize("name", sorted(INDIGO_CASES))
def test_indigo_400_digit_numbers_are_refused(name, tmp_path):
    table, column, metric, pattern = INDIGO_CASES[name]
    folder = indigo_copy(tmp_path)
    set_cell(folder, table, column, FOUR_HUNDRED, metric)
    out = tmp_path / "draft.yaml"
    r = import_indigo(folder, out)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit)
    assert re.search(pattern, " ".join(r.stderr.split())), r.stderr
    assert not out.exists() and not list(tmp_path.glob("draft*"))


def test_indigo_files_that_are_not_text_or_too_big_are_refused(tmp_path):
    cases = []
    latin = indigo_copy(tmp_path / "latin")
    (latin / "projects.csv").write_bytes((INDIGO / "projects.csv").read_bytes().replace(b"Riverside", b"Rivers\xefde", 1))
    cases.append((latin, r"projects\.csv: cannot be read as a CSV file"))
    pipe = indigo_copy(tmp_path / "pipe")
    (pipe / "projects_results.csv").unlink()
    os.mkfifo(pipe / "projects_results.csv")
    cases.append((pipe, r"projects_results\.csv: is not a regular file"))
    zero = indigo_copy(tmp_path / "zero")
    (zero / "projects.csv").unlink()
    (zero / "projects.csv").symlink_to("/dev/zero")
    cases.append((zero, r"projects\.csv: is not a regular file"))
    big = indigo_copy(tmp_path / "big")
    os.truncate(big / "projects_outcome_metrics.csv", 21 << 20)  # sparse: refused from its size alone
    cases.append((big, r"projects_outcome_metrics\.csv: the file is 21 MB; a CSV file may be at most 20 MB"))
    for folder, pattern in cases:
        out = folder / "draft.yaml"
        r = import_indigo(folder, out)
        assert r.exit_code == 2, (folder, r.output)
        assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output
        assert re.search(pattern, " ".join(r.stderr.split())), r.stderr
        assert not out.exists()


def test_indigo_figures_no_scenario_can_hold_exit_2(tmp_path):
    """Prices of £9 trillion are below the per-figure limit, but for every service user they are beyond
    what integer pence can total: the draft is refused with exit 2, as the docs say, not exit 1."""
    folder = indigo_copy(tmp_path)
    set_cell(folder, "projects_outcome_pricings.csv", "Price Per Unit - Amount - (Value)", "9000000000000", "outcomemetric1")
    set_cell(folder, "projects.csv", "Overall project finance - Maximum potential outcome payment - Amount", "")  # no cap
    out = tmp_path / "draft.yaml"
    r = import_indigo(folder, out)
    assert r.exit_code == 2, r.output
    assert "not a valid scenario" in r.stderr and "money in one replication" in " ".join(r.stderr.split())
    assert not out.exists()


def test_indigo_targets_with_tiny_rates_are_read_by_calibrate(tmp_path):
    """A recorded rate of 1 in 200,000 is written as `rate: 5e-06`, which YAML 1.1 read as text."""
    folder = indigo_copy(tmp_path, "projects_results.csv", ",110,120,", ",1,200000,")
    text = (folder / "projects_results.csv").read_text()
    (folder / "projects_results.csv").write_text(text.replace(",150,160,", ",1,200000,"))
    out = tmp_path / "draft.yaml"
    r = import_indigo(folder, out)
    assert r.exit_code == 0, r.output
    targets = tmp_path / "draft.targets.yaml"
    assert re.search(r"rate: 5e-0?6\b", targets.read_text()), targets.read_text()
    r = invoke("calibrate", out, targets, "--check")
    assert r.exit_code in (0, 1), r.output  # met or not met, but read: never 2


# ---------------------------------------------------------------------------------------------
# The Python API


def test_load_scenario_refuses_hostile_files_too():
    for rel in ("input/alias_bomb.yaml", "extends/dev_zero.yaml", "limits/referral_rate_1e12.yaml", "money/opening_cash_1e17.yaml"):
        with pytest.raises(ScenarioError):
            pbrsim.load_scenario(CORPUS / rel)


@pytest.mark.parametrize("path", ["library/fcf_st_basils.yaml", "library/peterborough.yaml", "library/tr_crc_volume_shortfall.yaml",
                                  "supply_chain/fee_for_service.yaml"])
def test_the_money_bound_bounds_what_a_run_moves(path):
    """The bound behind the money limit must hold in real runs: investor finance, cohort payments, volume
    reconciliation and fees for service, each moving less than the bound in every replication."""
    from pbrsim.scenario.bounds import money_bound, organisations

    sc = pbrsim.load_scenario(HERE.parent / "scenarios" / path)
    res = pbrsim.simulate(sc, seed=5, replications=2)
    opening = sum(o.opening_cash for _, o in organisations(sc)) * 100
    moved = res.ledger.groupby("replication").amount_pence.sum() + opening
    assert (moved > 0).all()
    assert (moved <= money_bound(sc).total).all(), (moved.max(), money_bound(sc))
