"""Commands for experiments: ``pbrsim compare``, ``pbrsim batch`` and ``pbrsim summarise``."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import click
from rich.console import Console

from .common import (allow_large_option, err_console, exit_with_error, fail_environment, fail_input,
                     overwrite_option, progress_bar, writing)
from ..scenario.schema import ScenarioError

EXIT_INTERRUPTED = 130


def _dataset_names() -> list[str]:
    """The names a dataset uses at its top level (experiments/dataset.py, experiments/batch.py)."""
    from ..experiments.batch import SUMMARY_CSV, SUMMARY_PARQUET
    from ..experiments.dataset import LOCK, MANIFEST, RUNS

    return [MANIFEST, "experiment.yaml", "designs", RUNS, SUMMARY_PARQUET, SUMMARY_CSV, LOCK]


def _claim_dataset_folder(out: Path, overwrite: bool) -> None:
    """The output rule for a dataset folder: refuse one holding other files unless --overwrite; with it,
    replace an earlier pbrsim output of another kind (its own files only) and keep everything else."""
    from ..store import KIND_EXPERIMENT, check_out, remove_own_files

    with writing():
        own = check_out(out, KIND_EXPERIMENT, overwrite=overwrite, names=_dataset_names())
        if own is not None and own.kind != KIND_EXPERIMENT:
            try:
                remove_own_files(out, own.files)
            except OSError as exc:
                fail_environment(f"cannot remove pbrsim's earlier files in {out}: {exc.strerror or exc}")


def _load_experiment_or_exit(path: str):
    from ..experiments.experiment import load_experiment

    try:
        return load_experiment(path)
    except ScenarioError as exc:
        exit_with_error(exc, "Nothing was run or written. Fix the file and try again "
                           "(the format is described in docs/experiments.md).")


def _execution_options(f):
    f = allow_large_option(f)
    f = click.option("--quiet", is_flag=True, help="No progress bar or tables.")(f)
    f = click.option("--force", is_flag=True,
                     help="Accept a changed experiment file: keep the runs that are still valid, rerun the rest.")(f)
    f = click.option("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address (with --executor dask); "
                     "default: start a LocalCluster.")(f)
    f = click.option("--workers", "-j", type=click.IntRange(min=1), help="Worker processes [default: all cores].")(f)
    f = click.option("--executor", type=click.Choice(["process", "serial", "dask"]), default="process", show_default=True,
                     help="Local process pool, this process only, or a dask.distributed cluster (pip install 'pbrsim[dask]').")(f)
    return f


def _execute(exp, out: Path, *, executor, workers, scheduler, force, quiet, tables=None, label="running", overwrite=False):
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
                             on_start=on_start, on_run=on_run, overwrite=overwrite)
    except (DatasetError, ExecutorUnavailable) as exc:
        fail_input(str(exc))
    except OSError as exc:  # full disk, no permission: every run on disk is complete, so the batch resumes
        fail_environment(f"cannot write {out}: {exc.strerror or exc}. The runs finished so far are kept; "
                         "free the space (or fix the permission) and run the same command again to finish the rest.")
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
@overwrite_option
def compare(experiment, out, executor, workers, scheduler, force, quiet, with_report, overwrite):
    """Run every design of EXPERIMENT and print them side by side, with paired differences from the baseline."""
    from ..experiments.batch import resummarise
    from ..store import KIND_REPORT, check_out, output_path

    exp = _load_experiment_or_exit(experiment)
    console = Console()
    report_out = (Path(out) / "report") if out else output_path("results", exp.name, "report")
    if out:
        _claim_dataset_folder(Path(out), overwrite)
    if with_report:
        with writing():
            check_out(report_out, KIND_REPORT, overwrite=overwrite)
    with tempfile.TemporaryDirectory(prefix="pbrsim-compare-") as tmp:
        target = Path(out) if out else Path(tmp) / "dataset"
        # the report's charts over time need the monthly tables; a plain comparison keeps only per-run figures
        _execute(exp, target, executor=executor, workers=workers, scheduler=scheduler, force=force, quiet=quiet,
                 tables=None if with_report else ("replications",), label="comparing", overwrite=overwrite)
        summary, manifest = resummarise(target)
        if not quiet:
            _print(summary, manifest, console)
            if out:
                console.print(f"Per-replication figures and summary written to [bold]{out}[/bold].")
        if with_report:
            from ..report import build_report

            with writing():
                html = build_report(target, out=report_out, overwrite=overwrite)
            console.print(f"Report: [bold]{html}[/bold]")


@click.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Dataset folder [default: results/<experiment name>].")
@_execution_options
@overwrite_option
def batch(experiment, out, executor, workers, scheduler, force, quiet, overwrite):
    """Run every design x replication of EXPERIMENT into a Parquet dataset; rerun to resume after an interruption."""
    from ..store import output_path

    exp = _load_experiment_or_exit(experiment)
    out = Path(out) if out else output_path("results", exp.name)
    _claim_dataset_folder(out, overwrite)
    manifest = _execute(exp, out, executor=executor, workers=workers, scheduler=scheduler, force=force, quiet=quiet,
                        overwrite=overwrite)
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
    from ..store import KIND_EXPERIMENT, require_kind

    with writing():
        require_kind(directory, KIND_EXPERIMENT, "`pbrsim batch` or `pbrsim compare --out`")  # summary files are written only into a dataset pbrsim wrote
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
