"""`cnnlab experiment permutation`: the pixel-permutation experiment as a set of ordinary runs."""

from __future__ import annotations

import argparse

from cnnlab.cli.options import add_config_flags, as_flags, config_options
from cnnlab.errors import CnnlabError

PERMUTATION_OWN = {
    "model",
    "seed",
    "out",
    "permute_pixels",
    "permutation_seed",
}  # arguments of this command, not generated flags


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment",
        help="run a classic experiment: permutation",
        description="Run a classic experiment: a set of ordinary runs (one folder each) with a results table "
        "and figures. Re-running with the same -o DIR skips the runs already complete.",
    )
    experiments = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    permutation = experiments.add_parser(
        "permutation",
        help="ordered vs pixel-permuted images: does a model use the spatial order of pixels?",
        description="Train each model on images as stored and with every image's pixels reordered by one fixed "
        "seeded permutation (the same for train, test, every model and seed), over several seeds; print the "
        "table (mean ± std accuracy, and the drop) and write results.csv, table.md, permutation.png, "
        "accuracy.png and experiment.json. Reference: mlp-tiny 88% -> 85%, cnn-tiny 96% -> 80% on MNIST.",
    )
    permutation.add_argument(
        "--models",
        nargs="+",
        default=["mlp-tiny", "cnn-tiny"],
        metavar="MODEL",
        help="models to compare (default: mlp-tiny cnn-tiny, nearly equal parameter counts)",
    )
    permutation.add_argument(
        "--seeds", type=int, default=3, metavar="N", help="seeds per model and condition (default: 3)"
    )
    permutation.add_argument(
        "--permutation-seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of the one fixed pixel permutation (default: 0)",
    )
    permutation.add_argument(
        "-o", "--out", metavar="DIR", help="experiment folder (default: runs/experiment-permutation-<timestamp>)"
    )
    training = permutation.add_argument_group("training options for every run (as for `cnnlab train`)")
    add_config_flags(
        training, exclude=PERMUTATION_OWN, defaults={"dataset": "mnist", "epochs": 1, "recipe": "reference"}
    )
    permutation.set_defaults(func=run_permutation_command)


def run_permutation_command(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.experiments.permutation import run_permutation

    try:
        result = run_permutation(
            args.models,
            seeds=args.seeds,
            permutation_seed=args.permutation_seed,
            out=args.out,
            **config_options(args, PERMUTATION_OWN),
        )
    except CnnlabError as err:
        raise as_flags(err) from None
    print()
    print(
        f"pixel permutation on {getattr(args, 'dataset', 'mnist')}: final test accuracy, mean ± std over {args.seeds} seed(s)"
    )
    print(result.text())
    print(
        f"\nexperiment folder: {result.out_dir} (results.csv, table.md, permutation.png, accuracy.png); "
        f"report: cnnlab report {result.out_dir}"
    )
    return 0
