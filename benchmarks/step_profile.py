"""Where a training step's time goes, and how far the throughput ratio could go with no per-step cost.

For each model, in the precision and layout `throughput.py` picks for side (b), at the model's
reference batch size B: the images/s of a plain training step at B and at 8 x B (where per-step
costs such as Python, dispatch, thread wake-ups and primitive set-up are spread over 8 times the
images, so what is left is kernel time), and the share of the step at B that each kind of kernel
takes (torch.profiler, self CPU time). With the tutorial loop's images/s (a) from a fresh process,
as in `throughput.py`, "ceiling" is (8 x B images/s) / (a): the ratio a loop without any per-step
cost would reach with these kernels. Usage:

    python benchmarks/step_profile.py [--data-dir ../shared/datasets] [--models ...] [--steps 200]

Writes benchmarks/results/step_profile.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from cnnlab.device import pick_device
from cnnlab.models import model_info
from fast_paths import images_per_s, training_step
from tables import describe_machine, write_table
from throughput import MODELS, best_settings, run_side, tutorial_root

# profiler op names -> the kind of work they are (first match wins); the rest is "other"
KINDS = {
    "conv": ("convolution",),
    "pool": ("pool",),
    "linear": ("addmm", "aten::mm", "linear"),
    "optimizer": ("Optimizer", "_foreach", "mul_", "add_", "lerp_", "addcmul_", "addcdiv_"),
    "casts": ("copy_", "_to_copy"),
}


def step_shares(name: str, batch: int, channels_last: bool, bf16: bool, steps: int) -> dict[str, float]:
    """Share of a training step's self CPU time per kind of op (torch.profiler), at batch `batch`."""
    step = training_step(name, torch.device("cpu"), batch, channels_last, bf16, {}, 28)
    for _ in range(5):
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            step()
    totals = dict.fromkeys([*KINDS, "other"], 0.0)
    for event in profiler.key_averages():
        kind = next((k for k, needles in KINDS.items() if any(n in event.key for n in needles)), "other")
        totals[kind] += event.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    return {kind: t / whole for kind, t in totals.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with mnist/ for the tutorial side; synthetic data if absent")
    parser.add_argument("--models", nargs="+", default=[m for m in MODELS if m != "mlp-tiny"])
    parser.add_argument("--steps", type=int, default=200, help="timed steps at batch B (and for the tutorial side)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "step_profile.md"))
    args = parser.parse_args()
    args.device = "cpu"  # the per-step costs this measures are the CPU's; the GPU has its own figures
    device = pick_device("cpu")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root, kind = tutorial_root(args.data_dir, Path(tmp))
        for name in args.models:
            tutorial = run_side("a", name, root, args)["train"]  # in a fresh process, as in throughput.py
            batch = model_info(name).reference_recipe["batch_size"]
            precision, channels_last = best_settings(name, batch, device)  # also tunes this process's allocator
            bf16 = precision == "bf16"
            rate = max(images_per_s(name, device, args.steps, batch, channels_last, bf16, {}, 28) for _ in range(2))
            big = max(
                images_per_s(name, device, max(2, args.steps // 8), 8 * batch, channels_last, bf16, {}, 28)
                for _ in range(2)
            )
            shares = step_shares(name, batch, channels_last, bf16, max(10, args.steps // 10))
            settings = f"{precision}{', channels-last' if channels_last else ''}"
            rows.append((name, batch, settings, tutorial, rate, big, shares))
            print(
                f"{name:15s} B={batch:4d} {settings:20s} (a) {tutorial:8,.0f}  B {rate:8,.0f} ({rate / tutorial:.1f}x)  "
                f"8B {big:8,.0f} (ceiling {big / tutorial:.1f}x)  "
                + " ".join(f"{k} {v:.0%}" for k, v in shares.items()),
                flush=True,
            )

    kinds = [*KINDS, "other"]
    lines = [
        "# Where a training step's time goes (CPU)",
        "",
        f"Machine: {describe_machine(device)}. Data for (a): {kind}. B is the reference recipe's batch size; the "
        "settings are those `throughput.py` picks for side (b). Images/s of a plain training step on random inputs "
        "at B and at 8 x B; ceiling = (8 x B images/s) / (a), the ratio a loop with no per-step cost would reach "
        "with these kernels. Shares: self CPU time of a step at B per kind of op (torch.profiler).",
        f"Command: `python benchmarks/step_profile.py {' '.join(sys.argv[1:])}`",
        "",
        "| model | B | settings | (a) img/s | img/s at B | ratio | img/s at 8 x B | ceiling | "
        + " | ".join(kinds)
        + " |",
        "|---" * (8 + len(kinds)) + "|",
    ]
    lines += [
        f"| {n} | {b} | {s} | {a:,.0f} | {r:,.0f} | {r / a:.1f}x | {g:,.0f} | {g / a:.1f}x | "
        + " | ".join(f"{sh[k]:.0%}" for k in kinds)
        + " |"
        for n, b, s, a, r, g, sh in rows
    ]
    write_table(args.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
