"""The command line's option vocabulary, declared once.

Training options become flags generated from TrainConfig (train, sweep and experiment share them), each
typed by `parse_option`, the parser `--set` uses too. Flags several commands share (`--data-dir`,
`--checkpoint`, `--format`, `--overwrite`, `--device`) are declared here. Only this layer speaks of flags:
the library names parameters (`resize=224`), and `as_flags` turns such a message into flag words.
"""

from __future__ import annotations

import argparse
import dataclasses
import re

from cnnlab.errors import CnnlabError


def _typed(name: str):
    # here: the config schema loads on use, so the parser builds without it
    from cnnlab.runfolder.config import parse_option

    def parse(text: str):
        try:
            return parse_option(name, text)
        except CnnlabError as err:  # "lr='x': lr takes a float value, e.g. lr=0.01"
            raise argparse.ArgumentTypeError(as_flags(CnnlabError(str(err).split(": ", 1)[1])).args[0]) from None

    return parse


def add_config_flags(
    parser: argparse.ArgumentParser, exclude: frozenset[str] | set[str] = frozenset(), defaults: dict | None = None
) -> None:
    """One flag per TrainConfig field (but `exclude`); unset flags stay absent from the namespace, so the
    layers below (recipe, config file, a command's own `defaults` shown in the help) show through."""
    # here: the config schema loads on use, so the parser builds without it
    from cnnlab.runfolder.config import TrainConfig

    shown = {**dataclasses.asdict(TrainConfig()), **(defaults or {})}
    for f in dataclasses.fields(TrainConfig):
        if f.name in exclude or f.metadata.get("role") == "recorded":  # written by train, never given
            continue
        flag = "--" + f.name.replace("_", "-")
        default = shown[f.name]
        help_text = f.metadata.get("help", "") + (f" (default: {default})" if default not in (None, {}, "") else "")
        if f.type == "bool":
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
        else:
            parser.add_argument(
                flag,
                dest=f.name,
                type=_typed(f.name),
                default=argparse.SUPPRESS,
                metavar=f.name.upper(),
                help=help_text,
            )


def config_options(args: argparse.Namespace, exclude: frozenset[str] | set[str] = frozenset()) -> dict:
    """The TrainConfig values given on the command line through `add_config_flags` (pass the same `exclude`:
    those names are the command's own arguments)."""
    # here: the config schema loads on use, so the parser builds without it
    from cnnlab.runfolder.config import TrainConfig

    return {
        name: getattr(args, name) for name in TrainConfig.field_names() if name in vars(args) and name not in exclude
    }


def as_flags(err: CnnlabError) -> CnnlabError:
    """`lr must be ...`, `unknown optimizer ...`, `resize=224` -> `--lr must be ...`, `--resize 224`."""
    # here: the config schema loads on use, so the parser builds without it
    from cnnlab.runfolder.config import TrainConfig

    message = str(err)
    for name in sorted(set(TrainConfig.field_names()) - {"model", "dataset"}, key=len, reverse=True):
        flag = "--" + name.replace("_", "-")
        message = re.sub(rf"^{name} (must|takes)\b", rf"{flag} \1", message)
        message = re.sub(rf"^unknown {name} ", f"unknown {flag} ", message)
        message = re.sub(rf"(?<![\w-]){name}=(?=\S)", f"{flag} ", message)
    return type(err)(message) if type(err) is CnnlabError else err


def add_data_dir(parser: argparse.ArgumentParser, help: str = "folder holding the dataset files") -> None:
    parser.add_argument("--data-dir", metavar="DIR", help=help)


def add_trust_code(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="a run of your own model: execute the copy of its source kept in RUN/model/ (checked against its "
        "sha256) to rebuild it; only for runs whose origin you trust",
    )


def add_checkpoint(parser: argparse.ArgumentParser, default: str = "best", help: str | None = None) -> None:
    parser.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default=default,
        help=help or f"which checkpoint of a run folder (default: {default})",
    )
    add_trust_code(parser)  # every command that reopens a checkpoint may meet a run of your own model


def add_format(parser: argparse.ArgumentParser, choices=("table", "json")) -> None:
    parser.add_argument(
        "--format", choices=list(choices), default=choices[0], help=f"output format (default: {choices[0]})"
    )


def add_device(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    # Checked where it is used (`pick_device`, the check `train` applies too): one vocabulary, one message.
    parser.add_argument(
        "--device", default=default, help="auto|cpu|cuda|cuda:N|mps" + (f" (default: {default})" if default else "")
    )


def add_overwrite(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what} if it exists")


def add_engine_flags(parser: argparse.ArgumentParser, unit: str, folder: str, storage_help: str) -> None:
    """--workers, --threads, --storage, --study-name and --heartbeat: how `sweep` and `tune` spread their `unit`s
    ("run", "trial") over processes and machines through one study; `folder` is the -o folder's metavar."""
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help=f"worker processes on this machine, each taking the next {unit} (default: 1; needs cnnlab[tune])",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, metavar="N",
        help="torch threads per worker (default: cores // workers; one worker: automatic)",
    )  # fmt: skip
    parser.add_argument("--storage", metavar="URL|FILE", help=storage_help)
    parser.add_argument(
        "--study-name", metavar="NAME", help=f"the study's name in the storage (default: the {folder} folder's name)"
    )
    parser.add_argument(
        "--heartbeat", type=int, default=30, metavar="SECONDS",
        help=f"a worker's heartbeat; a {unit} silent for 3x this is retried elsewhere (default: 30)",
    )  # fmt: skip
