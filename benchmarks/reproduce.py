"""Every model's reference recipe, run as published, against the published result.

Each model's `--recipe reference` runs twice per seed: as the recipe says (its layout and precision:
channels-last and bf16 where `auto` picks it on this CPU), and in the published arithmetic (fp32, NCHW),
so the table shows whether the faster arithmetic still reaches the published accuracy.
Long (hours on a CPU for the 224-pixel models): documented here, not run in CI.
On a CPU, large models may be shrunk with --limit-train / --resize, and the table says so.

    python benchmarks/reproduce.py --data-dir ../shared/datasets [--models ...] [--seeds 3] [--limit-train N] [--resize-large N]

Writes benchmarks/results/reproduce.md.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

from cnnlab.device import pick_device, resolve_precision
from cnnlab.errors import CnnlabError
from cnnlab.models import list_models, model_info
from cnnlab.training import resolve_config, train
from cnnlab.training.loop import TrainingInterrupted
from tables import describe_machine, mean_std, write_table

# What each side changes in the reference recipe: nothing, or the published arithmetic.
SIDES = {"recipe": {}, "fp32": {"precision": "fp32", "channels_last": False}}


def epoch_seconds(run: Path) -> float:
    """Median training seconds per epoch, from the run's metrics.csv."""
    with open(run / "metrics.csv") as f:
        return statistics.median(float(row["epoch_seconds"]) for row in csv.DictReader(f))


def accuracies(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{mean_std(values)} ({', '.join(f'{v:.2%}' for v in values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N, each side")
    parser.add_argument("--limit-train", type=int, help="train on the first N images only (stated in the table)")
    parser.add_argument(
        "--resize-large", type=int, help="input size for models whose reference input is larger (stated in the table)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/reproduce")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "reproduce.md"))
    args = parser.parse_args()

    device = pick_device(args.device)
    lines = [
        "# Reference recipes: published vs measured",
        "",
        "`--recipe reference` as the recipe says (its layout, and its precision as resolved on this device), "
        "against the published arithmetic (`--precision fp32`, NCHW), "
        f"seeds 1..{args.seeds} each side; final test accuracy mean ± std (per seed); s/epoch: median training "
        "seconds per epoch (metrics.csv), all seeds.",
        f"Machine: {describe_machine(device)}.",
        f"Command: `python benchmarks/reproduce.py {' '.join(sys.argv[1:])}`",
        "",
        "| model | dataset | published | recipe's arithmetic | test acc, recipe | test acc, fp32 NCHW | "
        "s/epoch recipe | s/epoch fp32 | speed-up | changes from the recipe | time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in args.models:
        info = model_info(name)
        reference = info.reference_recipe
        options = {
            "model": name,
            "recipe": "reference",
            "data_dir": args.data_dir,
            "device": args.device,
            "progress": False,
        }
        changes = []
        if args.limit_train:
            options["limit_train"] = args.limit_train
            changes.append(f"first {args.limit_train:,} train images")
        if args.resize_large and (reference.get("resize") or 0) > args.resize_large:
            options["resize"] = max(args.resize_large, info.min_input_size)
            changes.append(f"resize {options['resize']} instead of {reference['resize']}")
        arithmetic = (
            f"{resolve_precision(device, reference['precision'])}, "
            f"{'channels-last' if reference['channels_last'] else 'NCHW'}"
        )
        accs: dict[str, list[float]] = {side: [] for side in SIDES}
        seconds: dict[str, list[float]] = {side: [] for side in SIDES}
        start, error = time.perf_counter(), None
        for seed in range(1, args.seeds + 1):
            for side, overrides in SIDES.items():
                out = Path(args.out, f"{name}-{side}-seed{seed}")
                try:
                    result = train(resolve_config({**options, **overrides, "seed": seed, "out": str(out)}))
                except TrainingInterrupted:
                    raise  # Ctrl-C or a kill stops the benchmark, not just this model
                except CnnlabError as err:
                    error = f"not run: {err}"
                    break
                accs[side].append(result.summary["final_test_acc"])
                seconds[side].append(epoch_seconds(out))
                print(f"{name} seed {seed} {side}: {accs[side][-1]:.2%}, {seconds[side][-1]:.2f} s/epoch", flush=True)
            if error:
                break
        per_epoch = {side: statistics.median(v) if v else float("nan") for side, v in seconds.items()}
        row = (
            f"| {name} | {reference['dataset']} | {info.reference_result} | {arithmetic} | "
            f"{error or accuracies(accs['recipe'])} | {accuracies(accs['fp32'])} | {per_epoch['recipe']:.2f} | "
            f"{per_epoch['fp32']:.2f} | {per_epoch['fp32'] / per_epoch['recipe']:.2f}x | "
            f"{'; '.join(changes) or 'none'} | {time.perf_counter() - start:,.0f} s |"
        )
        print(row, flush=True)
        lines.append(row)
    write_table(args.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
