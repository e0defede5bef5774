"""Files the page offers for a finished run: the HTML report and the spreadsheet export, made as
``pbrsim run --report`` and ``pbrsim export`` make them, in a scratch folder of pbrsim's own that is removed
afterwards (nothing is written where the user keeps files)."""

from __future__ import annotations

import tempfile
from pathlib import Path


def _saved(result, make):
    with tempfile.TemporaryDirectory(prefix="pbrsim-web-") as tmp:
        folder = Path(tmp) / "run"
        result.save(folder)
        return make(folder)


def report_html(result) -> bytes:
    """The run's self-contained HTML report (charts inline), as ``pbrsim report`` writes it."""
    from ..report import build_report

    return _saved(result, lambda folder: build_report(folder).read_bytes())


def workbook(result) -> bytes:
    """The run's Excel workbook, as ``pbrsim export --format xlsx`` writes it (money in pounds)."""
    from ..report.export import sheets_of, workbook_bytes

    return _saved(result, lambda folder: workbook_bytes(sheets_of(folder)))
