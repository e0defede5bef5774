"""``pbrsim completion SHELL``: the shell completion script (commands, options, file names) to source."""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")
INSTALL = {
    "bash": 'eval "$(pbrsim completion bash)"      # in ~/.bashrc',
    "zsh": 'eval "$(pbrsim completion zsh)"       # in ~/.zshrc',
    "fish": "pbrsim completion fish | source      # in ~/.config/fish/completions/pbrsim.fish",
}


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell):
    """Print the completion script for SHELL (bash, zsh or fish); docs/cli.md says where to put it.

    \b
      bash:  eval "$(pbrsim completion bash)"     (add to ~/.bashrc)
      zsh:   eval "$(pbrsim completion zsh)"      (add to ~/.zshrc)
      fish:  pbrsim completion fish | source      (or save it as ~/.config/fish/completions/pbrsim.fish)
    """
    from click.shell_completion import get_completion_class

    from .main import main

    cls = get_completion_class(shell)
    click.echo(cls(main, {}, "pbrsim", "_PBRSIM_COMPLETE").source())


COMMANDS = [completion]
