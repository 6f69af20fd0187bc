"""Data-parallel set-up under torchrun: which rank am I, and sums across ranks."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process prints, writes the run folder, plots and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device, backend: str | None = None) -> DistInfo:
    """Join the process group torchrun set up (env://); a single process needs nothing."""
    if not launched_by_torchrun():
        return DistInfo()
    if not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # CPU ranks on one machine share its cores: more threads than cores makes every rank wait.
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return info


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """Each rank drives its own GPU; CPU ranks share the CPU."""
    if device.type == "cuda" and info.enabled:
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return device


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def max_across_ranks(value: int, device: torch.device, info: DistInfo) -> int:
    """The largest `value` over all ranks (so every rank agrees to stop at the same step)."""
    if not info.enabled:
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def shutdown(info: DistInfo, together: bool) -> None:
    """Leave the process group. `together`: every rank got here on the same path, so wait for all of
    them first; a gloo rank that tears down while its peers still write the run folder can abort
    ("terminate called without an active exception"). After a one-rank error a barrier would hang."""
    if info.enabled and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()
