"""Every model's reference recipe, run as published, against the published result.

Long (hours on a CPU for the 224-pixel models): documented here, not run in CI.
On a CPU, large models may be shrunk with --limit-train / --resize, and the table says so.

    python benchmarks/reproduce.py --data-dir ../shared/datasets [--models ...] [--limit-train N] [--resize-large N]

Writes benchmarks/results/reproduce.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tables import write_table

from cnnlab.errors import CnnlabError
from cnnlab.models import list_models, model_info
from cnnlab.training import resolve_config, train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--limit-train", type=int, help="train on the first N images only (stated in the table)")
    parser.add_argument("--resize-large", type=int,
                        help="input size for models whose reference input is larger (stated in the table)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/reproduce")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "reproduce.md"))
    args = parser.parse_args()

    lines = ["# Reference recipes: published vs measured", "",
             f"Command: `python benchmarks/reproduce.py {' '.join(sys.argv[1:])}`", "",
             "| model | dataset | published | measured test acc | changes from the recipe | time |", "|---|---|---|---|---|---|"]
    for name in args.models:
        info = model_info(name)
        options = {"model": name, "recipe": "reference", "data_dir": args.data_dir, "device": args.device,
                   "progress": False, "out": f"{args.out}/{name}"}
        changes = []
        if args.limit_train:
            options["limit_train"] = args.limit_train
            changes.append(f"first {args.limit_train:,} train images")
        if args.resize_large and (info.reference_recipe.get("resize") or 0) > args.resize_large:
            options["resize"] = max(args.resize_large, info.min_input_size)
            changes.append(f"resize {options['resize']} instead of {info.reference_recipe['resize']}")
        start = time.perf_counter()
        try:
            result = train(resolve_config(options))
            measured = f"{result.summary['final_test_acc']:.2%}"
        except CnnlabError as err:
            measured = f"not run: {err}"
        seconds = time.perf_counter() - start
        row = (f"| {name} | {info.reference_recipe['dataset']} | {info.reference_result} | {measured} | "
               f"{'; '.join(changes) or 'none'} | {seconds:,.0f} s |")
        print(row, flush=True)
        lines.append(row)
    write_table(args.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
