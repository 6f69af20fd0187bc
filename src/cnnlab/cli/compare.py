"""`cnnlab compare RUN_DIR...`: a leaderboard of run folders."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.experiments.compare import FORMATS, SORT_KEYS

    parser = subparsers.add_parser(
        "compare",
        help="leaderboard of run folders",
        description="A leaderboard of run folders: model, dataset, recipe, epochs, params, MACs, best and final "
        "test accuracy, training time, images/s, device. Globs (e.g. 'runs/*') and experiment folders "
        "(their runs) are accepted; folders that are not runs or did not finish are listed, not fatal.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders, globs or experiment folders")
    parser.add_argument(
        "--sort",
        default="test_acc",
        metavar="KEY",
        help=f"sort key (default: test_acc, best first): {', '.join(SORT_KEYS)}",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="also write a figure: accuracy vs time and vs params, and all test-accuracy curves",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the --plot file if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.experiments.compare import format_leaderboard, leaderboard, plot_leaderboard

    if args.plot:
        from cnnlab.files import check_output

        check_output(args.plot, args.overwrite, flag="--plot")
    board = leaderboard(args.runs, args.sort)
    print(format_leaderboard(board, args.format))
    if args.plot:
        if not board.rows:
            from cnnlab.errors import CnnlabError

            raise CnnlabError(f"--plot {args.plot}: no complete run to plot among {len(board.records)} folder(s)")
        path = plot_leaderboard(board, args.plot)
        print(f"figure: {path}", file=sys.stderr)
    if not board.rows:
        print(f"cnnlab: no complete run among {len(board.records)} folder(s)", file=sys.stderr)
        return 1
    return 0
