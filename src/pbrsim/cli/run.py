"""Commands on one scenario file: run, validate, schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..scenario.schema import ScenarioError, file_hash, json_schema, load_scenario
from .common import (EXIT_INPUT, allow_large_option, exit_with_problems, fail_input, load_or_exit, overwrite_option, progress_bar,
                     run_size_or_exit, writing)


def check_value_or_exit(sc, path: str) -> None:
    """Value input the schema cannot check (unit-cost keys, deflators, appraisal length): exit 2 before running."""
    from ..value.appraisal import check as check_value

    try:
        check_value(sc, path)
    except ScenarioError as exc:
        exit_with_problems(path, exc.problems, "Nothing was run or written. Fix the value section (docs/value.md) and try again.")


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--seed", default=0, show_default=True, type=int, help="Root random seed.")
@click.option("--replications", "-n", default=100, show_default=True, type=click.IntRange(min=1), help="Independent replications.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder [default: results/<scenario name>].")
@click.option("--method", type=click.Choice(["montecarlo", "exact"]), default="montecarlo", show_default=True,
              help="Monte Carlo simulation, or exact expected values by Markov-chain algebra where that is exact.")
@click.option("--quiet", is_flag=True, help="No progress bar or tables.")
@click.option("--report", "with_report", is_flag=True, help="Also write the HTML report (DIR/report/report.html).")
@overwrite_option
@allow_large_option
def run(scenario, seed, replications, out, method, quiet, with_report, overwrite):
    """Run SCENARIO and print a summary; tables are written as Parquet files.

    Running again into the same folder replaces the earlier results (and their report); a folder holding
    anything else is refused unless --overwrite (docs/outputs.md)."""
    from rich.console import Console

    from ..store import KIND_REPORT, KIND_RUN, check_out, manifest, output_path, write_folder
    from .terminal import print_exact, print_summary

    sc = load_or_exit(scenario)
    check_value_or_exit(sc, scenario)
    if method == "montecarlo":
        run_size_or_exit(sc, replications, scenario)
    with writing():
        out = Path(out) if out else output_path("results", sc.name)
        check_out(out, KIND_RUN, overwrite=overwrite)  # before the work, so a refusal costs nothing
        if with_report:
            check_out(out / "report", KIND_REPORT, overwrite=overwrite)
    console = Console()
    man = manifest(file_hash(scenario), seed, {"scenario": str(scenario), "method": method, "replications": replications})
    if method == "exact":
        from ..engine.exact import ExactNotApplicable, expected

        try:
            ex = expected(sc)
        except ExactNotApplicable as exc:
            fail_input(f"{scenario}: {exc}. Use --method montecarlo for this scenario.")
        man["seed"] = None
        if with_report:
            fail_input("--report needs a Monte Carlo run (cash-flow charts come from simulated months); drop --method exact")
        summary = ex.summary()
        if sc.value is not None:
            from ..value.exact import expected_value

            summary["value"] = expected_value(ex.model)
        with writing():
            write_folder(out, {"segments": ex.segments, "payments": ex.payments, "costs": ex.costs, "caseload": ex.caseload},
                         summary, man, overwrite=overwrite)
        if not quiet:
            print_exact(ex, console)
            if "value" in summary:
                from .value_tables import print_exact_value

                print_exact_value(summary["value"], console, sc.currency)
            console.print(f"Results written to [bold]{out}[/bold].")
        return

    from ..simulate import simulate

    with progress_bar(console, disable=quiet) as bar:
        task = bar.add_task(f"simulating {sc.name}", total=replications, rate="")
        def tick(k):
            bar.advance(task, k)
            done = bar.tasks[0].completed
            elapsed = bar.tasks[0].elapsed or 1e-9
            bar.update(task, rate=f"{done / elapsed:.1f} runs/s")
        result = simulate(sc, seed=seed, replications=replications, progress=tick)
    with writing():
        write_folder(out, result.tables(), result.summary, man, overwrite=overwrite)
    if not quiet:
        print_summary(result.summary, console, str(out))
        if "value" in result.summary:
            from .value_tables import print_value

            print_value(result.summary["value"], console, sc.currency)
    if with_report:
        from ..report import build_report

        with writing():
            html = build_report(out, overwrite=overwrite)
        console.print(f"Report: [bold]{html}[/bold]")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@allow_large_option
def validate(files):
    """Check scenario FILES; print OK or every problem found (exit code 2 if any)."""
    bad = False
    for f in files:
        try:
            sc = load_scenario(f)
            if sc.value is not None:  # the value checks need the unit-cost table and numpy: only with a value section
                from ..value.appraisal import check as check_value

                check_value(sc, f)
            click.echo(f"{f}: OK ({sc.name}: {len(sc.segments)} segments, {len(sc.pathway.states)} states, "
                       f"{len(sc.contract.payments)} payment lines, {sc.months} months)")
        except ScenarioError as exc:
            bad = True
            for line in exc.lines():
                click.echo(line, err=True)
    if bad:
        sys.exit(EXIT_INPUT)


@click.command()
def schema():
    """Print the JSON Schema of scenario files."""
    click.echo(json.dumps(json_schema(), indent=2))


COMMANDS = [run, validate, schema]
