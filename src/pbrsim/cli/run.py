"""Commands on one scenario file: run, validate, schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..scenario.schema import ScenarioError, file_hash, json_schema, load_scenario
from .common import EXIT_INPUT, fail_input, load_or_exit, progress_bar


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--seed", default=0, show_default=True, type=int, help="Root random seed.")
@click.option("--replications", "-n", default=100, show_default=True, type=click.IntRange(min=1), help="Independent replications.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder [default: results/<scenario name>].")
@click.option("--method", type=click.Choice(["montecarlo", "exact"]), default="montecarlo", show_default=True,
              help="Monte Carlo simulation, or exact expected values by Markov-chain algebra where that is exact.")
@click.option("--quiet", is_flag=True, help="No progress bar or tables.")
@click.option("--report", "with_report", is_flag=True, help="Also write the HTML report (DIR/report/report.html).")
def run(scenario, seed, replications, out, method, quiet, with_report):
    """Run SCENARIO and print a summary; tables are written as Parquet files."""
    from rich.console import Console

    from ..store import manifest, write_folder
    from .terminal import print_exact, print_summary

    sc = load_or_exit(scenario)
    out = Path(out) if out else Path("results") / sc.name
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
        write_folder(out, {"segments": ex.segments, "payments": ex.payments, "costs": ex.costs, "caseload": ex.caseload},
                     ex.summary(), man)
        if not quiet:
            print_exact(ex, console)
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
    write_folder(out, result.tables(), result.summary, man)
    if not quiet:
        print_summary(result.summary, console, str(out))
    if with_report:
        from ..report import build_report

        html = build_report(out)
        console.print(f"Report: [bold]{html}[/bold]")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files):
    """Check scenario FILES; print OK or every problem found (exit code 2 if any)."""
    bad = False
    for f in files:
        try:
            sc = load_scenario(f)
            click.echo(f"{f}: OK ({sc.name}: {len(sc.segments)} segments, {len(sc.pathway.states)} states, "
                       f"{len(sc.contract.payments)} payment lines, {sc.months} months)")
        except ScenarioError as exc:
            bad = True
            for p, rule in exc.problems:
                click.echo(f"{f}: {p + ': ' if p else ''}{rule}", err=True)
    if bad:
        sys.exit(EXIT_INPUT)


@click.command()
def schema():
    """Print the JSON Schema of scenario files."""
    click.echo(json.dumps(json_schema(), indent=2))


COMMANDS = [run, validate, schema]
