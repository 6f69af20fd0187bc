"""Peak memory (max RSS) of a full-MNIST training run, as a separate process.

    python benchmarks/memory.py --data-dir ../shared/datasets [--model convnet] [--epochs 1]

Goal: at most 1 GB. The dataset is 47 MB as uint8; normalized float inputs prepared once add 188 MB.
Writes benchmarks/results/memory.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from tables import write_table


def peak_rss_mb(command: list[str]) -> float:
    """Peak RSS of `command`, run as the only child of a fresh interpreter (RUSAGE_CHILDREN is a max over all)."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe, *command], check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--models", nargs="+", default=["mlp-tiny", "convnet", "fast-cnn", "resnet-mini"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "memory.md"))
    args = parser.parse_args()
    lines = [
        "# Peak memory of a full-MNIST training run",
        "",
        f"Command: `python benchmarks/memory.py {' '.join(sys.argv[1:])}`; each model in a fresh process "
        "(`cnnlab train MODEL --dataset mnist`), peak resident set size of that process. For scale: "
        f"`import torch` alone is {peak_rss_mb([sys.executable, '-c', 'import torch']):,.0f} MB here.",
        "",
        "| model | epochs | peak RSS (MB) | goal |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            command = [
                sys.executable,
                "-m",
                "cnnlab",
                "train",
                model,
                "--dataset",
                "mnist",
                "--epochs",
                str(args.epochs),
                "--out",
                f"{tmp}/{model}",
                "--no-progress",
            ] + (["--data-dir", args.data_dir] if args.data_dir else [])
            mb = peak_rss_mb(command)
            line = f"| {model} | {args.epochs} | {mb:,.0f} | {'ok' if mb <= 1024 else 'OVER'} (≤ 1,024) |"
            print(line, flush=True)
            lines.append(line)
    write_table(args.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
