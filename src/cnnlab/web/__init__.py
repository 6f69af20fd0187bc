"""`cnnlab serve`: a local web lab over run folders (FastAPI + uvicorn, the `serve` extra).

    >>> from cnnlab import create_app, serve
    >>> app = create_app(["runs"])        # for tests: TestClient(app, base_url="http://127.0.0.1")
    >>> serve(["runs"], port=8000)        # blocks until Ctrl-C

The lab answers only to the Host names it was started for (loopback by default: a test client's
"testserver" is refused) and, given a token, only to requests that carry it.

The package is `cnnlab.web`, not `cnnlab.serve`: importing a submodule binds its name on the parent
package, which would replace the function `cnnlab.serve`.
"""

from __future__ import annotations

from pathlib import Path


def create_app(roots: list[str | Path] | tuple = ("runs",), *, allowed_hosts=None, token: str | None = None):
    """The FastAPI app of the web lab over `roots`; raises a one-line CnnlabError without the extra.

    `allowed_hosts`: Host names it answers to (default: 127.0.0.1, localhost, ::1); `token`: required when given.
    """
    # here: `import cnnlab.web` works without the serve extra; the app loads on use
    from cnnlab.web.deps import require_web

    require_web()
    from cnnlab.web.app import create_app as _create_app

    return _create_app(roots, allowed_hosts=allowed_hosts, token=token)


def serve(
    roots: list[str | Path] | tuple = ("runs",),
    host: str = "127.0.0.1",
    port: int = 8000,
    open_browser: bool = False,
    token: str | None = None,
    allow_hosts=(),
) -> None:
    """Serve the web lab over `roots` on host:port until Ctrl-C (with a token beyond loopback; see `server`)."""
    # here: `import cnnlab.web` works without the serve extra; the app loads on use
    from cnnlab.web.server import serve as _serve

    _serve(roots, host=host, port=port, open_browser=open_browser, token=token, allow_hosts=allow_hosts)
