"""``pbrsim report DIR``: a self-contained HTML report of a run folder or an experiment dataset."""

from __future__ import annotations

import click

from .common import allow_large_option, fail_input, out_option, overwrite_option, quiet_option, writing


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@out_option("Folder for report.html and the chart PNG files [default: DIRECTORY/report].")
@quiet_option("Print nothing on success.")
@overwrite_option
@allow_large_option
def report(directory, out, quiet, overwrite):
    """Write an HTML report with charts of DIRECTORY: a run folder (`pbrsim run`), an experiment dataset
    (`pbrsim batch`, `pbrsim compare --out`), a stress test (`pbrsim stress`) or a design run (`pbrsim design`). The HTML file is self-contained: it opens without a network."""
    from ..report import ReportError, build_report

    try:
        with writing():
            path = build_report(directory, out, overwrite=overwrite)
    except ReportError as exc:
        fail_input(str(exc))
    if not quiet:
        click.echo(f"Report written to {path} (each chart also as a PNG file in {path.parent}).")


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--format", "formats", type=click.Choice(["xlsx", "csv"]), multiple=True,
              help="xlsx: one Excel workbook (pbrsim.xlsx); csv: one CSV file per sheet. Repeat for both "
                   "[default: xlsx].")
@out_option("Folder for the export [default: DIRECTORY/export].")
@quiet_option("Print nothing on success.")
@overwrite_option
@allow_large_option
def export(directory, formats, out, quiet, overwrite):
    """Export DIRECTORY to a spreadsheet: a run folder (`pbrsim run`), an experiment dataset (`pbrsim batch`,
    `pbrsim compare --out`) or a stress test (`pbrsim stress`). Money in pounds, units in the headers,
    frozen header rows (docs/reports.md, Spreadsheet exports)."""
    from ..report import ReportError
    from ..report.export import WORKBOOK, export_results

    formats = tuple(dict.fromkeys(formats)) or ("xlsx",)
    try:
        with writing():
            folder = export_results(directory, out, formats=formats, overwrite=overwrite)
    except ReportError as exc:
        fail_input(str(exc))
    if not quiet:
        what = [str(folder / WORKBOOK)] if "xlsx" in formats else []
        if "csv" in formats:
            what.append(f"CSV files in {folder}")
        click.echo("Export written: " + "; ".join(what))


COMMANDS = [report, export]
