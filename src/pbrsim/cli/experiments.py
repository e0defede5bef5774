"""Commands for experiments: ``pbrsim compare``, ``pbrsim batch`` and ``pbrsim summarise``."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from .common import (allow_large_option, err_console, exit_with_error, fail_environment, fail_input,
                     overwrite_option, progress_bar, writing)
from ..scenario.schema import ScenarioError

EXIT_INTERRUPTED = 130
EXIT_STOPPED = 1
COMPARE_SCRATCH = "pbrsim-compare-"  # compare's folder in the system temporary folder (removed when stale)


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
    f = click.option("--chunk", type=click.IntRange(min=1), metavar="N",
                     help="Replications per task and per file [default: about an eighth of the replications, at most 50]; "
                     "results never depend on it.")(f)
    f = click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
                     metavar="SECONDS", help="How long to wait for the Dask scheduler given with --scheduler to answer.")(f)
    f = click.option("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address (with --executor dask); "
                     "default: start a LocalCluster.")(f)
    f = click.option("--workers", "-j", type=click.IntRange(min=1), help="Worker processes [default: all cores].")(f)
    f = click.option("--executor", type=click.Choice(["process", "serial", "dask"]), default="process", show_default=True,
                     help="Local process pool, this process only, or a dask.distributed cluster (pip install 'pbrsim[dask]').")(f)
    return f


def _quiet_dask() -> None:
    """Silence dask.distributed's own error logs (tracebacks), which would bury the one-line errors of a batch."""
    try:
        import distributed  # noqa: F401  (sets its loggers' levels when imported)
    except ImportError:
        return
    for name in list(logging.root.manager.loggerDict):
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _execute(exp, out: Path, *, executor, workers, scheduler, connect_timeout, chunk, force, quiet, tables=None,
             label="running", kept=True, overwrite=False):
    """Run the batch with a progress bar; exit 2 for input problems (an unusable --out or --scheduler: nothing
    written), 130 when interrupted, 1 when the executor failed part-way (both say how to resume, or, when the
    runs are not ``kept``, how to keep them next time)."""
    from ..experiments.batch import BatchInterrupted, BatchStopped, run_batch
    from ..experiments.dataset import DatasetError
    from ..experiments.executors import ExecutorUnavailable

    if scheduler and executor != "dask":
        fail_input("--scheduler needs --executor dask")
    if executor == "dask":
        _quiet_dask()
    console = Console(stderr=True)
    bar = progress_bar(console, disable=quiet)
    state = {}

    def on_start(todo, done):
        state["task"] = bar.add_task(f"{label} {exp.name}" + (f" ({done} runs already done)" if done else ""),
                                     total=todo, rate="")
        state["t0"] = time.perf_counter()

    def on_run(result):
        bar.advance(state["task"], len(result.reps))
        n = bar.tasks[0].completed
        bar.update(state["task"], rate=f"{n / max(time.perf_counter() - state['t0'], 1e-9):.1f} runs/s")

    try:
        with bar:
            return run_batch(exp, out, executor=executor, workers=workers, scheduler=scheduler,
                             connect_timeout=connect_timeout, chunk=chunk, force=force, tables=tables,
                             on_start=on_start, on_run=on_run, overwrite=overwrite)
    except (DatasetError, ExecutorUnavailable) as exc:
        fail_input(str(exc))
    except OSError as exc:  # full disk, no permission: every run on disk is complete, so the batch resumes
        fail_environment(f"cannot write {out}: {exc.strerror or exc}. The runs finished so far are kept; "
                         "free the space (or fix the permission) and run the same command again to finish the rest.")
    except BatchInterrupted as exc:
        if kept:
            err_console.print(f"Interrupted: {exc.done} of {exc.total} runs are saved in {exc.out}. "
                              "Run the same command again to finish the rest.", highlight=False)
        else:
            err_console.print(f"Interrupted after {exc.done} of {exc.total} runs; none were kept (with --out DIR they "
                              "are, and the same command then finishes the rest).", highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    except BatchStopped as exc:
        err_console.print("[bold red]error:[/bold red] ", end="", highlight=False)
        where = (f"{exc.done} of {exc.total} runs are saved in {exc.out}; run the same command again to finish the rest"
                 if kept else f"{exc.done} of {exc.total} runs were done, none kept (with --out DIR they are, and the "
                 "same command then finishes the rest)")
        err_console.print(f"stopped: {exc.reason}. {where} (with fewer --workers if memory is short).",
                          highlight=False, markup=False, soft_wrap=True)
        sys.exit(EXIT_STOPPED)


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
def compare(experiment, out, executor, workers, scheduler, connect_timeout, chunk, force, quiet, with_report, overwrite):
    """Run every design of EXPERIMENT and print them side by side, with paired differences from the baseline."""
    import pandas as pd

    from ..experiments import scratch
    from ..experiments.batch import SUMMARY_PARQUET
    from ..store import KIND_REPORT, check_out, output_path

    exp = _load_experiment_or_exit(experiment)
    console = Console()
    report_out = (Path(out) / "report") if out else output_path("results", exp.name, "report")
    if out:
        _claim_dataset_folder(Path(out), overwrite)
    if with_report:
        with writing():
            check_out(report_out, KIND_REPORT, overwrite=overwrite)
    scratch.remove_stale(COMPARE_SCRATCH)
    tmp = None if out else scratch.make(COMPARE_SCRATCH)
    try:
        target = Path(out) if out else tmp / exp.name
        # the report's charts over time need the monthly tables; a plain comparison keeps only per-run figures
        manifest = _execute(exp, target, executor=executor, workers=workers, scheduler=scheduler,
                            connect_timeout=connect_timeout, chunk=chunk, force=force, quiet=quiet,
                            tables=None if with_report else ("replications",), label="comparing", kept=out is not None,
                            overwrite=overwrite)
        summary = pd.read_parquet(target / SUMMARY_PARQUET)  # the batch has just summarised the dataset
        if not quiet:
            _print(summary, manifest, console)
            if out:
                console.print(f"Per-replication figures and summary written to [bold]{out}[/bold].")
        if with_report:
            from ..report import build_report

            with writing():
                html = build_report(target, out=report_out, overwrite=overwrite)
            console.print(f"Report: [bold]{html}[/bold]")
    finally:
        if tmp is not None:
            scratch.release(tmp)


@click.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Dataset folder [default: results/<experiment name>].")
@_execution_options
@overwrite_option
def batch(experiment, out, executor, workers, scheduler, connect_timeout, chunk, force, quiet, overwrite):
    """Run every design x replication of EXPERIMENT into a Parquet dataset; rerun to resume after an interruption."""
    from ..store import output_path

    exp = _load_experiment_or_exit(experiment)
    out = Path(out) if out else output_path("results", exp.name)
    _claim_dataset_folder(out, overwrite)
    manifest = _execute(exp, out, executor=executor, workers=workers, scheduler=scheduler,
                        connect_timeout=connect_timeout, chunk=chunk, force=force, quiet=quiet, overwrite=overwrite)
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
