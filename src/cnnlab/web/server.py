"""`serve`: the web lab on a socket, with uvicorn, until Ctrl-C."""
from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path

from cnnlab.web.internals import CnnlabError
from cnnlab.web.deps import require_web

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _listen(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn, so a busy port is one line, and port 0 gets a free port we can print."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise CnnlabError(f"cannot listen on {host}:{port}: {err.strerror or err}; choose another with --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(roots: list[str | Path] | tuple = ("runs",), host: str = "127.0.0.1", port: int = 8000,
          open_browser: bool = False, log: Callable[[str], None] = print) -> None:
    """Serve the web lab over the run folders under `roots` until interrupted (Ctrl-C stops it cleanly)."""
    require_web()
    import uvicorn

    from cnnlab.web.app import create_app

    roots = [Path(r) for r in roots] or [Path("runs")]
    for root in roots:
        if not root.is_dir():
            log(f"note: {root} is not a folder (yet); runs that appear there will be listed")
    app = create_app(roots)
    sock = _listen(host, port)
    url = url_of(host, sock.getsockname()[1])
    if host not in LOOPBACK:
        log(f"warning: the web lab has no authentication; anyone who can reach {host} can see these runs and use the models")
    log(f"cnnlab web lab on {url} (Ctrl-C stops it)")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])  # uvicorn turns SIGINT/SIGTERM into a graceful shutdown...
    except KeyboardInterrupt:
        pass  # ...then re-raises the signal; by now the server has stopped, so Ctrl-C is a normal end
    finally:
        sock.close()
    log("cnnlab web lab stopped")
    sys.stdout.flush()
