"""Commands for experiments: ``pbrsim compare``, ``pbrsim batch`` and ``pbrsim summarise``."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import click
from rich.console import Console

from .common import err_console, exit_with_problems, fail_input, progress_bar
from ..scenario.schema import ScenarioError

EXIT_INTERRUPTED = 130


def _load_experiment_or_exit(path: str):
    from ..experiments.experiment import load_experiment

    try:
        return load_experiment(path)
    except ScenarioError as exc:
        exit_with_problems(path, exc.problems, "Nothing was run or written. Fix the file and try again "
                           "(the format is described in docs/experiments.md).")


def _execution_options(f):
    f = click.option("--quiet", is_flag=True, help="No progress bar or tables.")(f)
    f = click.option("--force", is_flag=True,
                     help="Accept a changed experiment file: keep the runs that are still valid, rerun the rest.")(f)
    f = click.option("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address (with --executor dask); "
                     "default: start a LocalCluster.")(f)
    f = click.option("--workers", "-j", type=click.IntRange(min=1), help="Worker processes [default: all cores].")(f)
    f = click.option("--executor", type=click.Choice(["process", "serial", "dask"]), default="process", show_default=True,
                     help="Local process pool, this process only, or a dask.distributed cluster (pip install 'pbrsim[dask]').")(f)
    return f


def _execute(exp, out: Path, *, executor, workers, scheduler, force, quiet, tables=None, label="running"):
    """Run the batch with a progress bar; exit 2 for input problems, 130 when interrupted."""
    from ..experiments.batch import BatchInterrupted, run_batch
    from ..experiments.dataset import DatasetError
    from ..experiments.executors import ExecutorUnavailable

    if scheduler and executor != "dask":
        fail_input("--scheduler needs --executor dask")
    console = Console(stderr=True)
    bar = progress_bar(console, disable=quiet)
    state = {}

    def on_start(todo, done):
        state["task"] = bar.add_task(f"{label} {exp.name}" + (f" ({done} runs already done)" if done else ""),
                                     total=todo, rate="")
        state["t0"] = time.perf_counter()

    def on_run(_result):
        bar.advance(state["task"])
        n = bar.tasks[0].completed
        bar.update(state["task"], rate=f"{n / max(time.perf_counter() - state['t0'], 1e-9):.1f} runs/s")

    try:
        with bar:
            return run_batch(exp, out, executor=executor, workers=workers, scheduler=scheduler, force=force, tables=tables,
                             on_start=on_start, on_run=on_run)
    except (DatasetError, ExecutorUnavailable) as exc:
        fail_input(str(exc))
    except BatchInterrupted as exc:
        err_console.print(f"Interrupted: {exc.done} of {exc.total} runs are saved in {exc.out}. "
                          "Run the same command again to finish the rest.", highlight=False)
        sys.exit(EXIT_INTERRUPTED)


def _print(summary, manifest, console: Console):
    from ..analysis.compare import print_comparison

    print_comparison(summary, console, title=manifest["experiment"]["name"], currency=manifest.get("currency", "GBP"),
                     replications=manifest["replications"], seed=manifest["seed"])


@click.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False),
              help="Also keep the per-replication figures and summary here (a dataset `pbrsim summarise` can read).")
@click.option("--report", "with_report", is_flag=True,
              help="Also write the HTML report (to OUT/report, or results/<experiment>/report without --out).")
@_execution_options
def compare(experiment, out, executor, workers, scheduler, force, quiet, with_report):
    """Run every design of EXPERIMENT and print them side by side, with paired differences from the baseline."""
    import pandas as pd

    from ..experiments.batch import SUMMARY_PARQUET

    exp = _load_experiment_or_exit(experiment)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="pbrsim-compare-") as tmp:
        target = Path(out) if out else Path(tmp) / exp.name
        # the report's charts over time need the monthly tables; a plain comparison keeps only per-run figures
        manifest = _execute(exp, target, executor=executor, workers=workers, scheduler=scheduler, force=force, quiet=quiet,
                            tables=None if with_report else ("replications",), label="comparing")
        summary = pd.read_parquet(target / SUMMARY_PARQUET)  # the batch has just summarised the dataset
        if not quiet:
            _print(summary, manifest, console)
            if out:
                console.print(f"Per-replication figures and summary written to [bold]{out}[/bold].")
        if with_report:
            from ..report import build_report

            html = build_report(target, out=(Path(out) / "report") if out else Path("results") / exp.name / "report")
            console.print(f"Report: [bold]{html}[/bold]")


@click.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Dataset folder [default: results/<experiment name>].")
@_execution_options
def batch(experiment, out, executor, workers, scheduler, force, quiet):
    """Run every design x replication of EXPERIMENT into a Parquet dataset; rerun to resume after an interruption."""
    exp = _load_experiment_or_exit(experiment)
    out = Path(out) if out else Path("results") / exp.name
    manifest = _execute(exp, out, executor=executor, workers=workers, scheduler=scheduler, force=force, quiet=quiet)
    if not quiet:
        s = manifest["sessions"][-1]
        click.echo(f"{exp.name}: {manifest['runs']['done']} runs ({len(exp.designs)} designs x {exp.replications} replications; "
                   f"{s['runs_run']} run now, {s['runs_skipped']} already done) in {out}")
        click.echo(f"  tables:  pandas.read_parquet('{out}/runs/<table>')  (clients, ledger, monthly, ..., replications)")
        click.echo(f"  summary: {out}/summary.csv, {out}/summary.parquet; `pbrsim summarise {out}` prints the comparison")


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--quiet", is_flag=True, help="Write the summary files without printing the tables.")
def summarise(directory, quiet):
    """Recompute summary.parquet and summary.csv of the dataset in DIRECTORY and print the comparison."""
    from ..experiments.batch import resummarise
    from ..experiments.dataset import DatasetError

    try:
        summary, manifest = resummarise(directory)
    except DatasetError as exc:
        fail_input(str(exc))
    if manifest.get("status") != "complete":
        err_console.print(f"[yellow]note:[/yellow] the batch is not complete ({manifest.get('status')}); the summary uses the "
                          "runs finished so far. Rerun the same command to finish it.", highlight=False)
    if not quiet:
        _print(summary, manifest, Console())
        click.echo(f"Summary written to {Path(directory) / 'summary.csv'} and summary.parquet.")


COMMANDS = [compare, batch, summarise]
