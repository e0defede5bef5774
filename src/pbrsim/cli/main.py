"""The ``pbrsim`` command line: the command group, with every command registered here in one place."""

from __future__ import annotations

import click

from .. import __version__
from . import calibrate, design, experiments, indigo, report, run, stress


@click.group()
@click.version_option(__version__, prog_name="pbrsim")
def main():
    """Simulate payment-by-results contracts: outcomes, payments, provider cash flow and parking."""


for _module in (run, experiments, report, stress, design, indigo, calibrate):
    for _command in _module.COMMANDS:
        main.add_command(_command)


if __name__ == "__main__":
    main()
