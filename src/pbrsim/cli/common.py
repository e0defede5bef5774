"""What every command shares: one-line input errors, problem lists, scenario loading, the output rule, the progress bar."""

from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

import click

from ..scenario import limits
from ..scenario.schema import ScenarioError, load_scenario

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

EXIT_INPUT = 2
EXIT_ENVIRONMENT = 1  # the machine refused a write (full disk, no permission); nothing half-written


@cache
def _err_console() -> "Console":
    from rich.console import Console

    return Console(stderr=True)


def __getattr__(name: str):
    if name == "err_console":  # the console on stderr, made on first use (rich loads only when something is printed)
        return _err_console()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fail_input(message: str):
    """One-line input error (the message is printed as plain text: field paths keep their brackets); exit 2."""
    err_console = _err_console()
    err_console.print("[bold red]error:[/bold red] ", end="", highlight=False)
    err_console.print(message, highlight=False, markup=False, soft_wrap=True)
    sys.exit(EXIT_INPUT)


def fail_environment(message: str):
    """One-line error for a write the machine refused (the earlier results are intact); exit 1."""
    err_console = _err_console()
    err_console.print("[bold red]error:[/bold red] ", end="", highlight=False)
    err_console.print(message, highlight=False, markup=False, soft_wrap=True)
    sys.exit(EXIT_ENVIRONMENT)


@contextmanager
def writing():
    """The output rule (docs/outputs.md) at the command line: a refused output folder exits 2, a write the
    machine refused exits 1, each with one line saying what to do."""
    from ..store import OutputRefused, WriteFailed

    try:
        yield
    except OutputRefused as exc:
        fail_input(str(exc))
    except WriteFailed as exc:
        fail_environment(str(exc))


