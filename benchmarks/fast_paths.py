"""Training images/s of each model in fp32 vs bf16 autocast, NCHW vs channels-last, on this device.

The figures behind each fast recipe's `channels_last` and `precision` (see `cnnlab recipes`): a
plain forward/backward/SGD step on random inputs at the fast recipe's input size and model options,
each mode timed twice in turn (the better run kept, so a noisy neighbour costs a mode less). Usage:

    python benchmarks/fast_paths.py [--models ...] [--device cuda] [--steps 40]

Writes benchmarks/results/fast_paths.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.data.catalog import get_spec
from cnnlab.device import pick_device
from cnnlab.models import create_model, list_models
from cnnlab.runfolder.resolve import recipe_values
from tables import describe_machine, write_table

MODES = {
    "fp32": (False, False),
    "fp32 channels-last": (True, False),
    "bf16": (False, True),
    "bf16 channels-last": (True, True),
}
LARGE = {"alexnet", "vgg11", "googlenet", "resnet18", "nin", "nin-single"}


def model_and_inputs(
    name: str,
    device: torch.device,
    batch: int,
    channels_last: bool,
    model_options: dict | None = None,
    size: int | None = None,
):
    """(model, x, y): the model, seeded, and one fixed random batch, in the given memory layout.

    Model options and input size default to the model's fast recipe's.
    """
    fast = recipe_values(name, "fast")
    size = size or fast["resize"] or get_spec(fast["dataset"]).image_size
    torch.manual_seed(0)
    model = create_model(name, **(fast["model_options"] if model_options is None else model_options)).to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    x = torch.randn(batch, 1, size, size, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (batch,), device=device)
    return model, x, y


def sgd_step(model, x: torch.Tensor, y: torch.Tensor, bf16: bool, optimizer: torch.optim.Optimizer):
    """A forward/backward/optimizer step of `model` (any callable) on (x, y), as a function of no arguments."""

    def step():
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def training_step(
    name: str,
    device: torch.device,
    batch: int,
    channels_last: bool,
    bf16: bool,
    model_options: dict | None = None,
    size: int | None = None,
):
    """A plain forward/backward/SGD step on fixed random inputs (see `model_and_inputs`)."""
    model, x, y = model_and_inputs(name, device, batch, channels_last, model_options, size)
    return sgd_step(model, x, y, bf16, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a timer around it measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_rate(step, steps: int, batch: int, device: torch.device) -> float:
    """Images/s of `step` over `steps` timed calls, after 3 untimed ones."""
    for _ in range(3):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps * batch / (time.perf_counter() - start)


def images_per_s(
    name: str,
    device: torch.device,
    steps: int,
    batch: int,
    channels_last: bool,
    bf16: bool,
    model_options: dict | None = None,
    size: int | None = None,
) -> float:
    """A plain training step's images/s on random inputs (see `training_step`)."""
    step = training_step(name, device, batch, channels_last, bf16, model_options, size)
    return step_rate(step, steps, batch, device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[m for m in list_models() if m not in LARGE] + sorted(LARGE))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per mode (the large models take a tenth)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "fast_paths.md"))
    args = parser.parse_args()
    device = pick_device(args.device)

    lines = [
        "# Fast paths: training images/s per precision and memory layout",
        "",
        f"Machine: {describe_machine(device)}. Batch {args.batch_size}; input size and model options of each fast "
        f"recipe; best of two runs per mode. Command: `python benchmarks/fast_paths.py {' '.join(sys.argv[1:])}`",
        "",
        "| model | " + " | ".join(MODES) + " | fast recipe uses |",
        "|---" * (len(MODES) + 2) + "|",
    ]
    for name in args.models:
        steps = max(2, args.steps // 10) if name in LARGE else args.steps
        rates = {
            mode: max(images_per_s(name, device, steps, args.batch_size, *flags) for _ in range(2))
            for mode, flags in MODES.items()
        }
        fast = recipe_values(name, "fast")
        chosen = f"{fast['precision']}{' channels-last' if fast['channels_last'] else ''}"
        lines.append(f"| {name} | " + " | ".join(f"{r:,.0f}" for r in rates.values()) + f" | {chosen} |")
        print(lines[-1], flush=True)
    write_table(args.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
