"""`cnnlab train MODEL [options]`: flags are generated from TrainConfig, so they cannot drift apart."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from cnnlab.errors import CnnlabError

# Fields set through the positional argument or a dedicated option rather than a generated flag.
_NOT_FLAGS = {"model"}


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r} (e.g. '{{\"batch_norm\": true}}')") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    return value


def _parser_type(type_name: str):
    base = type_name.replace(" | None", "").strip()
    return {"int": int, "float": float, "str": str, "dict": _json_object}[base]


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; unset flags stay absent from the namespace (so layers below show through)."""
    from cnnlab.training.config import TrainConfig

    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name in _NOT_FLAGS:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = f.metadata.get("help", "") + (f" (default: {default})" if default not in (None, {}, "") else "")
        if f.type == "bool":
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=_parser_type(f.type), default=argparse.SUPPRESS,
                                metavar=f.name.upper(), help=help_text)


def as_flags(err: CnnlabError) -> CnnlabError:
    """The library names parameters (`lr must be ...`, `resize=224`); on the command line they are flags."""
    import re

    from cnnlab.training.config import TrainConfig

    message = str(err)
    for name in sorted(set(TrainConfig.field_names()) - {"model", "dataset"}, key=len, reverse=True):
        flag = "--" + name.replace("_", "-")
        message = re.sub(rf"^{name} must\b", f"{flag} must", message)
        message = re.sub(rf"^unknown {name} ", f"unknown {flag} ", message)
        message = re.sub(rf"(?<![\w-]){name}=(?=\S)", f"{flag} ", message)
    return type(err)(message) if type(err) is CnnlabError else err


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model and write a run folder",
        description="Train MODEL and write a run folder (config.json, metrics.csv, summary.json, checkpoints/, figures). "
        "Precedence: defaults < --recipe < --config FILE < flags. Without --recipe, the model's fast recipe "
        "sets the options first (see `cnnlab recipes MODEL`); the defaults shown below are what --recipe none uses.",
    )
    parser.add_argument("model", nargs="?", help="model name (see `cnnlab models`); optional with --resume/--config")
    parser.add_argument("--config", dest="config_file", metavar="FILE", help="YAML or JSON config (a run's config.json repeats it)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run in its own folder from its latest state (last.pt)")
    parser.add_argument("--nproc", type=int, default=1, metavar="N",
                        help="data-parallel processes on this machine (launches torchrun); default 1")
    add_config_flags(parser)
    parser.set_defaults(func=run)


def explicit_options(args: argparse.Namespace) -> dict:
    from cnnlab.training.config import TrainConfig

    options = {name: getattr(args, name) for name in TrainConfig.field_names() if name in vars(args) and name != "model"}
    if args.model:
        options["model"] = args.model
    return options


def run(args: argparse.Namespace) -> int:
    from cnnlab.training import train
    from cnnlab.training.config import TrainConfig, load_config_file, resolve_config
    from cnnlab.training.loop import resume_checkpoint

    options = explicit_options(args)
    if not (args.model or args.resume or args.config_file):
        raise CnnlabError("name a model to train, e.g. `cnnlab train convnet --dataset mnist-sample` (see `cnnlab models`)")
    request = {**(load_config_file(args.config_file) if args.config_file else {}), **options}
    # --resume auto is a full request for the run in --out: continued if it is there, else started (the loop decides).
    auto = args.resume == "auto"
    if auto and "out" not in options:
        from cnnlab.training.loop import AUTO_NEEDS_OUT

        raise CnnlabError(AUTO_NEEDS_OUT)
    if auto and not (args.model or args.config_file):
        raise CnnlabError("--resume auto takes the whole request (a model or --config, and options), as every attempt "
                          "repeats the same command")
    checkpoint = resume_checkpoint(args.resume) if args.resume and not auto else None
    if checkpoint and "out" in options:
        raise CnnlabError(f"--resume continues {args.resume} in its own folder; --out cannot move it "
                          f"(to start a new run from its weights: --init-from {args.resume} --out DIR)")
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
    train(resume="auto" if auto else checkpoint, argv=["cnnlab", *argv], **request)
    return 0
