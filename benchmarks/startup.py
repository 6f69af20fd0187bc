"""Start-up and wind-down of a short run: process start -> first training step, last step -> exit.

Runs the real command, `cnnlab train convnet --epochs 1 --limit-train 256 --limit-test 256`, as a
fresh process per repeat, through a thin wrapper that notes the wall-clock moment the first training
batch is handed to the step and the moment the last step has finished (the training `Batches.iterate`
generator, nothing else is changed). The process start and exit are taken here, around the child.
With `--baseline-src DIR` (the `src/` folder of another checkout, e.g. `git archive BASE src | tar -x
-C /tmp/base`) each repeat runs that code and this one in turn, and the table gives both and their
ratio. The first repeat of each side is a warm-up (page cache, the decoded-dataset cache) and not kept.

    python benchmarks/startup.py --data-dir ../shared/datasets [--repeats 7] [--baseline-src /tmp/base/src]

Writes benchmarks/results/startup.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tables import describe_machine, write_table

# Runs in the child: patch the training batches to note the first step's start and the last step's end.
WRAPPER = r"""
import atexit, json, os, sys, time
marks = {}

def save_marks():
    with open(os.environ["STARTUP_MARKS"], "w") as f:
        json.dump(marks, f)

atexit.register(save_marks)
from cnnlab.data import batches

iterate = batches.Batches.iterate

def timed(self, epoch=0, start_step=0):
    for item in iterate(self, epoch, start_step):
        if self.shuffle:
            marks.setdefault("first_step", time.time())
        yield item
    if self.shuffle:
        marks["last_step"] = time.time()

batches.Batches.iterate = timed
import cnnlab.cli.main as cli

sys.argv = ["cnnlab", *sys.argv[1:]]
if hasattr(cli, "console"):  # exit as the `cnnlab` executable does
    cli.console()
raise SystemExit(cli.main())
"""


def one_run(src: str, args: argparse.Namespace, tmp: Path, tag: str) -> dict[str, float]:
    out, marks = tmp / f"run-{tag}", tmp / f"marks-{tag}.json"
    command = [
        sys.executable,
        "-c",
        WRAPPER,
        "train",
        args.model,
        "--dataset",
        args.dataset,
        "--epochs",
        "1",
        "--limit-train",
        str(args.images),
        "--limit-test",
        str(args.images),
        "--out",
        str(out),
        "--no-progress",
    ]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    env = {**os.environ, "PYTHONPATH": src, "STARTUP_MARKS": str(marks)}
    start = time.time()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    end = time.time()
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    m = json.loads(marks.read_text())
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return {
        "to_first_step": m["first_step"] - start,
        "training": m["last_step"] - m["first_step"],
        "last_step_to_exit": end - m["last_step"],
        "total": end - start,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--model", default="convnet")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--images", type=int, default=256, help="training and test images (--limit-train/test)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline-src", help="src/ folder of the code to compare with (run in turn with this one)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "startup.md"))
    args = parser.parse_args()

    sides = {"this": str(Path(__file__).resolve().parent.parent / "src")}
    if args.baseline_src:
        sides = {"baseline": str(Path(args.baseline_src).resolve()), **sides}
    times: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats + 1):
            for side, src in sides.items():  # in turn, so a drifting machine weighs on both alike
                row = one_run(src, args, Path(tmp), f"{side}-{repeat}")
                print(f"{side:8s} repeat {repeat}: " + "  ".join(f"{k} {v:.2f} s" for k, v in row.items()), flush=True)
                if repeat:
                    times[side].append(row)

    phases = ("to_first_step", "training", "last_step_to_exit", "total")
    lines = [
        "# Start-up and wind-down of a short run",
        "",
        f"`cnnlab train {args.model} --dataset {args.dataset} --epochs 1 --limit-train {args.images} "
        f"--limit-test {args.images}`, one fresh process per repeat, {args.repeats} repeats after one warm-up "
        "(sides in turn). Process start and exit are taken by the parent around the child; the first step's "
        "start and the last step's end by a wrapper around the training batches. Figures are median "
        "(min-max) seconds.",
        f"Machine: {describe_machine('cpu')}.",
        f"Command: `python benchmarks/startup.py {' '.join(sys.argv[1:])}`",
        "",
        "| code | " + " | ".join(p.replace("_", " ") for p in phases) + " |",
        "|---" * (len(phases) + 1) + "|",
    ]
    for side in sides:
        cells = []
        for phase in phases:
            values = [r[phase] for r in times[side]]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")
        lines.append(f"| {side} | " + " | ".join(cells) + " |")
    if args.baseline_src:
        cells = []
        for phase in phases:
            ratios = [b[phase] / t[phase] for b, t in zip(times["baseline"], times["this"])]
            cells.append(f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
        lines.append("| baseline / this, per pair | " + " | ".join(cells) + " |")
    write_table(args.output, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
