"""User-facing errors: one line, exit code 2, no traceback (unless --debug)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CnnlabError(Exception):
    """An error the user can fix; the CLI prints it as one line and exits with `exit_code`."""

    exit_code = 2
    label = "error"  # the word after "cnnlab: " when the CLI prints it


class DataError(CnnlabError):
    """A dataset is missing, corrupt or unreadable."""


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choices, or '' when nothing is close."""
    if not isinstance(value, str):  # difflib compares strings only: a number or None is simply not close
        return ""
    close = difflib.get_close_matches(value, [c for c in choices if isinstance(c, str)], n=3, cutoff=0.5)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


def unknown_choice(kind: str, value: object, choices: Iterable[str], also: str = "") -> CnnlabError:
    """Error for a name that is not one of `choices`, naming the valid ones (and `also`, what else is taken)."""
    choices = sorted(choices)
    return CnnlabError(
        f"unknown {kind} {value!r}{did_you_mean(value, choices)}; choose from: {', '.join(choices)}"
        + (f", {also}" if also else "")
    )
