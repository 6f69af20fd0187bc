"""`cnnlab models` (the zoo at a glance) and `cnnlab summary MODEL` (one model layer by layer).

Models are built on the meta device: shapes, parameter counts and MACs come out
exactly, with no memory or init time spent even on VGG-11. `cnnlab summary path/to/net.py:Net`
(or `package.module:Net`) summarizes the user's own network: naming it is asking to run it, so it
is loaded, its input sizes found by trying, and it is built on the CPU (user code may not run on meta).
`cnnlab summary RUN_DIR` shows a run's model as it trained it, with the layer names `cnnlab inspect` takes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from cnnlab.cli.options import add_format, add_trust_code
from cnnlab.errors import CnnlabError, did_you_mean

# torch and the model zoo are imported inside the handlers: `cnnlab --help` must not pay for them.


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser(
        "models",
        help="list the models with their size, cost and reference result",
        description="List the registered models: parameters (1 channel, 10 classes), "
        "default input size, MACs per image at that size, reference result.",
    )
    models.add_argument(
        "pattern",
        nargs="?",
        default="*",
        metavar="PATTERN",
        help="shell-style wildcard on the name, e.g. 'res*' (default: all)",
    )
    add_format(models)
    models.set_defaults(func=run_models)

    summary = subparsers.add_parser(
        "summary",
        help="show a model (or a run's model) layer by layer: shapes, params, MACs",
        description="Trace one image through MODEL: every layer's output shape, parameters and MACs, then the totals. "
        "Given a run folder, the model as that run trained it (its recipe's layers, its data's channels, classes and "
        "image size): the layer names are the ones `cnnlab inspect RUN` takes.",
    )
    summary.add_argument(
        "model",
        metavar="MODEL",
        help="model name (see `cnnlab models`), or your own: path/to/file.py:Name or package.module:Name "
        "(an nn.Module subclass or a function returning one, called with in_channels and num_classes), "
        "or a run folder (or checkpoint file)",
    )
    summary.add_argument("--input-size", type=int, metavar="N", help="input height = width (default: the model's)")
    summary.add_argument("--in-channels", type=int, metavar="C", help="input channels (default: 1)")
    summary.add_argument("--num-classes", type=int, metavar="K", help="output classes (default: 10)")
    summary.add_argument(
        "--batch-size",
        type=int,
        default=1,
        metavar="B",
        help="batch size of the activation-memory estimate (default: 1)",
    )
    summary.add_argument(
        "--model-options",
        default="{}",
        metavar="JSON",
        help="model options as JSON, e.g. '{\"width\": 4}' (see `cnnlab models --format json`)",
    )
    add_format(summary)
    add_trust_code(summary)  # a run of your own model is rebuilt from the copy of its source
    summary.set_defaults(func=run_summary)


def _meta_model(name: str, in_channels: int = 1, num_classes: int = 10, **options: Any):
    import torch

    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.models import create_model

    with torch.device("meta"):
        return create_model(name, in_channels, num_classes, **options)


def model_rows(pattern: str) -> list[dict[str, Any]]:
    """One dict per model matching `pattern`: metadata plus params and MACs at the default input."""
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.models import count_macs, list_models, model_info

    names = list_models(pattern)
    if not names:
        raise CnnlabError(
            f"no model matches {pattern!r}{did_you_mean(pattern, list_models())}; models: {', '.join(list_models())}"
        )
    rows = []
    for name in names:
        info = model_info(name)
        rows.append(
            {
                "name": name,
                "family": info.family,
                "params": info.num_params,
                "default_input_size": info.default_input_size,
                "min_input_size": info.min_input_size,
                "max_input_size": info.max_input_size,
                "macs": count_macs(_meta_model(name), info.default_input_size, 1),
                "reference_dataset": info.reference_recipe["dataset"],
                "reference_result": info.reference_result,
                "paper": info.paper,
                "options": info.options,
            }
        )
    return rows


def run_models(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.models.summary import format_count, render_table

    rows = model_rows(args.pattern)
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    table = [
        [
            r["name"],
            format_count(r["params"]),
            f"{r['default_input_size']}x{r['default_input_size']}",
            format_count(r["macs"]),
            r["reference_dataset"],
            r["reference_result"],
        ]
        for r in rows
    ]
    print(render_table(["model", "params", "input", "MACs", "dataset", "reference result"], table, right={1, 2, 3}))
    print("\nparams for 1 input channel and 10 classes; MACs per image at the default input size")
    return 0


def _parse_options(text: str) -> dict[str, Any]:
    try:
        options = json.loads(text)
    except json.JSONDecodeError as err:
        raise CnnlabError(f"--model-options must be a JSON object, e.g. '{{\"width\": 4}}': {err.msg}") from None
    if not isinstance(options, dict):
        raise CnnlabError(f"--model-options must be a JSON object, e.g. '{{\"width\": 4}}', got {text!r}")
    return options


def run_summary(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.models import (
        check_input_size,
        create_model,
        input_sizes,
        is_custom,
        load_user_model,
        model_info,
    )

    if args.batch_size < 1:
        raise CnnlabError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if _is_run(args.model):
        return _print_summary(args, *_run_model(args))
    in_channels = 1 if args.in_channels is None else args.in_channels
    num_classes = 10 if args.num_classes is None else args.num_classes
    own = is_custom(args.model)
    name = load_user_model(args.model) if own else args.model  # the user named their code: run it
    options = _parse_options(args.model_options)
    if not own:
        model_info(name)  # an unknown name fails before the argument checks
    if args.input_size is not None and args.input_size < 1:
        raise CnnlabError(f"--input-size must be a positive integer, got {args.input_size}")
    if own:  # its sizes depend on the channels, classes and options it is built with
        size = input_sizes(name, in_channels, num_classes, options)[2] if args.input_size is None else args.input_size
        check_input_size(name, size, in_channels=in_channels, num_classes=num_classes, options=options)
        model = create_model(name, in_channels, num_classes, image_size=size, **options)
    else:
        size = model_info(name).default_input_size if args.input_size is None else args.input_size
        check_input_size(name, size)  # before building: the same error the model's own check gives
        model = _meta_model(name, in_channels, num_classes, **options)
    return _print_summary(args, name, args.model, model, size, in_channels)


def _is_run(target: str) -> bool:
    """A run folder or checkpoint file, not a model: a registered name wins over a folder of the same name."""
    from cnnlab.models import is_custom, list_models  # here: the zoo loads on use, so --help stays fast

    if target in list_models() or is_custom(target):
        return False
    path = Path(target)
    return path.is_dir() or path.suffix == ".pt" and path.is_file()


def _run_model(args: argparse.Namespace) -> tuple[str, str, Any, int, int]:
    """The model of a run as it trained it: (model name, title, the model, image size, channels)."""
    from cnnlab.runs import load_run  # here: torch loads on use, so --help and argument errors stay fast

    given = [flag for flag, value in (("--input-size", args.input_size), ("--in-channels", args.in_channels),
             ("--num-classes", args.num_classes)) if value is not None]  # fmt: skip
    if args.model_options != "{}":
        given.append("--model-options")
    if given:
        raise CnnlabError(
            f"{', '.join(given)} cannot change a run's model: `cnnlab summary {args.model}` shows it as it was "
            "trained; name the model instead (`cnnlab summary MODEL ...`) to try other settings"
        )
    run = load_run(args.model)  # checked as every command that reopens a run checks it; --trust-code for your own
    title = f"{run.config.model} ({run.run_dir})"
    return run.config.model, title, run.model, run.input_size, run.spec.channels


def _print_summary(args: argparse.Namespace, name: str, title: str, model, size: int, in_channels: int) -> int:
    from cnnlab.models import render_summary, summarize  # here: torch loads on use, so --help stays fast

    summary = summarize(model, size, in_channels, batch_size=args.batch_size)
    if args.format == "json":
        data = {
            "name": name,
            **dataclasses.asdict(summary),
            "activation_mb": summary.activation_mb,
            "model_mb": summary.model_mb,
        }
        print(json.dumps(data, indent=2))
    else:
        print(render_summary(summary, name=title))
    return 0
