"""The other CPU speed options the performance issue lists, each measured against what side (b) uses.

For each model, at its reference batch size, side (b)'s step (the precision and layout `throughput.py`
picks, and the trainer's fused SGD) is timed in one process in turn with the same step changed in one
way: a foreach or a for-loop SGD instead of the fused one, 1 thread instead of all, PyTorch's own
convolutions instead of oneDNN's, a TorchScript trace of the model, `torch.compile` (the trainer's
`--compile`), and, where (b) runs bf16 autocast, the model held in bf16 with no autocast (an upper
bound for removing the per-step weight casts; it is not the same training). Each figure is the best of
`--rounds` runs, as a ratio to (b) in the same round order; above 1.00x the option is faster. Usage:

    python benchmarks/cpu_options.py [--models ...] [--steps 100] [--rounds 3]

Writes benchmarks/results/cpu_options.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch._inductor.config

from cnnlab.device import pick_device
from cnnlab.models import model_info
from fast_paths import model_and_inputs, sgd_step, step_rate
from tables import describe_machine, write_table
from throughput import MODELS, best_settings

OPTIONS = [
    "foreach SGD",
    "for-loop SGD",
    "1 thread",
    "native conv",
    "TorchScript trace",
    "torch.compile",
    "bf16 weights",
]


def option_steps(
    name: str, device: torch.device, batch: int, channels_last: bool, bf16: bool, threads: int
) -> dict[str, tuple]:
    """{option: (step, threads, context)} for side (b)'s step ("(b)") and each option that applies."""
    recipe = model_info(name).reference_recipe
    sgd = dict(lr=recipe["lr"], momentum=recipe.get("momentum", 0.0))

    def build(option: str):
        model, x, y = model_and_inputs(name, device, batch, channels_last, {}, 28)
        impl = {"foreach SGD": dict(foreach=True), "for-loop SGD": dict(foreach=False)}.get(option, dict(fused=True))
        use_autocast = bf16
        if option == "bf16 weights":
            model, x, use_autocast = model.to(torch.bfloat16), x.to(torch.bfloat16), False
        optimizer = torch.optim.SGD(model.parameters(), **sgd, **impl)
        forward = model
        if option == "TorchScript trace":
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                forward = torch.jit.trace(model, x, check_trace=False)
        elif option == "torch.compile":
            forward = torch.compile(model)
        return sgd_step(forward, x, y, use_autocast, optimizer)

    steps = {"(b)": (build("(b)"), threads, nullcontext)}
    for option in OPTIONS:
        if option == "bf16 weights" and not bf16:
            continue
        context = (lambda: torch.backends.mkldnn.flags(enabled=False)) if option == "native conv" else nullcontext
        steps[option] = (build(option), 1 if option == "1 thread" else threads, context)
    return steps


def measure(name: str, device: torch.device, steps: int, rounds: int) -> tuple[str, int, dict, dict]:
    """(settings, batch, best images/s per option, seconds of each option's first 3 steps)."""
    batch = model_info(name).reference_recipe["batch_size"]
    precision, channels_last = best_settings(name, batch, device)  # also tunes this process's allocator
    threads = torch.get_num_threads()
    candidates = option_steps(name, device, batch, channels_last, precision == "bf16", threads)
    first, best = {}, dict.fromkeys(candidates, 0.0)
    for option, (step, n_threads, context) in candidates.items():
        torch.set_num_threads(n_threads)
        with context():
            start = time.perf_counter()
            for _ in range(3):
                step()  # compiles, traces and warms up here, untimed in the rates
            first[option] = time.perf_counter() - start
    for _ in range(rounds):
        for option, (step, n_threads, context) in candidates.items():
            torch.set_num_threads(n_threads)
            with context():
                best[option] = max(best[option], step_rate(step, steps, batch, device))
    torch.set_num_threads(threads)
    return f"{precision}{', channels-last' if channels_last else ''}", batch, best, first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per option and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all options in turn; the best kept")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "cpu_options.md"))
    args = parser.parse_args()
    device = pick_device("cpu")
    torch._inductor.config.force_disable_caches = True  # time compilation as a first run pays it

    lines = [
        "# CPU speed options against side (b)'s step",
        "",
        f"Machine: {describe_machine(device)}. Batch: each model's reference recipe. (b): the precision and layout "
        "`throughput.py` picks, fused SGD. Each other column changes one thing, as a ratio of its training images/s "
        f"to (b)'s (best of {args.rounds} rounds of {args.steps} steps, all options in turn; above 1.00x is faster). "
        "torch.compile's cell also gives the seconds its first 3 steps took (compilation). bf16 weights: the model "
        "held in bf16 with no autocast, only where (b) is bf16; an upper bound, not the same training.",
        f"Command: `python benchmarks/cpu_options.py {' '.join(sys.argv[1:])}`",
        "",
        "| model | batch | (b) settings | (b) img/s | " + " | ".join(OPTIONS) + " |",
        "|---" * (4 + len(OPTIONS)) + "|",
    ]
    for name in args.models:
        settings, batch, best, first = measure(name, device, args.steps, args.rounds)
        cells = []
        for option in OPTIONS:
            if option not in best:
                cells.append("-")
                continue
            cell = f"{best[option] / best['(b)']:.2f}x"
            cells.append(f"{cell} ({first[option]:.0f} s)" if option == "torch.compile" else cell)
        lines.append(f"| {name} | {batch} | {settings} | {best['(b)']:,.0f} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    write_table(args.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
