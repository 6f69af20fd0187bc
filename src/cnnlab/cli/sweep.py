"""`cnnlab sweep --models A B --seeds N [--set key=value ...]`: a grid of runs, then its leaderboard."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep", help="train a grid of models x options x seeds, then compare",
        description="Train every model x every combination of --set values x seeds 0..N-1, one run folder each "
        "under DIR/runs/, then print the leaderboard (also DIR/table.md, results.csv, compare.png). Runs already "
        "complete in DIR are skipped, so re-running an interrupted sweep with the same -o DIR continues it.")
    parser.add_argument("--models", nargs="+", required=True, metavar="MODEL", help="models (see `cnnlab models`)")
    parser.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds per grid point (default: 1)")
    parser.add_argument("--dataset", help="dataset for every run (default: each model's recipe)")
    parser.add_argument("--data-dir", help="folder holding the dataset files")
    parser.add_argument("--epochs", type=int, help="epochs per run (default: each model's recipe)")
    parser.add_argument("--recipe", help="recipe of each model: fast (default) | reference | none")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a training option for every run, e.g. --set batch_size=64; alternatives make a grid "
                        "axis: --set lr=0.01,0.1 (numbers, booleans) or the key repeated (any option)")
    parser.add_argument("--limit-train", type=int, metavar="N", help="use only the first N training images")
    parser.add_argument("--limit-test", type=int, metavar="N", help="use only the first N test images")
    parser.add_argument("--device", help="device for every run: auto|cpu|cuda|mps")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars while training (default: on)")
    parser.add_argument("--sort", default="test_acc", metavar="KEY", help="leaderboard sort key (default: test_acc)")
    parser.add_argument("-o", "--out", metavar="DIR", help="sweep folder (default: runs/sweep-<timestamp>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.experiments.compare import format_leaderboard
    from cnnlab.experiments.sweep import parse_settings, run_sweep

    settings = parse_settings(args.settings)
    common = {k: getattr(args, k) for k in ("dataset", "data_dir", "epochs", "recipe", "limit_train", "limit_test",
                                            "device", "progress") if getattr(args, k) is not None}
    result = run_sweep(args.models, seeds=args.seeds, settings=settings, out=args.out, sort=args.sort, **common)
    done = {a: result.actions.count(a) for a in ("trained", "resumed", "skipped")}
    print()
    print(f"sweep of {len(result.records)} runs ({done['trained']} trained, {done['resumed']} resumed, "
          f"{done['skipped']} already complete) in {result.out_dir}")
    print(format_leaderboard(result.board, "table"))
    return 0
