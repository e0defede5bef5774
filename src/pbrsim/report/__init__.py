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

from .data import ReportError, kind_of

__all__ = ["build_report", "ReportError", "REPORT_FOLDER", "REPORT_FILE"]

REPORT_FOLDER = "report"
REPORT_FILE = "report.html"


def _render(report) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("pbrsim.report", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=False)
    return env.get_template("report.html.j2").render(report=report)


def build_report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of the run folder or experiment dataset at ``path``; return the HTML file's path.

    ``out`` is the folder for ``report.html`` and the chart PNG files (default ``<path>/report``); PNG files
    of an earlier report there are replaced. Raises ``ReportError`` when ``path`` is not a pbrsim run
    (Monte Carlo) or experiment folder.
    """
    from .build import experiment_report, run_report
    from .data import load_experiment, load_run

    path = Path(path)
    kind = kind_of(path)
    if kind == "stress":  # a stress-test folder has its own page: tornado, reserve curve and table
        import json

        from .stress import write_stress_report

        summary = json.loads((path / "summary.json").read_text())
        return write_stress_report(summary, Path(out) if out is not None else path / REPORT_FOLDER)
    if kind == "design":  # a design run has its own page: the Pareto chart or the goal seek's curve, and tables
        import json

        from .design import write_design_report

        summary = json.loads((path / "summary.json").read_text())
        return write_design_report(summary, Path(out) if out is not None else path / REPORT_FOLDER)[-1]
    report = run_report(load_run(path)) if kind == "run" else experiment_report(load_experiment(path))
    html = _render(report)

    out = Path(out) if out is not None else path / REPORT_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    if (out / REPORT_FILE).exists():
        for old in out.glob("*.png"):
            old.unlink()
    for chart in report.charts:
        _write(out / chart.file, chart.png)
    target = out / REPORT_FILE
    _write(target, html.encode("utf-8"))
    return target


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
