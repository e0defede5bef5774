"""The example notebook (docs/examples/variants.ipynb) runs from top to bottom: variant, simulate, compare,
plot, export — and shows what it says it shows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "examples" / "variants.ipynb"


def test_example_notebook_runs_and_shows_results(tmp_path, monkeypatch):
    # run it in a copy of its folder beside a link to the scenarios, so its files go to tmp_path
    work = tmp_path / "docs" / "examples"
    work.mkdir(parents=True)
    (tmp_path / "scenarios").symlink_to(ROOT / "scenarios")
    monkeypatch.setenv("PYTHONPATH", f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert text.startswith("<SimulationResult 'outcomes_only_vcs': 10 replications, seed 1;") and len(text) < 400
    html = [o.data["text/html"] for o in outputs if o.output_type in ("execute_result", "display_data") and "text/html" in o.data]
    assert any("outcomes_only_vcs: 10 replications" in h for h in html)  # the result's summary table
    assert any("difference from outcomes_only_vcs" in h for h in html)  # the comparison's table
    pngs = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(pngs) >= 3  # cash fan and two comparison charts

    out = work / "results" / "variants"
    import pandas as pd

    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.design) == {"outcomes_only_vcs", "slow_payment", "with_bonus"}
    spend = summary[summary.figure == "paid_total"].set_index("design")
    assert spend.loc["outcomes_only_vcs", "unit"] == "pounds"
    assert spend.loc["with_bonus", "diff"] > 0  # a bonus on top of the same outcomes costs more
    long = pd.read_parquet(out / "replications_long.parquet")
    assert long.replication.nunique() == 10 and {"metric", "organisation", "segment", "value"} <= set(long.columns)
    assert (out / "draft_run" / "manifest.json").exists() and (out / "draft_run" / "clients.parquet").exists()
