"""Evaluation time over the MNIST test split against the evaluation batch size (`--eval-batch-size`).

The model's weights do not change the time, so each model is freshly initialized, in the layout and
precision of its fast recipe; 3 passes per batch size, in turn, after one warm-up pass. Usage:

    python benchmarks/eval_batch.py --data-dir ../shared/datasets [--models fast-cnn resnet-mini] [--device cpu]

Writes benchmarks/results/eval_batch.md.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import torch

from cnnlab.data import load_dataset
from cnnlab.data.batches import Batches
from cnnlab.data.catalog import get_spec
from cnnlab.device import autocast_context, pick_device, resolve_precision, tune_cpu_threads
from cnnlab.models import create_model, model_info
from cnnlab.runfolder.preprocess import build_transform
from cnnlab.runs.evaluate import evaluate
from cnnlab.training import resolve_config
from tables import describe_machine, write_table

SIZES = (250, 500, 1000, 2500, 10000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--models", nargs="+", default=["fast-cnn", "resnet-mini", "inception-mini"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "eval_batch.md"))
    args = parser.parse_args()

    device = pick_device(args.device)
    if device.type == "cpu":
        tune_cpu_threads()  # as the trainer does: on a busy machine, 2 threads wait on each other
    data = load_dataset("mnist", args.data_dir)
    spec = get_spec("mnist")
    lines = [
        "# Evaluation batch size",
        "",
        "Seconds to evaluate the 10,000 MNIST test images (median of the passes, min-max), each model in its "
        f"fast recipe's layout and precision, batch sizes in turn, {args.repeats} passes each after a warm-up.",
        f"Machine: {describe_machine(device)}.",
        f"Command: `python benchmarks/eval_batch.py {' '.join(sys.argv[1:])}`",
        "",
        "| model | precision | " + " | ".join(f"batch {s}" for s in SIZES) + " |",
        "|---|---|" + "---|" * len(SIZES),
    ]
    for name in args.models:
        config = resolve_config({"model": name, "dataset": "mnist", "device": args.device})
        precision = resolve_precision(device, config.precision)
        autocast = functools.partial(autocast_context, device, precision)
        model = create_model(name, **config.model_options).to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        images, labels = data.test_images.to(device), data.test_labels.to(device)
        batches = {
            s: Batches(images, labels, s, build_transform(config, spec, train=False), shuffle=False) for s in SIZES
        }
        evaluate(model, batches[500], 10, autocast, config.channels_last)  # warm-up
        times: dict[int, list[float]] = {s: [] for s in SIZES}
        for _ in range(args.repeats):
            for size in SIZES:
                start = time.perf_counter()
                evaluate(model, batches[size], 10, autocast, config.channels_last)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[size].append(time.perf_counter() - start)
        row = (
            f"| {name} ({model_info(name).num_params:,} params) | {precision} | "
            + " | ".join(f"{statistics.median(t):.3f} ({min(t):.3f}-{max(t):.3f})" for t in times.values())
            + " |"
        )
        print(row, flush=True)
        lines.append(row)
    write_table(args.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
