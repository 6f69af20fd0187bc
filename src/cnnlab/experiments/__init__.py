"""Experiments: sets of ordinary training runs (permutation experiment, sweeps) and leaderboards of runs."""

from __future__ import annotations

_EXPORTS = {
    "Leaderboard": "compare",
    "format_leaderboard": "compare",
    "leaderboard": "compare",
    "plot_leaderboard": "compare",
    "PermutationResult": "permutation",
    "run_permutation": "permutation",
    "RunRecord": "runs",
    "ensure_run": "runs",
    "read_run": "runs",
    "GridResult": "sweep",
    "parse_settings": "sweep",
    "run_sweep": "sweep",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:  # lazily: `cnnlab compare --help` needs only the column names
        import importlib

        return getattr(importlib.import_module(f"cnnlab.experiments.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cnnlab.experiments' has no attribute {name!r}")
