"""`cnnlab sweep --models A B --seeds N [--set key=value ...]`: a grid of runs, then its leaderboard."""

from __future__ import annotations

import argparse

from cnnlab.cli.options import add_config_flags, add_engine_flags, as_flags, config_options
from cnnlab.errors import CnnlabError

GRID_OWN = {"model", "seed", "out"}  # arguments of this command, not generated flags


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="train a grid of models x options x seeds, then compare",
        description="Train every model x every combination of --set values x seeds 0..N-1, one run folder each "
        "under DIR/runs/, then print the leaderboard (also DIR/table.md, results.csv, compare.png). Runs already "
        "complete in DIR are skipped, so re-running an interrupted sweep with the same -o DIR continues it. The grid is "
        "an Optuna study (DIR/study.db): --workers N trains N runs at a time, and an interrupted or killed run is "
        "resumed from its last checkpoint.",
    )
    parser.add_argument("--models", nargs="+", required=True, metavar="MODEL", help="models (see `cnnlab models`)")
    parser.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds per grid point (default: 1)")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training option for every run, e.g. --set batch_size=64; alternatives make a grid "
        "axis: --set lr=0.01,0.1 (numbers, booleans) or the key repeated (any option)",
    )
    parser.add_argument("--sort", default="test_acc", metavar="KEY", help="leaderboard sort key (default: test_acc)")
    parser.add_argument("-o", "--out", metavar="DIR", help="sweep folder (default: runs/sweep-<timestamp>)")
    add_engine_flags(
        parser, "run", "DIR",
        "where the grid's study lives: default DIR/study.db; a database URL or a journal file on a shared disk lets "
        "the same command on other machines take runs too (see `cnnlab tune --help`)",
    )  # fmt: skip
    training = parser.add_argument_group("training options for every run (as for `cnnlab train`)")
    add_config_flags(training, exclude=GRID_OWN, defaults={"recipe": "fast"})
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.experiments.compare import format_leaderboard
    from cnnlab.experiments.sweep import parse_settings, run_sweep

    settings = parse_settings(args.settings)
    common = config_options(args, GRID_OWN)
    try:
        result = run_sweep(
            args.models,
            seeds=args.seeds,
            settings=settings,
            out=args.out,
            sort=args.sort,
            workers=args.workers,
            threads=args.threads,
            storage=args.storage,
            study_name=args.study_name,
            heartbeat=args.heartbeat,
            **common,
        )
    except CnnlabError as err:
        raise as_flags(err) from None
    done = {a: result.actions.count(a) for a in ("trained", "resumed", "skipped")}
    print()
    print(
        f"sweep of {len(result.records)} runs ({done['trained']} trained, {done['resumed']} resumed, "
        f"{done['skipped']} already complete) in {result.out_dir}"
    )
    print(format_leaderboard(result.board, "table"))
    return 0
