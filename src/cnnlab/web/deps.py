"""The optional extra behind `cnnlab serve`: FastAPI and uvicorn, checked before anything is imported."""
from __future__ import annotations

from cnnlab.web.internals import CnnlabError

EXTRA_HINT = 'pip install "cnnlab[serve]"'


def require_web() -> None:
    """Raise a one-line CnnlabError (exit 2, no traceback) when the `serve` extra is missing."""
    missing = []
    for module in ("fastapi", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise CnnlabError(f"the web lab needs {' and '.join(missing)}, an optional extra: {EXTRA_HINT}")
