"""Commands on one scenario file: run, validate, schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..scenario.schema import ScenarioError, file_hash, json_schema
from .common import (EXIT_INPUT, allow_large_option, executor_option, exit_with_problems, fail_input, format_option, json_option, load_or_exit,
                     out_option, overwrite_option, print_frame, print_json, progress_bar, quiet_option, replications_option, report_option,
                     run_size_or_exit, scheduler_option, seed_option, workers_option, writing)

PARALLEL_FROM = 50  # replications from which `run` may use worker processes by default (below, starting them costs more)
PARALLEL_CLIENTS = 1_000_000  # ... and expected clients over all replications: the batched engine runs smaller jobs
                              # faster in one process than worker processes take to start (about 1.5 s)


def check_value_or_exit(sc, path: str) -> None:
    """Value input the schema cannot check (unit-cost keys, deflators, appraisal length): exit 2 before running."""
    if sc.value is None:  # nothing to check (and the appraisal, which loads pandas, is not needed)
        return
    from ..value.appraisal import check as check_value

    try:
        check_value(sc, path)
    except ScenarioError as exc:
        exit_with_problems(path, exc.problems, "Nothing was run or written. Fix the value section (docs/value.md) and try again.")


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@seed_option()
@replications_option(100)
@out_option("Output folder [default: results/<scenario name>].")
@click.option("--method", type=click.Choice(["montecarlo", "exact"]), default="montecarlo", show_default=True,
              help="Monte Carlo simulation, or exact expected values by Markov-chain algebra where that is exact.")
@workers_option(f"Worker processes [default: all cores from {PARALLEL_FROM} replications and {PARALLEL_CLIENTS:,} expected clients "
                "in all, else 1]; results never depend on it.")
@executor_option
@scheduler_option
@quiet_option()
@report_option("Also write the HTML report (DIR/report/report.html).")
@format_option
@json_option
@overwrite_option
@allow_large_option
def run(scenario, seed, replications, out, method, workers, executor, scheduler, quiet, with_report, fmt, as_json, overwrite):
    """Run SCENARIO and print a summary; tables are written as Parquet files.

    Running again into the same folder replaces the earlier results (and their report); a folder holding
    anything else is refused unless --overwrite (docs/outputs.md)."""
    if scheduler and executor != "dask":
        fail_input("--scheduler needs --executor dask")
    if fmt != "table" and as_json:
        fail_input("--format csv and --json both print to standard output; choose one")
    if fmt != "table":
        quiet = True  # the table goes to stdout as CSV instead
    from rich.console import Console

    from ..store import KIND_REPORT, KIND_RUN, check_out, manifest, output_path, write_folder
    from .terminal import print_exact, print_summary

    quiet = quiet or as_json
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
        if fmt != "table":
            fail_input("--format csv prints the Monte Carlo summary; drop --method exact (its tables are written as Parquet)")
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
        if as_json:
            print_json(summary)
        return

    from ..experiments.executors import ExecutorFailed, ExecutorUnavailable
    from ..simulate import simulate

    if workers is None and executor == "process" and (replications < PARALLEL_FROM or _expected_clients(sc) * replications
                                                          < PARALLEL_CLIENTS):
        workers = 1
    with progress_bar(console, disable=quiet) as bar:
        task = bar.add_task(f"simulating {sc.name}", total=replications, rate="")
        def tick(k):
            bar.advance(task, k)
            done = bar.tasks[0].completed
            elapsed = bar.tasks[0].elapsed or 1e-9
            bar.update(task, rate=f"{done / elapsed:.1f} runs/s")
        try:
            result = simulate(sc, seed=seed, replications=replications, progress=tick, workers=workers, executor=executor,
                              scheduler=scheduler)
        except (ExecutorUnavailable, ExecutorFailed) as exc:  # no dask, the scheduler gone, workers killed: nothing written
            fail_input(f"{executor} executor: {exc}")
    with writing():
        write_folder(out, result.arrow_tables(), result.summary, man, overwrite=overwrite)
    if fmt != "table":
        print_frame(result.summary_table(), fmt)
    if not quiet:
        print_summary(result.summary, console, str(out))
        if "value" in result.summary:
            from .value_tables import print_value

            print_value(result.summary["value"], console, sc.currency)
    if with_report:
        from ..report import build_report

        with writing():
            html = build_report(out, overwrite=overwrite)
        if not quiet:
            console.print(f"Report: [bold]{html}[/bold]")
    if as_json:
        print_json(result.summary)


def _expected_clients(sc) -> float:
    """Expected referrals of one replication (the work a replication is)."""
    from ..engine.referrals import expected_totals

    return float(expected_totals(sc).sum())


def _check_one(path: str) -> str:
    """Check one file of whatever kind it is; the OK line, or ScenarioError with every problem."""
    from ..scenario.kinds import KINDS, read_with_kind
    from ..scenario.schema import validate_file

    kind, data = read_with_kind(path)  # a file that cannot be read is reported below, by the scenario reader
    kind = kind or "scenario"
    if kind == "scenario":
        sc = validate_file(path, data=data if isinstance(data, dict) else None)[1]  # the file read once
        if sc.value is not None:  # the value checks need the unit-cost table and numpy: only with a value section
            from ..value.appraisal import check as check_value

            check_value(sc, path)
        return (f"{path}: OK (scenario {sc.name}: {len(sc.segments)} segments, {len(sc.pathway.states)} states, "
                f"{len(sc.contract.payments)} payment lines, {sc.months} months)")
    if kind == "experiment":
        from ..experiments.experiment import load_experiment

        exp = load_experiment(path)
        return (f"{path}: OK (experiment {exp.name}: {len(exp.designs)} designs x {exp.replications} replications, "
                f"baseline {exp.baseline.name}; run it with pbrsim compare or pbrsim batch)")
    if kind == "stresses":
        from ..stress.catalogue import load_stresses_file

        sf = load_stresses_file(path)
        return (f"{path}: OK (stresses file: {len(sf.user)} stresses of its own; names and paths are checked against a "
                "scenario by pbrsim stress SCENARIO --stresses FILE)")
    if kind == "targets":
        from ..library.calibrate import load_targets

        tg = load_targets(path)
        return (f"{path}: OK (calibration targets: {len(tg.targets)} targets, {len(tg.parameters)} parameters; "
                "checked against a scenario by pbrsim calibrate SCENARIO FILE --check)")
    if kind == "portfolio":
        from ..portfolio.portfolio import load_portfolio

        pf = load_portfolio(path)
        return f"{path}: OK (portfolio {pf.name}: {len(pf.members)} contracts x {pf.replications} replications)"
    if kind == "design":
        from ..design.problem import load_problem

        pr = load_problem(path)
        return (f"{path}: OK (design problem {pr.name}: {len(pr.levers)} levers, {len(pr.constraints)} constraints, base "
                f"{pr.base_file.name}; run it with pbrsim design FILE)")
    label, command = KINDS[kind]
    raise ScenarioError(path, [("", f"this is {label}; validate cannot check it yet: {command.replace('FILE', path)} does")])


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@allow_large_option
def validate(files):
    """Check FILES of any kind (scenario, experiment, stresses, calibration targets, portfolio, design problem); print OK
    or every problem found (exit code 2 if any)."""
    bad = False
    for f in files:
        try:
            click.echo(_check_one(f))
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
