"""`cnnlab datasets`: every dataset, where it was found, its sizes and checksum state. Never downloads.

`cnnlab datasets add NAME PATH` names one of the user's own datasets (a folder, or a .npz, .csv or .parquet
file) so that `--dataset NAME` finds it; `cnnlab datasets remove NAME` forgets the name (never the files).
The listing shows the names below the catalog table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from cnnlab.cli.options import add_data_dir, add_format
from cnnlab.errors import CnnlabError

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
    # An optional action: `cnnlab datasets` alone lists, as it always has.
    actions = parser.add_subparsers(dest="action", metavar="ACTION", title="actions (optional; the default lists)")
    add = actions.add_parser(
        "add",
        help="name one of your own datasets: cnnlab datasets add NAME PATH",
        description="Name your own dataset (a folder, or a .npz, .csv or .parquet file) so that "
        "`cnnlab train --dataset NAME` finds it. The name is kept in $CNNLAB_CONFIG/datasets.json or "
        "~/.config/cnnlab/datasets.json, with the path made absolute; adding a name again points it elsewhere.",
    )
    add.add_argument("name", metavar="NAME", help="1-64 lowercase letters, digits, '-' or '_'")
    add.add_argument("path", metavar="PATH", help="the dataset's folder or .npz, .csv or .parquet file")
    add.set_defaults(func=run_add)
    remove = actions.add_parser(
        "remove",
        help="forget a dataset name (the files stay)",
        description="Forget a name given with `cnnlab datasets add`; the dataset's files are not touched.",
    )
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(func=run_remove)
    cache = actions.add_parser(
        "cache",
        help="list the decoded copies of your own datasets (--clear removes them)",
        description="List the import cache: each decoded copy of one of your own datasets, its size, when it was "
        "imported and the dataset path it came from. A folder that changed is imported anew and the old copy "
        "stays; --clear removes them all (the next use of a dataset imports it again).",
    )
    cache.add_argument("--clear", action="store_true", help="remove every decoded copy (the datasets are untouched)")
    add_format(cache)
    cache.set_defaults(func=run_cache)


def render_table(rows: list[dict], names: dict[str, str] | None = None) -> str:
    cells = [[header for header, _ in _COLUMNS]] + [[cell(r) for _, cell in _COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    lines += [f"{r['name']}: {r['note']}" for r in rows if r["note"]]
    if names:
        width = max(len(name) for name in names)
        lines.append("Your datasets (use one with --dataset NAME; name another with `cnnlab datasets add NAME PATH`):")
        lines += [
            f"  {name.ljust(width)} -> {path}" + ("" if os.path.exists(path) else " (missing)")
            for name, path in names.items()
        ]
    if any(r["found"] == "not found" for r in rows):
        lines.append(
            "Datasets not found download on first use (unless $CNNLAB_OFFLINE is set); "
            "or supply the files with --data-dir DIR or $CNNLAB_DATA=DIR."
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.data import describe_datasets, names

    rows = describe_datasets(args.data_dir)
    try:
        registered, problem = names.list_names(), None
    except CnnlabError as err:  # a damaged names file: the catalog is still listed, then the one-line error
        registered, problem = {}, err
    if args.format == "json":
        mine = [
            {"name": name, "registered": True, "origin": "registered", "path": path, "found": path}
            | ({} if os.path.exists(path) else {"found": "missing"})
            for name, path in registered.items()
        ]
        print(json.dumps([{**row, "registered": False} for row in rows] + mine, indent=2))
    else:
        print(render_table(rows, registered))
    if problem is not None:
        print(f"cnnlab: {problem.label}: {problem}", file=sys.stderr)
        return problem.exit_code
    return 0


def run_add(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.data import names

    before = names.resolve_name(args.name) if names.NAME_PATTERN.fullmatch(args.name) else None
    path = names.add_name(args.name, args.path)
    replaced = f" (it was {before})" if before is not None and before != path else ""
    print(f"registered {args.name} -> {path}{replaced} in {names.registry_path()}")
    print(f"use it: cnnlab train --dataset {args.name}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.data import names

    path = names.resolve_name(args.name)
    names.remove_name(args.name)
    print(f"removed the name {args.name} (it was {path}); the dataset's files are untouched")
    return 0


def run_cache(args: argparse.Namespace) -> int:
    import time

    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.data import import_cache
    from cnnlab.data.imported import cache_folder

    if args.clear:
        removed, freed = import_cache.clear_cache()
        print(f"removed {removed} decoded copies ({freed / 2**20:,.1f} MiB) from {cache_folder()}")
        return 0
    files = import_cache.cache_files()
    if args.format == "json":
        print(json.dumps([
            {"path": str(f.path), "bytes": f.bytes, "imported": f.modified, "sources": f.sources} for f in files
        ], indent=2))  # fmt: skip
        return 0
    total = sum(f.bytes for f in files)
    print(f"import cache {cache_folder()}: {len(files)} decoded copies, {total / 2**20:,.1f} MiB")
    for f in files:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(f.modified))
        print(f"  {f.path.name}  {f.bytes / 2**20:9,.1f} MiB  {when}  {', '.join(f.sources) or '(source unknown)'}")
    if files:
        print("remove them all with: cnnlab datasets cache --clear (each is imported again when next used)")
    return 0
