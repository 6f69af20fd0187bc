"""`serve`: the web lab on a socket, with uvicorn, until Ctrl-C.

On loopback the lab needs no token (other users of this machine can still reach 127.0.0.1: pass
--token to ask for one there too); beyond loopback it always asks for one, printed in the URL as
Jupyter does. Either way it answers only to the host names it was started for (see `security`).
"""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import quote

from cnnlab.errors import CnnlabError
from cnnlab.web.app import create_app
from cnnlab.web.deps import require_web
from cnnlab.web.security import HostPolicy, hosts_for, is_loopback, new_token

TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]{16,}")  # URL- and cookie-safe, and not guessable in a lunch break


def _listen(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn, so a busy port is one line, and port 0 gets a free port we can print."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise CnnlabError(
            f"cannot listen on {host}:{port}: {err.strerror or err}; choose another with --port"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(host: str, port: int, token: str | None = None) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()  # listening everywhere: the name others reach this machine by
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={quote(token)}" if token else "")


def resolve_token(host: str, token: str | None) -> str | None:
    """The token the lab asks for: none on loopback unless given; beyond loopback always one (generated
    unless given). "auto" generates one. A given token must be long and URL-safe (one line otherwise)."""
    if token == "auto" or (token is None and not is_loopback(host)):
        return new_token()
    if token is not None and not TOKEN_CHARS.fullmatch(token):
        raise CnnlabError("--token must be at least 16 characters of A-Z a-z 0-9 . _ ~ - (or 'auto' for a random one)")
    return token


def host_policy(host: str, allow_hosts: Iterable[str] = ()) -> HostPolicy:
    try:
        return HostPolicy.of(hosts_for(host, allow_hosts))
    except ValueError as err:
        raise CnnlabError(f"--allow-host: {err}") from None


def serve(
    roots: list[str | Path] | tuple = ("runs",),
    host: str = "127.0.0.1",
    port: int = 8000,
    open_browser: bool = False,
    log: Callable[[str], None] = print,
    token: str | None = None,
    allow_hosts: Iterable[str] = (),
) -> None:
    """Serve the web lab over the run folders under `roots` until interrupted (Ctrl-C stops it cleanly).

    `token`: None (a random one beyond loopback, none on it), "auto" (always a random one) or the token itself;
    `allow_hosts`: more Host names (or IP networks) to answer to, e.g. the name of a proxy in front.
    """
    require_web()
    import uvicorn

    folders = [Path(r) for r in roots] or [Path("runs")]
    token = resolve_token(host, token)
    policy = host_policy(host, allow_hosts)
    for root in folders:
        if not root.is_dir():
            log(f"note: {root} is not a folder (yet); runs that appear there will be listed")
    app = create_app(list(folders), allowed_hosts=hosts_for(host, allow_hosts), token=token)
    sock = _listen(host, port)
    url = url_of(host, sock.getsockname()[1], token)
    if not is_loopback(host):
        log(
            f"warning: the web lab is reachable from the network on {host}, over plain HTTP; it asks for the token "
            f"in the URL below and answers to the host names {policy.describe()}"
        )
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
