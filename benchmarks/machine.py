"""One line describing where a benchmark ran: CPU, threads, GPU if used, torch and Python versions."""
from __future__ import annotations

import platform

import torch


def describe(device: torch.device | str = "cpu") -> str:
    device = torch.device(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = f"{torch.cuda.get_device_name(device)}; " if device.type == "cuda" else ""
    return f"{gpu}{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, Python {platform.python_version()}"
