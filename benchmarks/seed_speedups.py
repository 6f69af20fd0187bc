"""Time to the published accuracy: the original tutorial's own loop vs cnnlab, per tutorial model, from process start.

For each model of the original tutorial scripts (all on MNIST, target = its published test accuracy):
(a) the tutorial's loop: its reference recipe (`model_info(name).reference_recipe`: batch, SGD lr/momentum,
    normalization, seed, epochs) with torchvision's per-sample `DataLoader` and a test after every epoch
    (throughput.py's side (a), `tutorial_to_target`), until the test accuracy reaches the target or the
    recipe's epochs end; in a fresh process, timed from just before that process starts;
(b) `cnnlab train MODEL --dataset mnist --recipe fast [--epochs E] --target-acc T`, in a fresh process, timed
    from just before it starts to `target_reached.unix_time` in its summary.json.
(a) and (b) run in turn (a, b, a, b, ...). An (a) run past `--cap` seconds stops at its next step: its time is
then a measured lower bound (">"), and the table says how many epochs it had done and their accuracy.

The 224-pixel Fashion-MNIST seeds (nin-single 85.74%, alexnet 88%, 10 epochs each) take hours on this CPU:
(a) is then their loop (torchvision `datasets.FashionMNIST` + `Resize(224)` + per-sample `DataLoader`, the
recipe's batch, SGD and Xavier init) timed over 50 steps after 5 of warm-up, and extrapolated to the recipe's
10 epochs (training only: a lower bound); (b) is `cnnlab train MODEL --recipe fast --target-acc T` (reduced
resolution, BatchNorm), run to the target. Usage:

    python benchmarks/seed_speedups.py --data-dir ../shared/datasets [--rounds 2] [--cap 150] [--models ...]
        [--fashion-models nin-single alexnet]

Writes benchmarks/results/seed_speedups.md.
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
from time_to_accuracy import one_run

# model -> published MNIST test accuracy of the tutorial script it comes from (the reference recipe's result)
TARGETS = {"mlp-tiny": 0.88, "cnn-tiny": 0.96, "convnet": 0.9797, "inception-mini": 0.988, "resnet-mini": 0.989}
# (b)'s flags beyond `--recipe fast`: one-cycle over one epoch reaches the target at the end of epoch 1
# (measured), where the 3-epoch schedule's first epoch, still at a high learning rate, may not; resnet-mini
# ended its one epoch at 98.88%, just short of 98.9%, so it gets two.
# the 224-pixel Fashion-MNIST seeds: model -> published test accuracy after the reference recipe's 10 epochs
FASHION_TARGETS = {"nin-single": 0.8574, "alexnet": 0.88}
TIMED_STEPS, WARMUP_STEPS = 50, 5
FAST_FLAGS = {
    "mlp-tiny": ["--epochs", "1"],
    "cnn-tiny": ["--epochs", "1"],
    "convnet": ["--epochs", "1"],
    "inception-mini": ["--epochs", "1"],
    "resnet-mini": ["--epochs", "2"],
}


def worker(args: argparse.Namespace) -> int:
    """Side (a) in this fresh process: one JSON line per epoch on stdout."""
    import torch

    from cnnlab.models import model_info
    from throughput import tutorial_to_target

    tutorial_to_target(
        Path(args.root),
        args.model,
        model_info(args.model).reference_recipe,
        args.target,
        torch.device("cpu"),
        args.deadline,
        report=lambda row: print(json.dumps(row), flush=True),
    )
    return 0


def worker_224(args: argparse.Namespace) -> int:
    """Side (a) of a 224-pixel seed in this fresh process: seconds per training step, as one JSON line."""
    import time

    import torch

    from cnnlab.models import model_info
    from cnnlab.training.optim import initialize_weights
    from throughput import tutorial_setup, tutorial_step

    recipe = model_info(args.model).reference_recipe
    cpu = torch.device("cpu")
    loader, _, model, optimizer = tutorial_setup(
        Path(args.root),
        args.model,
        recipe["batch_size"],
        recipe["lr"],
        recipe["momentum"],
        cpu,
        recipe["normalize"],
        recipe.get("seed") or 0,
        dataset="fashion-mnist",
        resize=recipe["resize"],
    )
    initialize_weights(model, recipe["init"])  # in place: the optimizer holds the same tensors
    model.train()
    start = None
    for step, (x, y) in enumerate(loader):
        if step == WARMUP_STEPS:
            start = time.perf_counter()
        if step == WARMUP_STEPS + TIMED_STEPS:
            break
        tutorial_step(model, optimizer, x, y, cpu)
    seconds = (time.perf_counter() - start) / TIMED_STEPS
    print(json.dumps({"step_seconds": seconds, "steps_per_epoch": len(loader), "epochs": recipe["epochs"]}))
    return 0


def run_a_224(name: str, root: Path) -> dict:
    load = os.getloadavg()[0]
    result = subprocess.run(
        [sys.executable, __file__, "--side", "a224", "--model", name, "--root", str(root)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"{name} (a) failed:\n{result.stderr[-2000:]}")
    row = json.loads(result.stdout.splitlines()[-1])
    return {**row, "estimate": row["step_seconds"] * row["steps_per_epoch"] * row["epochs"], "load": load}


def run_b_fashion(name: str, data_dir: str, out: Path) -> dict:
    seconds, acc, wall, epochs = one_run(name, "fashion-mnist", FASHION_TARGETS[name], None, data_dir, out, [])
    return {
        "seconds": wall if seconds is None else seconds,
        "reached": seconds is not None,
        "epochs": epochs,
        "acc": acc,
        "wall": wall,
    }


def run_a(name: str, root: Path, cap: float, threads: int | None) -> dict:
    load = os.getloadavg()[0]
    start = time.time()
    command = [
        sys.executable,
        __file__,
        "--side",
        "a",
        "--model",
        name,
        "--root",
        str(root),
        "--target",
        str(TARGETS[name]),
        "--deadline",
        str(start + cap),
    ]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{name} (a) failed:\n{result.stderr[-2000:]}")
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    epochs = [r for r in rows if not r.get("capped")]
    reached = next((r for r in epochs if r["test_acc"] >= TARGETS[name]), None)
    end = reached or rows[-1]
    capped = bool(rows[-1].get("capped")) and reached is None
    # A capped run had not reached the target, so it would have run at least to the end of the epoch it was in:
    # that end, extrapolated at the epoch's own pace so far, is a lower bound too (an estimate, not measured).
    last = rows[-1]
    at_least = (
        last["unix_time"] - start + last["epoch_seconds_so_far"] * (last["steps_per_epoch"] / last["steps"] - 1)
        if capped
        else None
    )
    return {
        "seconds": end["unix_time"] - start,
        "reached": reached is not None,
        "capped": capped,
        "at_least": at_least,
        "load": load,
        "epochs": len(epochs),
        "accs": [r["test_acc"] for r in epochs],
        "epoch_seconds": [r["epoch_seconds"] for r in epochs],
    }


def run_b(name: str, data_dir: str | None, out: Path) -> dict:
    """cnnlab's fast recipe for `name`, stopping at the seed's accuracy (time_to_accuracy.py's run)."""
    seconds, acc, wall, epochs = one_run(name, "mnist", TARGETS[name], None, data_dir, out, FAST_FLAGS[name])
    return {
        "seconds": wall if seconds is None else seconds,
        "reached": seconds is not None,
        "epochs": epochs,
        "acc": acc,
        "wall": wall,
    }


def spread(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--models", nargs="+", default=list(TARGETS))
    parser.add_argument("--rounds", type=int, default=2, help="(a), (b) pairs per model")
    parser.add_argument("--cap", type=float, default=150.0, help="seconds after which an (a) run stops")
    parser.add_argument("--tutorial-threads", type=int, help="OMP_NUM_THREADS for (a) (default: torch's, all cores)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "seed_speedups.md"))
    parser.add_argument(
        "--fashion-models",
        nargs="*",
        default=list(FASHION_TARGETS),
        help="224-pixel Fashion-MNIST seeds (their loop extrapolated from 50 steps)",
    )
    parser.add_argument("--side", choices=("a", "a224"), help=argparse.SUPPRESS)  # worker mode
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--target", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return worker(args) if args.side == "a" else worker_224(args)

    from cnnlab.models import model_info
    from throughput import tutorial_root

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root, kind = tutorial_root(args.data_dir, Path(tmp) / "tutorial")  # decompressed once: not timed
        if kind != "mnist":
            raise SystemExit("seed_speedups needs the real MNIST (--data-dir with mnist/)")
        for name in args.models:
            a_runs, b_runs = [], []
            for round_ in range(args.rounds):
                a = run_a(name, root, args.cap, args.tutorial_threads)
                b = run_b(name, args.data_dir, Path(tmp) / f"{name}-{round_}")
                a_runs.append(a)
                b_runs.append(b)
                capped_note = f", capped; end of that epoch >= {a['at_least']:.1f} s est." if a["capped"] else ""
                print(
                    f"{name} round {round_ + 1}: (a) {'>' if a['capped'] else ''}{a['seconds']:.1f} s "
                    f"({a['epochs']} epochs, accs {', '.join(f'{x:.2%}' for x in a['accs'])}"
                    f"{capped_note}"
                    f"{'' if a['capped'] else ''}{'' if a['reached'] else ', target NOT reached'})  "
                    f"(b) {b['seconds']:.1f} s ({b['epochs']} epochs, {b['acc']:.2%}"
                    f"{'' if b['reached'] else ', target NOT reached'})  ratio {a['seconds'] / b['seconds']:.1f}x, load {a['load']:.1f}",
                    flush=True,
                )
            rows.append((name, a_runs, b_runs))
        fashion_rows = []
        if args.fashion_models:
            froot, kind = tutorial_root(args.data_dir, Path(tmp) / "fashion", "fashion-mnist")
            if kind != "fashion-mnist":
                raise SystemExit("seed_speedups needs the real Fashion-MNIST (--data-dir with fashion-mnist/)")
        for name in args.fashion_models:  # one round each: (b) alone runs for minutes
            a = run_a_224(name, froot)
            b = run_b_fashion(name, args.data_dir, Path(tmp) / f"{name}-fast")
            print(
                f"{name}: (a) {a['step_seconds']:.2f} s/step x {a['steps_per_epoch']} x {a['epochs']} epochs = "
                f"{a['estimate']:.0f} s est.  (b) {b['seconds']:.1f} s ({b['epochs']} epochs, {b['acc']:.2%}"
                f"{'' if b['reached'] else ', target NOT reached'})  ratio {a['estimate'] / b['seconds']:.1f}x",
                flush=True,
            )
            fashion_rows.append((name, a, b))

    recipe_of = lambda n: model_info(n).reference_recipe  # noqa: E731
    lines = [
        "# Time to the published accuracy: the tutorial's loop (a) vs cnnlab (b)",
        "",
        f"Machine: {describe_machine('cpu')}. Data: MNIST. Wall time from just before the process starts (imports "
        "and data loading included) to the end of the test that first reached the target. (a): the model's reference "
        "recipe run by the tutorial loop (torchvision `datasets.MNIST` + per-sample `DataLoader`, fp32, test after "
        f"every epoch), stopped at the target; a run still short of it after {args.cap:.0f} s stops there, and its "
        "time is a measured lower bound (>). (b): `cnnlab train MODEL --dataset mnist --recipe fast --epochs E "
        "--target-acc T` (one-cycle over E epochs: "
        + ", ".join(f"{m} {FAST_FLAGS[m][1]}" for m in args.models)
        + "), time to summary.json's `target_reached`. "
        f"{args.rounds} rounds of (a) then (b) per model; medians, min-max in brackets; ratio: (a)/(b) per pair; load: "
        "the 1-minute load average before each pair (the machine is shared). (a) runs with "
        + (
            f"{args.tutorial_threads} thread(s) (OMP_NUM_THREADS)"
            if args.tutorial_threads
            else "torch's default threads (all cores), as the tutorial does"
        )
        + "; (b) with as many as the cores others leave idle (cnnlab's choice).",
        f"Command: `python benchmarks/seed_speedups.py {' '.join(sys.argv[1:])}`",
        "",
        "| model | target | (a) recipe | (a) s | (a) epochs: test acc | (b) s | (b) acc | ratio per pair | median ratio | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, a_runs, b_runs in rows:
        r = recipe_of(name)
        capped = any(a["capped"] for a in a_runs)
        ratios = [a["seconds"] / b["seconds"] for a, b in zip(a_runs, b_runs)]
        a_secs, b_secs = [a["seconds"] for a in a_runs], [b["seconds"] for b in b_runs]
        accs = "; ".join(
            (" ".join(f"{x:.2%}" for x in a["accs"]) or "-")
            + (
                f" (capped in epoch {a['epochs'] + 1}, which would end >= {a['at_least']:.0f} s, est.)"
                if a["capped"]
                else ""
            )
            + ("" if a["reached"] or a["capped"] else " (target not reached: time of the recipe's end)")
            for a in a_runs
        )
        mark = ">" if capped else ""
        b_note = "" if all(b["reached"] for b in b_runs) else " (not reached in a run)"
        b_accs = ", ".join(f"{b['acc']:.2%}" for b in b_runs)
        pairs = ", ".join(f"{mark}{x:.1f}x" for x in ratios)
        if capped:
            pairs += (
                " (est. >= " + ", ".join(f"{a['at_least'] / b['seconds']:.1f}x" for a, b in zip(a_runs, b_runs)) + ")"
            )
        loads = ", ".join(f"{a['load']:.1f}" for a in a_runs)
        lines.append(
            f"| {name} | {TARGETS[name]:.2%} | batch {r['batch_size']}, lr {r['lr']}, momentum {r['momentum']}, "
            f"{r['epochs']} epochs | {mark}{statistics.median(a_secs):.1f} ({spread(a_secs)}) | {accs} | "
            f"{statistics.median(b_secs):.1f} ({spread(b_secs)}) | "
            f"{b_accs}{b_note} | {pairs} | "
            f"{mark}{statistics.median(ratios):.1f}x | {loads} |"
        )
    if fashion_rows:
        lines += [
            "",
            "## The 224-pixel Fashion-MNIST seeds",
            "",
            f"(a): the seed's loop at 224 pixels (torchvision `datasets.FashionMNIST`, `Resize(224)`, per-sample "
            f"`DataLoader`, fp32), {TIMED_STEPS} steps timed after {WARMUP_STEPS} of warm-up, extrapolated to the "
            "recipe's 10 epochs of training (its published accuracy is after epoch 10; tests and start-up not counted: "
            "an estimate and a lower bound). (b): `cnnlab train MODEL --dataset fashion-mnist --recipe fast "
            "--target-acc T` (the fast recipe: resize below 224, BatchNorm, one-cycle), wall time from process start "
            "to the target, one run.",
            "",
            "| model | target | (a) recipe | (a) s/step | (a) est. s (10 epochs) | (b) recipe | (b) s | (b) epochs, best acc | "
            "(b) ≤ 600 s | ratio (est.) | load |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, a, b in fashion_rows:
            r, f = recipe_of(name), model_info(name).fast_recipe
            lines.append(
                f"| {name} | {FASHION_TARGETS[name]:.2%} | {r['resize']} px, batch {r['batch_size']}, lr {r['lr']} | "
                f"{a['step_seconds']:.2f} | {a['estimate']:,.0f} | {f['resize']} px, batch {f['batch_size']}, "
                f"BatchNorm, {f['epochs']} epochs | {b['seconds']:.1f}{'' if b['reached'] else ' (not reached)'} | "
                f"{b['epochs']}, {b['acc']:.2%} | {'yes' if b['reached'] and b['seconds'] <= 600 else 'no'} | "
                f"{a['estimate'] / b['seconds']:.0f}x | {a['load']:.1f} |"
            )
    write_table(args.output, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
