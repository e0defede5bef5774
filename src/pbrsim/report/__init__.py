"""Self-contained HTML reports of a run folder (``pbrsim run``), an experiment dataset (``pbrsim batch``,
``pbrsim compare --out``), a stress test (``pbrsim stress``) or a design run (``pbrsim design``).

    from pbrsim.report import build_report
    html = build_report("results/blended_vcs")        # -> results/blended_vcs/report/report.html

The HTML file embeds its charts (base64 PNG), styles and text, so it opens anywhere without a network;
each chart is also written as a PNG file next to it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..store import KIND_REPORT, check_out, manifest, write_files
from .data import ReportError, kind_of

__all__ = ["build_report", "ReportError", "REPORT_FOLDER", "REPORT_FILE"]

REPORT_FOLDER = "report"
REPORT_FILE = "report.html"


def _render(report) -> str:
    from jinja2 import PackageLoader

    from .html_text import environment

    env = environment(loader=PackageLoader("pbrsim.report", "templates"), trim_blocks=False, lstrip_blocks=False)
    return env.get_template("report.html.j2").render(report=report)


def build_report(path: str | Path, out: str | Path | None = None, *, overwrite: bool = False) -> Path:
    """Write the HTML report of the run folder or experiment dataset at ``path``; return the HTML file's path.

    ``out`` is the folder for ``report.html`` and the chart PNG files (default ``<path>/report``). An earlier
    report there is replaced; a folder holding other files is refused unless ``overwrite``, and files
    pbrsim did not write are never touched (``pbrsim.store``). Raises ``ReportError`` when ``path`` is not a
    pbrsim run (Monte Carlo) or experiment folder, ``store.OutputRefused`` / ``store.WriteFailed`` when the
    report cannot be written.
    """
    from .build import experiment_report, run_report
    from .data import load_experiment, load_run

    path = Path(path)
    kind = kind_of(path)
    out = Path(out) if out is not None else path / REPORT_FOLDER
    if os.path.realpath(out) == os.path.realpath(path):
        raise ReportError(f"{out} is the folder the report is made from; give the report a folder of its own with --out")
    if kind == "stress":  # a stress-test folder has its own page: tornado, reserve curve and table
        import json

        from .stress import write_stress_report

        summary = json.loads((path / "summary.json").read_text())
        return write_stress_report(summary, out, overwrite=overwrite, source=path)
    if kind == "design":  # a design run has its own page: the Pareto chart or the goal seek's curve, and tables
        import json

        from .design import write_design_report

        summary = json.loads((path / "summary.json").read_text())
        return write_design_report(summary, out, overwrite=overwrite, source=path)
    check_out(out, KIND_REPORT, overwrite=overwrite)  # before the charts are drawn
    report = run_report(load_run(path)) if kind == "run" else experiment_report(load_experiment(path))
    html = _render(report)
    files = {chart.file: chart.png for chart in report.charts}
    files[REPORT_FILE] = html.encode("utf-8")
    write_files(out, files, manifest(None, None, {"made_from": str(path)}), kind=KIND_REPORT, overwrite=overwrite)
    return out / REPORT_FILE
