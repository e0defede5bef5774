"""The Python, pandas and DuckDB snippets of the docs run as written (docs/python.md, docs/experiments.md)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def python_blocks(doc: str) -> list[str]:
    """The ```python blocks of a doc page, dedented (some sit in list items)."""
    import textwrap

    text = (ROOT / "docs" / doc).read_text()
    return [textwrap.dedent(b) for b in re.findall(r"^[ ]*```python\n(.*?)^[ ]*```", text, re.S | re.M)]


def run_blocks(blocks: list[str], cwd: Path, env_extra: dict | None = None) -> str:
    """Run the blocks one after another in one interpreter (as a reader pastes them), in ``cwd``."""
    script = "\n\n".join(blocks)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "MPLBACKEND": "Agg",
           **(env_extra or {})}
    out = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_python_page_runs_as_written():
    out = run_blocks(python_blocks("python.md"), ROOT)
    # what the comments on the page promise
    assert "write 0.4 for 40%" in out and "did you mean 'lag'?" in out
    assert "<SimulationResult" not in out  # reprs are shown by notebooks, not printed: the page prints tables
    assert "share_of_value" in out and "working_capital" in out


@pytest.fixture(scope="module")
def vcs_dataset(tmp_path_factory) -> Path:
    """The worked example's dataset (docs/experiments.md), with 2 replications of each design (run in this process:
    every executor writes the same data, tests/test_executors.py)."""
    from click.testing import CliRunner

    from pbrsim.cli.main import main

    work = tmp_path_factory.mktemp("docs")
    out = work / "results" / "vcs_designs"
    r = CliRunner().invoke(main, ["batch", str(ROOT / "scenarios" / "experiments" / "vcs_designs.yaml"), "-n", "2",
                                  "-o", str(out), "--executor", "serial", "-q"])
    assert r.exit_code == 0, r.output
    return work


def test_experiments_page_pandas_and_duckdb_snippets_run(vcs_dataset):
    blocks = [b for b in python_blocks("experiments.md") if "DATA" in b]
    assert len(blocks) >= 3 and any("duckdb" in b for b in blocks)  # pandas, the summary, DuckDB
    out = run_blocks(blocks, vcs_dataset)
    assert "outcomes-only minus blended spend" in out
    assert "failure_share" in out and "upfront_share-0.1" in out  # the sweep points, by their typed column
