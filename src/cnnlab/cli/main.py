"""The `cnnlab` command: a thin layer over the Python API.

Each sub-command lives in its own module under `cnnlab.cli` and exposes
`register(subparsers)`, which adds its parser and sets `func` to a handler
`handler(args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from cnnlab import __version__
from cnnlab.errors import CnnlabError

# Sub-command modules, in the order `cnnlab --help` lists them.
COMMAND_MODULES = [
    "cnnlab.cli.train",
    "cnnlab.cli.evaluate",
    "cnnlab.cli.predict",
    "cnnlab.cli.export",
    "cnnlab.cli.recipes",
    "cnnlab.cli.datasets",
    "cnnlab.cli.models",
    "cnnlab.cli.inspect",
    "cnnlab.cli.experiment",
    "cnnlab.cli.compare",
    "cnnlab.cli.sweep",
    "cnnlab.cli.report",
    "cnnlab.cli.serve",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="Train, inspect and compare classic CNNs on the MNIST family.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, before or after the sub-command.
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug = debug
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CnnlabError as err:
        if args.debug:
            raise
        # Under torchrun every rank hits the same error: say it once.
        if os.environ.get("RANK", "0") == "0":
            print(f"cnnlab: {err.label}: {err}", file=sys.stderr)
        return err.exit_code
    except Exception as err:  # noqa: BLE001
        # A bug under torchrun: one line per failing rank instead of N interleaved tracebacks.
        if args.debug or os.environ.get("WORLD_SIZE", "1") == "1":
            raise
        print(f"cnnlab: error (rank {os.environ.get('RANK')}): {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
