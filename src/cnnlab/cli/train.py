"""`cnnlab train MODEL [options]`: flags are generated from TrainConfig, so they cannot drift apart."""

from __future__ import annotations

import argparse
import sys

from cnnlab.cli.options import add_config_flags, add_trust_code, as_flags, config_options
from cnnlab.errors import CnnlabError

TRAIN_OWN = {"model"}  # arguments of this command, not generated flags


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model and write a run folder",
        description="Train MODEL and write a run folder (config.json, metrics.csv, summary.json, checkpoints/, figures). "
        "Precedence: defaults < --recipe < --config FILE < flags. Without --recipe, the model's fast recipe "
        "sets the options first (see `cnnlab recipes MODEL`); the defaults shown below are what --recipe none uses.",
    )
    parser.add_argument(
        "model",
        nargs="?",
        help="model name (see `cnnlab models`), or your own: FILE.py:NAME or MODULE:NAME (an nn.Module class or "
        "a function returning one, taking in_channels and num_classes); optional with --resume/--config",
    )
    parser.add_argument(
        "--config", dest="config_file", metavar="FILE", help="YAML or JSON config (a run's config.json repeats it)"
    )
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR|auto",
        help="continue a run in its own folder from its latest state (last.pt); auto: the run in --out "
        "if it has a checkpoint, else start it there (what torchrun restarts do)",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="data-parallel processes on this machine (launches torchrun); default 1",
    )
    add_trust_code(parser)
    add_config_flags(parser, exclude=TRAIN_OWN)  # the positional argument
    parser.set_defaults(func=run)


def explicit_options(args: argparse.Namespace) -> dict:
    """The training options given on the command line, the model included."""
    return {**config_options(args, TRAIN_OWN), **({"model": args.model} if args.model else {})}


def run(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.runfolder.config import TrainConfig
    from cnnlab.runfolder.config_file import load_config_file
    from cnnlab.runfolder.resolve import resolve_config
    from cnnlab.training import train
    from cnnlab.training.resume import resume_checkpoint

    options = explicit_options(args)
    if not (args.model or args.resume or args.config_file or options.get("recipe")):
        raise CnnlabError(
            "name a model to train, e.g. `cnnlab train convnet --dataset mnist-sample` (see `cnnlab models`)"
        )
    request = {**(load_config_file(args.config_file) if args.config_file else {}), **options}
    # --resume auto is a full request for the run in --out: continued if it is there, else started (the loop decides).
    auto = args.resume == "auto"
    if auto and "out" not in options:
        from cnnlab.training.resume import AUTO_NEEDS_OUT

        raise CnnlabError(AUTO_NEEDS_OUT)
    if auto and not (args.model or args.config_file):
        raise CnnlabError(
            "--resume auto takes the whole request (a model or --config, and options), as every attempt "
            "repeats the same command"
        )
    checkpoint = resume_checkpoint(args.resume) if args.resume and not auto else None
    if checkpoint and "out" in options:
        raise CnnlabError(
            f"--resume continues {args.resume} in its own folder; --out cannot move it "
            f"(to start a new run from its weights: --init-from {args.resume} --out DIR)"
        )
    if checkpoint and args.config_file:
        raise CnnlabError("--resume takes the run's own config; pass the options to change as flags, not --config")
    try:  # bad input fails here, once, before any launch or folder
        resolve_config(request, base=TrainConfig.from_dict(checkpoint["config"]) if checkpoint else None)
    except CnnlabError as err:
        raise as_flags(err) from None
    argv = sys.argv[1:] if args.argv is None else args.argv
    if args.nproc != 1:
        from cnnlab.training.launch import launch_local

        return launch_local(args.nproc, argv)
    try:
        train(resume="auto" if auto else checkpoint, argv=["cnnlab", *argv], trust_code=args.trust_code, **request)
    except CnnlabError as err:
        raise as_flags(err) from None
    return 0
