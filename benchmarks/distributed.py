"""Images/s of data-parallel training: 1 process vs N processes (`cnnlab train --nproc N`).

    python benchmarks/distributed.py --data-dir ../shared/datasets [--model convnet] [--nproc 2]

On one CPU machine the processes share its cores, so expect no speed-up; the figure shows the
cost of the gradient all-reduce. Writes benchmarks/results/distributed.md.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tables import write_table


def run(model: str, nproc: int, data_dir: str | None, out: Path, epochs: int, batch: int) -> tuple[float, float]:
    command = [sys.executable, "-m", "cnnlab", "train", model, "--dataset", "mnist", "--recipe", "none",
               "--epochs", str(epochs), "--batch-size", str(batch), "--out", str(out), "--no-progress",
               "--nproc", str(nproc)] + (["--data-dir", data_dir] if data_dir else [])
    start = time.time()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.time() - start
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    return float(rows[-1]["images_per_s"]), wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--models", nargs="+", default=["mlp-tiny", "convnet"])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="the last epoch is timed")
    parser.add_argument("--batch-size", type=int, default=256, help="global batch")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "distributed.md"))
    args = parser.parse_args()
    lines = ["# Data-parallel throughput on this machine", "",
             f"Command: `python benchmarks/distributed.py {' '.join(sys.argv[1:])}`; global batch {args.batch_size}, "
             "images/s of the last epoch (training only), wall time of the whole command.", "",
             f"| model | 1 process img/s | {args.nproc} processes img/s | ratio | wall 1 / {args.nproc} (s) |",
             "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            one, wall_one = run(model, 1, args.data_dir, Path(tmp) / f"{model}-1", args.epochs, args.batch_size)
            many, wall_many = run(model, args.nproc, args.data_dir, Path(tmp) / f"{model}-n", args.epochs, args.batch_size)
            line = f"| {model} | {one:,.0f} | {many:,.0f} | {many / one:.2f}x | {wall_one:.0f} / {wall_many:.0f} |"
            print(line, flush=True)
            lines.append(line)
    write_table(args.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
