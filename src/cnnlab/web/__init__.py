"""`cnnlab serve`: a local web lab over run folders (FastAPI + uvicorn, the `serve` extra).

    >>> from cnnlab import create_app, serve
    >>> app = create_app(["runs"])        # for tests: fastapi.testclient.TestClient(app)
    >>> serve(["runs"], port=8000)        # blocks until Ctrl-C

The package is `cnnlab.web`, not `cnnlab.serve`: importing a submodule binds its name on the parent
package, which would replace the function `cnnlab.serve`.
"""
from __future__ import annotations

from pathlib import Path


def create_app(roots: list[str | Path] | tuple = ("runs",)):
    """The FastAPI app of the web lab over `roots`; raises a one-line CnnlabError without the extra."""
    from cnnlab.web.deps import require_web

    require_web()
    from cnnlab.web.app import create_app as _create_app

    return _create_app(roots)


def serve(roots: list[str | Path] | tuple = ("runs",), host: str = "127.0.0.1", port: int = 8000,
          open_browser: bool = False) -> None:
    """Serve the web lab over `roots` on host:port until Ctrl-C."""
    from cnnlab.web.server import serve as _serve

    _serve(roots, host=host, port=port, open_browser=open_browser)
