"""Experiments: sets of ordinary training runs (permutation experiment, sweeps) and leaderboards of runs."""
from cnnlab.experiments.compare import Leaderboard, format_leaderboard, leaderboard, plot_leaderboard
from cnnlab.experiments.permutation import PermutationResult, run_permutation
from cnnlab.experiments.runs import RunRecord, ensure_run, read_run
from cnnlab.experiments.sweep import GridResult, parse_settings, run_sweep

__all__ = [
    "GridResult", "Leaderboard", "PermutationResult", "RunRecord", "ensure_run", "format_leaderboard",
    "leaderboard", "parse_settings", "plot_leaderboard", "read_run", "run_permutation", "run_sweep",
]
