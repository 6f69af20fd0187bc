"""`cnnlab report RUN_DIR|EXPERIMENT_DIR... -o report.html`: one self-contained HTML report."""

from __future__ import annotations

import argparse
import sys

from cnnlab.cli.options import add_checkpoint, add_data_dir, add_overwrite


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of runs or an experiment",
        description="Write one HTML file (figures embedded, no network, no script) with each run's config, "
        "summary, curves, confusion matrix, per-class accuracy, misclassified test images and `cnnlab inspect` "
        "figures; for an experiment or several runs also the comparison table and plots.",
    )
    parser.add_argument(
        "paths", nargs="+", metavar="RUN_DIR|EXPERIMENT_DIR", help="run folders, globs or experiment folders"
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="HTML file (default: DIR/report.html for one folder, else ./report.html)"
    )
    add_data_dir(parser, help="folder holding the dataset files (default: where each run found them)")
    add_checkpoint(
        parser,
        default="last",
        help="model for per-class accuracy and misclassified images (default: last, the final epoch)",
    )
    parser.add_argument(
        "--misclassified",
        type=int,
        default=32,
        metavar="N",
        help="misclassified test images shown per run (default: 32; 0: none)",
    )
    parser.add_argument("--title", help="report title")
    add_overwrite(parser, "the HTML file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.report.html import build_report

    path = build_report(
        args.paths,
        args.output,
        data_dir=args.data_dir,
        checkpoint=args.checkpoint,
        misclassified=args.misclassified,
        title=args.title,
        overwrite=args.overwrite,
        log=lambda message: print(message, file=sys.stderr),
    )
    print(f"report: {path}")
    return 0
