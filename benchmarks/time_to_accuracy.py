"""Wall time from command start (data loading included) until test accuracy first reaches a target.

Runs the real command, `cnnlab train MODEL --recipe fast --target-acc T`, as a fresh process per
seed, and reads the moment the target was reached from the run's summary.json. Targets:
MNIST 99.2% (the recipe's 2 epochs), Fashion-MNIST 91% (3 epochs). Usage:

    python benchmarks/time_to_accuracy.py --data-dir ../shared/datasets [--seeds 3] [--model fast-cnn]

Writes benchmarks/results/time_to_accuracy.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tables import describe_machine, write_table

# dataset -> (target test accuracy, epochs of the schedule: the fast recipe's own when None)
TARGETS = {"mnist": (0.992, None), "fashion-mnist": (0.91, 3)}


def one_run(
    model: str, dataset: str, target: float, seed: int | None, data_dir: str | None, out: Path, extra: list[str]
):
    """(seconds from process start to the target or None, best test acc, wall seconds, epochs) of one
    `cnnlab train MODEL --recipe fast --target-acc T` in a fresh process (seed None: the recipe's)."""
    command = [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        model,
        "--recipe",
        "fast",
        "--dataset",
        dataset,
        *(["--seed", str(seed)] if seed is not None else []),
        "--target-acc",
        str(target),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]
    if data_dir:
        command += ["--data-dir", data_dir]
    start = time.time()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.time() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    reached = summary.get("target_reached")
    return (reached["unix_time"] - start if reached else None), summary["best_test_acc"], wall, summary["epochs"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--model", default="fast-cnn")
    parser.add_argument("--datasets", nargs="+", default=list(TARGETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "time_to_accuracy.md"))
    parser.add_argument("extra", nargs="*", help="more `cnnlab train` flags, after --")
    args = parser.parse_args()

    lines = [
        "# Time to accuracy",
        "",
        f"`cnnlab train {args.model} --recipe fast --target-acc T`, one fresh process per seed; wall time from "
        "process start (imports and data loading included) to the end of the epoch whose test accuracy first "
        "reached T.",
        f"Machine: {describe_machine('cuda' if 'cuda' in args.extra else 'cpu')}.",
        f"Command: `python benchmarks/time_to_accuracy.py {' '.join(sys.argv[1:])}`",
        "",
        "| dataset | target | seeds | median s | min s | max s | epochs | best acc per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            target, epochs_flag = TARGETS[dataset]
            extra = args.extra + (["--epochs", str(epochs_flag)] if epochs_flag else [])
            times, accs, epochs = [], [], []
            for seed in range(1, args.seeds + 1):
                seconds, best, wall, n = one_run(
                    args.model, dataset, target, seed, args.data_dir, Path(tmp) / f"{dataset}-{seed}", extra
                )
                print(
                    f"{dataset} seed {seed}: target {target:.1%} "
                    + (f"reached in {seconds:.1f} s" if seconds is not None else "NOT reached")
                    + f" (best {best:.2%}, {n} epochs, process {wall:.1f} s)",
                    flush=True,
                )
                times.append(seconds if seconds is not None else float("inf"))
                accs.append(f"{best:.2%}")
                epochs.append(n)
            finite = [t for t in times if t != float("inf")]
            median = statistics.median(times)
            lines.append(
                f"| {dataset} | {target:.1%} | {args.seeds} | {median:.1f} | {min(times):.1f} | "
                f"{max(times):.1f} | {'/'.join(map(str, epochs))} | {', '.join(accs)}"
                + ("" if len(finite) == len(times) else " (inf: a seed missed the target)")
                + " |"
            )
    write_table(args.output, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