def json_option(f):
    """``--json``: the summary as JSON on standard output, for scripts (no tables, no progress bar)."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the summary as JSON on standard output, for scripts (no tables or progress bar; "
                             "money in pounds, rates as fractions).")(f)


def print_json(obj) -> None:
    """Write ``obj`` as one JSON document on standard output (NaN written as null)."""
    import json

    from ..store import jsonable

    click.echo(json.dumps(jsonable(obj), ensure_ascii=False, allow_nan=False))


def overwrite_option(f):
    return click.option("--overwrite", is_flag=True,
                        help="Write into an output that holds other files: pbrsim's own files there are replaced, "
                             "files it did not write are never changed (docs/outputs.md).")(f)


def exit_with_problems(source: str, problems: list[tuple[str, str]], advice: str, sources: list[str] | None = None):
    """Every problem as ``FILE: field.path: rule`` (``sources``: the file of each problem, default ``source``),
    then what to do; exit 2."""
    n = len(problems)
    from rich.markup import escape

    err_console = _err_console()
    err_console.print(f"[bold red]{escape(source)}: {n} problem{'s' if n != 1 else ''}[/bold red]", highlight=False, soft_wrap=True)
    for src, (p, rule) in zip(sources or [source] * n, problems):
        err_console.print(f"  {src}: {p + ': ' if p else ''}{rule}", highlight=False, markup=False, soft_wrap=True)
    err_console.print(advice, highlight=False, markup=False)
    sys.exit(EXIT_INPUT)


def exit_with_error(exc: ScenarioError, advice: str):
    """``exit_with_problems`` for a ScenarioError: each problem under the file it is in."""
    exit_with_problems(exc.source, exc.problems, advice, exc.sources)


def exit_if_wrong_kind(path: str, expected: str) -> None:
    """One line and exit 2 when ``path`` is plainly another kind of file (an experiment given to `run`, say)."""
    from ..scenario.kinds import wrong_kind

    message = wrong_kind(path, expected)
    if message:
        fail_input(message)


def load_or_exit(path: str):
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        exit_if_wrong_kind(path, "scenario")
        exit_with_error(exc, "Nothing was run or written. Fix the file and try again (fields are described in docs/scenarios.md).")


def allow_large_option(f):
    """``--allow-large``: the command runs with the larger size limits (docs/scenarios.md, "Limits")."""

    @functools.wraps(f)
    def wrapper(*args, allow_large: bool = False, **kwargs):
        with limits.allowing_large(allow_large):
            return f(*args, **kwargs)

    return click.option(limits.ALLOW_LARGE_FLAG, "allow_large", is_flag=True,
                        help="Lift the size limits on inputs and runs, for machines with more memory "
                             f"(the same as {limits.ALLOW_LARGE_ENV}=1; docs/scenarios.md, Limits).")(wrapper)


def run_size_or_exit(sc, replications: int, source: str, what: str = "--replications"):
    """Refuse (exit 2) a run of ``replications`` of ``sc`` beyond the memory limit or 64-bit money totals."""
    from ..scenario.bounds import run_problems

    problems = run_problems(sc, replications, limits.active(), what)
    if problems:
        exit_with_problems(source, problems, "Nothing was run or written (docs/scenarios.md, Limits).")


def progress_bar(console: "Console", disable: bool = False) -> "Progress":
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
        transient=True,
    )


# ---------------------------------------------------------------------------------------------
# One flag vocabulary (docs/cli.md): every command that takes one of these takes it under the same name,
# with the same short form and the same meaning. tests/test_cli_vocabulary.py walks every command.

EXECUTORS = ("process", "serial", "dask")
EXECUTOR_HELP = ("Where the replications run: a local process pool, this process only, or a dask.distributed "
                 "cluster (pip install 'pbrsim[dask]').")
WORKERS_HELP = "Worker processes [default: all cores]."
SCHEDULER_HELP = "dask.distributed scheduler address (with --executor dask) [default: start a local cluster]."
QUIET_HELP = "No progress bar or tables."
REPORT_HELP = "Also write the HTML report."
FORMAT_HELP = ("How the summary is printed: a table for people, or CSV for programs (a tidy table, one row per figure; "
               "money in pounds, rates as fractions). --json prints the summary as one JSON document instead.")


def seed_option(default: int | None = 0, help: str = "Root random seed.", **kw):
    """``--seed``: the root random seed (``default`` None: the file's own)."""
    extra = {"show_default": True} if default is not None else {}
    return click.option("--seed", default=default, type=click.IntRange(min=0), help=help, **extra, **kw)


def replications_option(default: int | None = 100, help: str = "Independent replications.", min: int = 1):
    """``-n/--replications`` (``default`` None: the file's own)."""
    extra = {"show_default": True} if default is not None else {}
    return click.option("--replications", "-n", default=default, type=click.IntRange(min=min), help=help, **extra)


def workers_option(help: str = WORKERS_HELP):
    """``-j/--workers``: worker processes."""
    return click.option("--workers", "-j", type=click.IntRange(min=1), default=None, help=help)


def executor_option(f):
    """``--executor``: process, serial or dask."""
    return click.option("--executor", type=click.Choice(EXECUTORS), default="process", show_default=True, help=EXECUTOR_HELP)(f)


def scheduler_option(f):
    """``--scheduler ADDRESS``: a dask.distributed scheduler."""
    return click.option("--scheduler", metavar="ADDRESS", help=SCHEDULER_HELP)(f)


def out_option(help: str, file: bool = False, **kw):
    """``-o/--out``: where the output goes (a folder, or a file for commands that write one file)."""
    kind = click.Path(dir_okay=False) if file else click.Path(file_okay=False)
    return click.option("--out", "-o", type=kind, metavar="FILE" if file else "DIR", help=help, **kw)


def quiet_option(help: str = QUIET_HELP):
    """``-q/--quiet``."""
    return click.option("--quiet", "-q", is_flag=True, help=help)


def report_option(help: str = REPORT_HELP):
    """``--report``: also write the HTML report (passed to the command as ``with_report``)."""
    return click.option("--report", "with_report", is_flag=True, help=help)


def format_option(f):
    """``--format table|csv``."""
    return click.option("--format", "fmt", type=click.Choice(["table", "csv"]), default="table", show_default=True,
                        help=FORMAT_HELP)(f)


def deprecated_alias(old: str, dest: str, new: str, flag: bool = True, **kw):
    """A hidden old spelling of an option that still works, with a note on stderr naming the new one."""

    def note(ctx, param, value):
        if value:
            _err_console().print(f"[yellow]note:[/yellow] {old} is now {new}; the old spelling will be removed in a later version.",
                                 highlight=False)
        return value

    return click.option(old, dest, is_flag=flag, hidden=True, expose_value=True, callback=note,
                        help=f"Old spelling of {new}.", **kw)


def print_frame(df, fmt: str) -> None:
    """A tidy table on stdout as CSV (for ``--format csv``)."""
    click.echo(df.to_csv(index=False), nl=False)
