"""``pbrsim calibrate``: fit transition probabilities to observed outcome rates (see docs/calibration.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .common import allow_large_option, err_console, exit_if_wrong_kind, exit_with_error, fail_input, out_option, overwrite_option, writing
from ..scenario.schema import ScenarioError, load_scenario

EXIT_NOT_MET_CHECK = 1  # --check: some target is not met
EXIT_NOT_MET = 3  # a fit was written but some target is not met


def _problems_exit(exc: ScenarioError) -> None:
    exit_with_error(exc, "Nothing was written. Fix the file and try again (see docs/calibration.md).")


def _targets_table(table, targets, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("target", overflow="fold")
    t.add_column("segment", overflow="fold", min_width=7)
    t.add_column("months", justify="right", no_wrap=True)
    t.add_column("model", justify="right", no_wrap=True)
    t.add_column("target ± tolerance", justify="right", no_wrap=True)
    t.add_column("residual", justify="right", no_wrap=True)
    t.add_column("", no_wrap=True)
    for row, spec in zip(table.itertuples(), targets.targets):
        t.add_row(escape(row.target), escape(row.segment), str(spec.within_months), f"{row.model:.4f}",
                  f"{row.target_rate:.4f} ± {row.tolerance:.4f}", f"{row.residual:+.4f}" if abs(row.residual) >= 5e-5 else "+0.0000",
                  "met" if row.met else "[bold red]NOT MET[/bold red]")
    return t


def _parameters_table(params) -> Table:
    t = Table(title="Parameters", title_justify="left")
    t.add_column("parameter", overflow="fold", min_width=10)
    for col in ("was", "fitted"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("bounds", no_wrap=True)
    t.add_column("identified", no_wrap=True)
    t.add_column("paths (balance state)", overflow="fold")
    for p in params.itertuples():
        where = "\n".join(f"{path} ({p.balance or path.split('.')[4]})" if path.startswith("pathway.") else f"{path} (behaviour)"
                          for path in p.paths)
        t.add_row(escape(p.parameter), f"{p.start:.6f}", f"{p.value:.6f}", f"[{p.lower:g}, {p.upper:g}]",
                  "yes" if p.identified else "[bold yellow]no[/bold yellow]", escape(where))
    return t


def _unmet_text(table) -> str:
    return "; ".join(f"{escape(repr(r.target))} (model {r.model:.4f}, target {r.target_rate:.4f} ± {r.tolerance:.4f})"
                     for r in table[~table.met].itertuples())


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.argument("targets", type=click.Path(dir_okay=False))
@out_option("Where to write the calibrated scenario (a file) [default: <scenario stem>.calibrated.yaml beside it].", file=True)
@click.option("--in-place", is_flag=True, help="Overwrite SCENARIO with the calibrated values.")
@click.option("--check", is_flag=True, help="Only evaluate the targets against SCENARIO as it is; write nothing (exit 0 if all met, 1 if not).")
@overwrite_option
@allow_large_option
def calibrate(scenario, targets, out, in_place, check, overwrite):
    """Fit transition probabilities of SCENARIO to the outcome rates in TARGETS and write the calibrated scenario.

    A file that an earlier calibration wrote is replaced; any other existing file only with --overwrite.
    Exit codes: 0 every target met; 1 (--check) some target not met, or the file could not be written (disk
    full, no permission; nothing written); 2 bad input, nothing written; 3 the targets cannot all be met (the
    closest fit is written)."""
    from ..library import calibrate as cal

    if out and in_place:
        fail_input("give --out or --in-place, not both")
    if check and (out or in_place):
        fail_input("--check writes nothing; drop --out / --in-place")
    if not check:
        out_path = Path(scenario) if in_place else Path(out) if out else cal.default_output(scenario)
        if out_path.is_dir():
            fail_input(f"{out_path} is a folder; give a file name with --out. Nothing was written.")
        if not in_place and out_path.exists() and not overwrite and not cal.written_by_calibrate(out_path):
            fail_input(f"{out_path} exists and was not written by pbrsim calibrate; add --overwrite to replace it, "
                       "or choose another --out. Nothing was written.")
    console = Console()
    try:
        load_scenario(scenario)  # scenario problems first, reported against the scenario file
    except ScenarioError as exc:
        exit_if_wrong_kind(scenario, "scenario")
        _problems_exit(exc)
    try:
        tg = cal.load_targets(targets)
    except ScenarioError as exc:
        exit_if_wrong_kind(targets, "targets")
        _problems_exit(exc)
    try:
        if check:
            table = cal.check_targets(scenario, tg)
        else:
            result = cal.calibrate(scenario, targets)
    except ScenarioError as exc:
        _problems_exit(exc)

    if check:
        how = "observed rates under the provider's behaviour" if cal.behaviour_in(load_scenario(scenario)) else "model rates under full service"
        console.print(f"[bold]{escape(scenario)}[/bold] against [bold]{escape(targets)}[/bold]: {how} "
                      "(docs/calibration.md).", highlight=False)
        console.print(_targets_table(table, tg, "Targets"))
        k = int((~table.met).sum())
        if k:
            console.print(f"[bold red]{k} of {len(table)} targets not met:[/bold red] {_unmet_text(table)}", highlight=False)
            sys.exit(EXIT_NOT_MET_CHECK)
        console.print(f"All {len(table)} targets met.")
        return

    try:
        with writing():
            cal.write_calibrated(result, out_path)
    except ScenarioError as exc:
        _problems_exit(exc)
    console.print(f"[bold]{escape(scenario)}[/bold] calibrated to [bold]{escape(targets)}[/bold]: {result.starts} optimiser start(s), "
                  f"{result.message}", highlight=False)
    console.print(_parameters_table(result.parameters))
    free = [p.parameter for p in result.parameters.itertuples() if not p.identified]
    if free:
        console.print(f"[bold yellow]Not identified by the targets[/bold yellow] (they stay where they started): {escape(', '.join(free))}",
                      highlight=False)
    console.print(_targets_table(result.table, result.targets, "Targets at the fitted values"))
    if result.all_met:
        console.print(f"All {len(result.table)} targets met. Calibrated scenario written to [bold]{escape(str(out_path))}[/bold].", highlight=False)
        return
    err_console.print(f"[bold red]targets cannot all be met:[/bold red] {_unmet_text(result.table)}; "
                      f"closest fit written to {escape(str(out_path))}", highlight=False, soft_wrap=True)
    sys.exit(EXIT_NOT_MET)


COMMANDS = [calibrate]
