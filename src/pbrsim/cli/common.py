"""What every command shares: one-line input errors, problem lists, scenario loading, the output rule, the progress bar."""

from __future__ import annotations

import sys
from contextlib import contextmanager

import click

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..scenario.schema import ScenarioError, load_scenario

EXIT_INPUT = 2
EXIT_ENVIRONMENT = 1  # the machine refused a write (full disk, no permission); nothing half-written
err_console = Console(stderr=True)


def fail_input(message: str):
    """One-line input error (the message is printed as plain text: field paths keep their brackets); exit 2."""
    err_console.print("[bold red]error:[/bold red] ", end="", highlight=False)
    err_console.print(message, highlight=False, markup=False, soft_wrap=True)
    sys.exit(EXIT_INPUT)


def fail_environment(message: str):
    """One-line error for a write the machine refused (the earlier results are intact); exit 1."""
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


def exit_with_problems(source: str, problems: list[tuple[str, str]], advice: str):
    """Every problem of a file as ``FILE: field.path: rule``, then what to do; exit 2."""
    n = len(problems)
    err_console.print(f"[bold red]{source}: {n} problem{'s' if n != 1 else ''}[/bold red]", highlight=False)
    for p, rule in problems:
        err_console.print(f"  {source}: {p + ': ' if p else ''}{rule}", highlight=False, markup=False, soft_wrap=True)
    err_console.print(advice)
    sys.exit(EXIT_INPUT)


def load_or_exit(path: str):
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        exit_with_problems(path, exc.problems,
                           "Nothing was run or written. Fix the file and try again (fields are described in docs/scenarios.md).")


def progress_bar(console: Console, disable: bool = False) -> Progress:
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
