"""Starting the explorer: bind the port, say where it is, serve until Ctrl+C."""

from __future__ import annotations

import socket
import sys
from pathlib import Path


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port); OSError when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(folder: Path, sock: socket.socket, *, quiet: bool = False, workers: int = 1) -> None:
    """Serve the explorer for the scenarios under ``folder`` on the bound socket until interrupted."""
    import uvicorn

    from .app import create_app

    host, port = sock.getsockname()[:2]
    hosts = ("127.0.0.1", "localhost", "[::1]", "::1") if host in ("127.0.0.1", "::1") else ("*",)
    app = create_app(folder, workers=workers, allowed_hosts=hosts)
    shown = f"[{host}]" if ":" in host else host
    print(f"pbrsim explorer: http://{shown}:{port}/  (scenarios from {folder}; Ctrl+C stops it)", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
