"""The ``pbrsim`` command line: the command group, with every command registered here in one place.

Each command's module is imported only when that command runs (or ``--help`` lists them all), so that
``pbrsim --version`` and ``pbrsim validate`` start without loading what simulation needs.
"""

from __future__ import annotations

import importlib
import os

import click

from .. import __version__

# command name -> the module of pbrsim.cli that defines it (in that module's COMMANDS)
COMMANDS = {
    "run": "run",
    "validate": "run",
    "schema": "run",
    "compare": "experiments",
    "batch": "experiments",
    "summarise": "experiments",
    "report": "report",
    "export": "report",
    "stress": "stress",
    "design": "design",
    "import-indigo": "indigo",
    "calibrate": "calibrate",
    "portfolio": "portfolio",
    "completion": "completion",
    "serve": "serve",
}


class _Commands(click.Group):
    """A command group that imports a command's module when the command is first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            module = importlib.import_module(f"{__package__}.{COMMANDS[name]}")
            for command in module.COMMANDS:
                self.add_command(command)
        return self.commands.get(name)


@click.group(cls=_Commands)
@click.version_option(__version__, prog_name="pbrsim")
def main():
    """Simulate payment-by-results contracts: outcomes, payments, provider cash flow and parking."""
    # pydantic's plugins (validation tracing for developers) are off in the command line unless asked for
    # (PYDANTIC_DISABLE_PLUGINS set, even empty): looking for them scans every installed package, about a
    # tenth of `pbrsim validate`'s time
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


if __name__ == "__main__":
    main()
