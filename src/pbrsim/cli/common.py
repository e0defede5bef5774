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


def load_or_exit(path: str):
    try:
        return load_scenario(path)
    except ScenarioError as exc:
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
