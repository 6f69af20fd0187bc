"""Per-epoch training time of each tutorial model's reference recipe: the seed's loop vs cnnlab, in one run.

Three sides, each a fresh process, one epoch of the model's `reference_recipe` on MNIST, in turn per round:
(a) the seed's loop: torchvision `datasets.MNIST` + per-sample `DataLoader`, fp32 (throughput.py's
    `tutorial_to_target`); its epoch's training time, without the test after it;
(b) `cnnlab train MODEL --recipe reference --epochs 1 --precision fp32 --no-channels-last`: the published
    arithmetic;
(c) `cnnlab train MODEL --recipe reference --epochs 1`: the recipe as registered (its layout and precision).
For (b) and (c), `epoch_seconds` of metrics.csv (training only). Usage:

    python benchmarks/reference_speed.py --data-dir ../shared/datasets [--rounds 2] [--models ...]

Writes benchmarks/results/reference_speed.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tables import describe_machine, write_table

MODELS = ["mlp-tiny", "cnn-tiny", "convnet", "resnet-mini", "inception-mini"]
# the goals: (a) / (c) per epoch
GOALS = {"convnet": 5.0, "cnn-tiny": 3.5, "resnet-mini": 2.5, "inception-mini": 2.0}
SIDES = {"b": ["--precision", "fp32", "--no-channels-last"], "c": []}


def worker(args: argparse.Namespace) -> int:
    """Side (a) in this fresh process: one JSON line for its one epoch."""
    import torch

    from cnnlab.models import model_info
    from throughput import tutorial_to_target

    recipe = {**model_info(args.model).reference_recipe, "epochs": 1}
    tutorial_to_target(
        Path(args.root),
        args.model,
        recipe,
        2.0,
        torch.device("cpu"),
        report=lambda row: print(json.dumps(row), flush=True),
    )
    return 0


def run_a(name: str, root: Path) -> float:
    result = subprocess.run(
        [sys.executable, __file__, "--side", "a", "--model", name, "--root", str(root)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{name} (a) failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.splitlines()[-1])["train_seconds"]


def run_cnnlab(name: str, flags: list[str], data_dir: str, out: Path) -> float:
    command = [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        name,
        "--recipe",
        "reference",
        "--epochs",
        "1",
        "--data-dir",
        data_dir,
        "--out",
        str(out),
        "--no-progress",
        *flags,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    with open(out / "metrics.csv") as f:
        return float(next(csv.DictReader(f))["epoch_seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with mnist/ (required)")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "reference_speed.md"))
    parser.add_argument("--side", choices=("a",), help=argparse.SUPPRESS)  # worker mode
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return worker(args)
    if not args.data_dir:
        parser.error("--data-dir is required: the seed's loop reads the real MNIST files")

    import torch

    from cnnlab.device import resolve_precision
    from cnnlab.models import model_info
    from throughput import tutorial_root

    rows, loads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root, kind = tutorial_root(args.data_dir, Path(tmp) / "tutorial")  # decompressed once: not timed
        if kind != "mnist":
            raise SystemExit("reference_speed needs the real MNIST (--data-dir with mnist/)")
        for name in args.models:
            times: dict[str, list[float]] = {"a": [], "b": [], "c": []}
            for round_ in range(args.rounds):
                loads.append(os.getloadavg()[0])
                times["a"].append(run_a(name, root))
                for side, flags in SIDES.items():
                    times[side].append(run_cnnlab(name, flags, args.data_dir, Path(tmp) / f"{name}-{side}-{round_}"))
                print(
                    f"{name} round {round_ + 1}: " + ", ".join(f"({s}) {t[-1]:.2f} s" for s, t in times.items()),
                    flush=True,
                )
            rows.append((name, times))

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    lines = [
        "# Reference recipes: one epoch's training time, the seed's loop vs cnnlab",
        "",
        "One epoch of each model's `--recipe reference` on MNIST, training time only (no test), fresh process per "
        f"side, sides in turn, {args.rounds} rounds; median (min-max) seconds; ratios of medians. (a) the seed's "
        "loop (torchvision `datasets.MNIST`, per-sample `DataLoader`, fp32 NCHW); (b) cnnlab in the published "
        "arithmetic (`--precision fp32 --no-channels-last`); (c) cnnlab's reference recipe as registered.",
        f"Machine: {describe_machine('cpu')}. Load average (1 min) before each round: "
        f"{min(loads):.1f}-{max(loads):.1f}.",
        f"Command: `python benchmarks/reference_speed.py {' '.join(sys.argv[1:])}`",
        "",
        "| model | batch | (c) arithmetic | (a) seed s | (b) fp32 s | (c) recipe s | (a)/(b) | (a)/(c) | goal (a)/(c) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, times in rows:
        recipe = model_info(name).reference_recipe
        arithmetic = (
            f"{resolve_precision(torch.device('cpu'), recipe['precision'])}, "
            f"{'channels-last' if recipe['channels_last'] else 'NCHW'}"
        )
        a, b, c = (statistics.median(times[s]) for s in "abc")
        goal = GOALS.get(name)
        lines.append(
            f"| {name} | {recipe['batch_size']} | {arithmetic} | {cell(times['a'])} | {cell(times['b'])} | "
            f"{cell(times['c'])} | {a / b:.1f}x | {a / c:.1f}x | "
            + (f"≥ {goal}x: {'met' if a / c >= goal else 'not met'}" if goal else "-")
            + " |"
        )
    write_table(args.output, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
