"""Record recipes under airbench's protocol: a fixed recipe, its FINAL test accuracy averaged over seeds.

Each record is `cnnlab train --recipe NAME --seed S`, one fresh process per seed. Time is wall clock from
process start (imports and data loading included) to the end of the final evaluation: the moment
summary.json is written, just after it (its mtime). No early stopping, no picking the best epoch.
A record holds when the mean final test accuracy reaches the target and the median time is within
the budget. Usage:

    python benchmarks/records.py --data-dir ../shared/datasets [--seeds 5] [--records mnist-99.0 ...] [--keep DIR] [-- FLAGS]

A record whose recipe uses test-time augmentation (--tta) is also evaluated without it afterwards (`cnnlab eval
--no-tta`, not timed): the last column says what TTA gave.

Writes benchmarks/results/records.md.
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

from tables import describe_machine, mean_std, write_table

# record -> (target final test accuracy, time budget in seconds on the 2-core CPU of the issue)
TARGETS = {
    "mnist-99.0": (0.990, 5.0),
    "mnist-99.2": (0.992, 8.0),
    "fashion-mnist-91": (0.91, 12.0),
    "mnist-99.5": (0.995, 60.0),
    "fashion-mnist-93": (0.93, 180.0),
}


def one_run(
    name: str, seed: int, data_dir: str | None, out: Path, extra: list[str]
) -> tuple[float, float, float | None]:
    """(final test accuracy, seconds, final test accuracy without test-time augmentation where the run used it)."""
    command = [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        "--recipe",
        name,
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ] + (["--data-dir", data_dir] if data_dir else [])
    start = time.time()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    summary_path = out / "summary.json"
    seconds = summary_path.stat().st_mtime - start
    plain = None
    if json.loads((out / "config.json").read_text())["config"].get("tta"):  # the same model, evaluated without it
        command = [
            sys.executable,
            "-m",
            "cnnlab",
            "eval",
            str(out),
            "--checkpoint",
            "last",
            "--no-tta",
            "--format",
            "json",
            "-o",
            str(out / "plain.png"),
        ] + (["--data-dir", data_dir] if data_dir else [])
        evaluated = subprocess.run(command, capture_output=True, text=True, check=True)
        plain = json.loads(evaluated.stdout)["accuracy"]
    return json.loads(summary_path.read_text())["final_test_acc"], seconds, plain


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--records", nargs="+", default=list(TARGETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "records.md"))
    parser.add_argument("--keep", help="keep the run folders in this folder (default: a temporary one)")
    parser.add_argument("extra", nargs="*", help="more `cnnlab train` flags, after --")
    args = parser.parse_args()

    lines = [
        "# Records: fixed recipes, final test accuracy over seeds",
        "",
        "`cnnlab train --recipe NAME --seed S`, one fresh process per seed (seeds 1..N); final test accuracy "
        "(no early stop, no best epoch); time from process start to the end of the final evaluation.",
        f"Machine: {describe_machine('cpu')}.",
        f"Command: `python benchmarks/records.py {' '.join(sys.argv[1:])}`",
        "",
        "| record | target | budget s | seeds | final test acc mean ± std | min-max | median s | min-max s | holds | "
        "without TTA: mean ± std |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        for name in args.records:
            target, budget = TARGETS[name]
            accs, times, plains = [], [], []
            for seed in range(1, args.seeds + 1):
                acc, seconds, plain = one_run(name, seed, args.data_dir, folder / f"{name}-{seed}", args.extra)
                accs.append(acc)
                times.append(seconds)
                plains += [plain] if plain is not None else []
                print(
                    f"{name} seed {seed}: final test acc {acc:.2%} in {seconds:.1f} s"
                    + (f" ({plain:.2%} without TTA)" if plain is not None else ""),
                    flush=True,
                )
            median = statistics.median(times)
            holds = "yes" if statistics.mean(accs) >= target and median <= budget else "no"
            lines.append(
                f"| {name} | {target:.1%} | {budget:.0f} | {len(accs)} | {mean_std(accs)} | "
                f"{min(accs):.2%}-{max(accs):.2%} | {median:.1f} | {min(times):.1f}-{max(times):.1f} | {holds} | "
                f"{mean_std(plains) if plains else '-'} |"
            )
    write_table(args.output, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
