"""`cnnlab tune MODEL --space KEY=VALUES... --trials N`: hyperparameter search, every trial a run folder."""

from __future__ import annotations

import argparse

from cnnlab.cli.options import add_config_flags, add_engine_flags, as_flags, config_options
from cnnlab.errors import CnnlabError

TUNE_OWN = {"model", "out", "val_split"}  # arguments of this command, not generated flags


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="search hyperparameters (Optuna): trials are run folders, pruned on validation accuracy",
        description="Search training options of MODEL with Optuna. Every trial is an ordinary run folder under "
        "STUDY/runs/, trained with --val-split training images held out: the search maximises the best validation "
        "accuracy, the pruner stops poor trials from their per-epoch validation accuracy, and the test accuracy of "
        "the best trial is read once, at the end. Re-running the same command continues the study (an interrupted "
        "trial is retried, resuming its own folder). --workers N runs N processes here; the same command with a "
        "shared --storage on other machines joins the same study. `cnnlab compare STUDY` and `cnnlab report STUDY` "
        "work on the study folder.",
        epilog="--space items: lr=log:1e-4..1e-1 (log-uniform), weight_decay=0..1e-3 (uniform), epochs=2..6 (an int "
        "option: integers), batch_size=64,128,256 (choices), model_options.width=1,2 (a model option). "
        "Example: cnnlab tune convnet --dataset mnist-sample --space 'lr=log:1e-3..1' 'batch_size=64,128' "
        "--trials 20 -o runs/tune-convnet",
    )
    parser.add_argument("model", metavar="MODEL", help="model name (see `cnnlab models`)")
    parser.add_argument(
        "--space",
        nargs="+",
        action="extend",
        required=True,
        metavar="KEY=VALUES",
        help="what to search (see below); repeat a key for alternatives holding commas",
    )
    parser.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="trials in the study in all (a re-run with a larger N continues to it); grid: the grid",
    )
    parser.add_argument(
        "--time",
        dest="seconds",
        type=float,
        metavar="SECONDS",
        help="start no trial after this many seconds (running ones finish)",
    )
    parser.add_argument("--sampler", default="tpe", metavar="NAME", help="tpe (default) | random | grid")
    parser.add_argument(
        "--pruner",
        default="median",
        metavar="NAME",
        help="median (default) | hyperband | none: stop trials whose validation accuracy lags",
    )
    parser.add_argument(
        "--val-split",
        default="0.1",
        metavar="N|FRACTION",
        help="training images held out to select on: a count or a fraction (default: 0.1)",
    )
    parser.add_argument("-o", "--out", metavar="STUDY", help="study folder (default: runs/tune-MODEL-<timestamp>)")
    add_engine_flags(
        parser, "trial", "STUDY",
        "where the study lives: default STUDY/study.db (SQLite); 'journal': STUDY/study.journal; "
        "a database URL (postgresql://user:pw@host/db) or a journal file on a shared disk, to "
        "search from several machines",
    )  # fmt: skip
    parser.add_argument(
        "--sampler-seed",
        type=int,
        metavar="N",
        help="seed of the sampler (with the worker and the study's "
        "trial count, so a re-run does not repeat its suggestions)",
    )
    training = parser.add_argument_group("training options for every trial (as for `cnnlab train`)")
    add_config_flags(training, exclude=TUNE_OWN, defaults={"recipe": "fast", "progress": False})
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.experiments.tune import format_result, run_tune

    common = config_options(args, TUNE_OWN)
    try:
        result = run_tune(
            args.model,
            space=args.space,
            trials=args.trials,
            seconds=args.seconds,
            sampler=args.sampler,
            pruner=args.pruner,
            val_split=args.val_split,
            out=args.out,
            storage=args.storage,
            study_name=args.study_name,
            workers=args.workers,
            threads=args.threads,
            sampler_seed=args.sampler_seed,
            heartbeat=args.heartbeat,
            **common,
        )
    except CnnlabError as err:
        raise as_flags(err) from None
    print()
    print(format_result(result))
    return 0
