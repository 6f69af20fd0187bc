"""`cnnlab recipes [PATTERN]`: each model's reference and fast recipe, with the result to expect."""

from __future__ import annotations

import argparse
import json

from cnnlab.cli.options import add_format


def _describe(recipe: dict) -> str:
    return " ".join(f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in recipe.items())


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "recipes",
        help="list the training recipes of each model",
        description="Each model's reference recipe (as published) and fast recipe "
        "(CPU-friendly), for `cnnlab train MODEL --recipe NAME`.",
    )
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style model pattern, e.g. 'res*'")
    add_format(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.errors import CnnlabError
    from cnnlab.models import list_models, model_info

    names = list_models(args.pattern)
    if not names:
        raise CnnlabError(f"no model matches {args.pattern!r}; see `cnnlab models`")
    rows = [model_info(n) for n in names]
    if args.format == "json":
        print(
            json.dumps(
                [
                    {
                        "model": i.name,
                        "reference": i.reference_recipe,
                        "fast": i.fast_recipe,
                        "reference_result": i.reference_result,
                        "records": i.records,
                    }
                    for i in rows
                ],
                indent=2,
            )
        )
        return 0
    for info in rows:
        print(f"{info.name}  — expect: {info.reference_result}")
        print(f"  reference: {_describe(info.reference_recipe)}")
        print(f"  fast:      {_describe(info.fast_recipe)}")
        for name, values in info.records.items():
            print(f"  record {name} (`cnnlab train --recipe {name}`): {_describe(values)}")
    return 0
