"""What every command shares: one-line input errors, problem lists, scenario loading, the progress bar."""

from __future__ import annotations

import sys
from functools import cache
from typing import TYPE_CHECKING

from ..scenario.schema import ScenarioError, load_scenario

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

EXIT_INPUT = 2


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


def exit_with_problems(source: str, problems: list[tuple[str, str]], advice: str):
    """Every problem of a file as ``FILE: field.path: rule``, then what to do; exit 2."""
    n = len(problems)
    err_console = _err_console()
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
