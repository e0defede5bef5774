"""``pbrsim serve``: the explorer web app on this machine (docs/web.md)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import click

from .common import allow_large_option, fail_input

NEEDS = ("starlette", "uvicorn")


@click.command()
@click.argument("folder", required=False, type=click.Path(file_okay=False))
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port; the address is printed).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on: only this machine by default. Anyone who can reach another address can run "
                   "simulations on this machine.")
@allow_large_option
def serve(folder, port, host):
    """Start the explorer: a local web page for opening scenarios under FOLDER (default: ./scenarios if it
    exists, else the current folder), changing contract levers, and running, comparing and stress-testing designs."""
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        fail_input(f"pbrsim serve needs {' and '.join(missing)}, which the web extra installs: pip install 'pbrsim[web]'")
    if folder is None:
        folder = "scenarios" if Path("scenarios").is_dir() else "."
    folder = Path(folder)
    if not folder.is_dir():
        fail_input(f"{folder}: no such folder; give the folder that holds your scenario files")
    from ..scenario import limits
    from ..web.server import bind, serve as run_server

    if limits.active().large:  # --allow-large for every thread the server starts, not only this one
        os.environ[limits.ALLOW_LARGE_ENV] = "1"

    try:
        sock = bind(host, port)
    except OSError as exc:
        fail_input(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another with --port (0: any free port)")
    try:
        run_server(folder, sock)
    except KeyboardInterrupt:
        pass


COMMANDS = [serve]
