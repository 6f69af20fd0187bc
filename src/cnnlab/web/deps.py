"""The optional extra behind `cnnlab serve`: FastAPI and uvicorn, checked before anything is imported."""

from __future__ import annotations

from cnnlab.extras import require_extra


def require_web() -> None:
    """Raise a one-line CnnlabError (exit 2, no traceback) when the `serve` extra is missing."""
    require_extra("serve", "the web lab")
