"""`cnnlab datasets`: every dataset, where it was found, its sizes and checksum state. Never downloads."""

from __future__ import annotations

import argparse
import json

from cnnlab.cli.options import add_data_dir, add_format

_COLUMNS = (  # (header, row -> cell)
    ("NAME", lambda r: r["name"]),
    ("TRAIN", lambda r: f"{r['train_size']:,}"),
    ("TEST", lambda r: f"{r['test_size']:,}"),
    ("SHAPE", lambda r: f"{r['channels']}x{r['image_size']}x{r['image_size']}"),
    ("CLASSES", lambda r: str(r["classes"])),
    ("CHECKSUM", lambda r: r["checksum"]),
    ("FOUND", lambda r: r["found"] + (f" ({r['origin']})" if r["origin"] not in ("", "package") else "")),
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "datasets",
        help="list the datasets: where they are, sizes, checksum state",
        description="List every dataset cnnlab knows: where its files were found (searching --data-dir, "
        "$CNNLAB_DATA, the user cache, then /usr/share/datasets), sizes, shape, classes and checksum state. "
        "Never downloads.",
    )
    add_data_dir(parser, help="folder to search first for the dataset files")
    add_format(parser)
    parser.set_defaults(func=run)


def render_table(rows: list[dict]) -> str:
    cells = [[header for header, _ in _COLUMNS]] + [[cell(r) for _, cell in _COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    lines += [f"{r['name']}: {r['note']}" for r in rows if r["note"]]
    if any(r["found"] == "not found" for r in rows):
        lines.append(
            "Datasets not found download on first use (unless $CNNLAB_OFFLINE is set); "
            "or supply the files with --data-dir DIR or $CNNLAB_DATA=DIR."
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.data import describe_datasets

    rows = describe_datasets(args.data_dir)
    print(json.dumps(rows, indent=2) if args.format == "json" else render_table(rows))
    return 0
