"""``pbrsim report DIR``: a self-contained HTML report of a run folder or an experiment dataset."""

from __future__ import annotations

import click

from .common import fail_input


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder for report.html and the chart PNG files [default: DIRECTORY/report].")
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
def report(directory, out, quiet):
    """Write an HTML report with charts of DIRECTORY: a run folder (`pbrsim run`), an experiment dataset
    (`pbrsim batch`, `pbrsim compare --out`), a stress test (`pbrsim stress`) or a design run (`pbrsim design`). The HTML file is self-contained: it opens without a network."""
    from ..report import ReportError, build_report

    try:
        path = build_report(directory, out)
    except ReportError as exc:
        fail_input(str(exc))
    if not quiet:
        click.echo(f"Report written to {path} (each chart also as a PNG file in {path.parent}).")


COMMANDS = [report]
