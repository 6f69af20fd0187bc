"""What every benchmark's result table needs: a line saying where it ran, and writing the table out."""

from __future__ import annotations

import platform
import statistics
from pathlib import Path

import torch


def describe_machine(device: torch.device | str = "cpu") -> str:
    """CPU, threads, the GPU if one is used, torch and Python versions."""
    device = torch.device(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = f"{torch.cuda.get_device_name(device)}; " if device.type == "cuda" else ""
    return (
        f"{gpu}{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, Python {platform.python_version()}"
    )


def mean_std(values: list[float]) -> str:
    """'mean ± sample std' of fractions as percentages; the mean alone for a single value."""
    spread = f" ± {statistics.stdev(values):.2%}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2%}{spread}"


def write_table(path: str | Path, lines: list[str]) -> None:
    """Write a result table (markdown lines) to `path`, making its folder, and say where."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")
