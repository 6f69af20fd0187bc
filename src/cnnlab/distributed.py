"""Data-parallel set-up under torchrun: which rank am I, and sums across ranks."""

from __future__ import annotations

import datetime
import os
import time
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


def elastic_restart() -> int:
    """How many times torchrun has restarted this job's workers (0 on the first attempt or without torchrun)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def elastic_max_restarts() -> int:
    """torchrun's --max-restarts for this job (0 without torchrun)."""
    try:
        return int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))
    except ValueError:
        return 0


def init_distributed(device: torch.device, backend: str | None = None, timeout: float | None = None) -> DistInfo:
    """Join the process group torchrun set up (env://); a single process needs nothing.

    `timeout` (seconds) bounds every collective: a rank whose peer vanished without closing its sockets
    (a frozen or unplugged machine) raises after it instead of waiting forever.
    """
    if not launched_by_torchrun():
        return DistInfo()
    if not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        delta = datetime.timedelta(seconds=timeout) if timeout is not None else None
        # What init_process_group does for env://, with the attempt in the keys: after a torchrun restart the
        # agent's store still holds the dead attempt's addresses, and gloo would connect to those (measured,
        # torch 2.14: "Gloo connectFullMesh failed ... Connection refused" on every restart).
        store, rank, world_size = next(dist.rendezvous("env://", timeout=delta or datetime.timedelta(minutes=30)))
        if delta is not None:
            store.set_timeout(delta)
        store = dist.PrefixStore(f"cnnlab/attempt_{elastic_restart()}", store)
        dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size, timeout=delta)
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


def is_peer_failure(err: BaseException) -> bool:
    """Whether `err` is a collective that failed because a peer went away or stopped answering."""
    if isinstance(err, dist.DistError):
        return True
    # gloo raises plain RuntimeErrors: "Connection reset by peer", "Connection closed by peer",
    # "Timed out waiting 5000ms for recv operation", "Application timeout caused pair closure".
    text = str(err)
    return isinstance(err, RuntimeError) and (
        "gloo" in text or "pair closure" in text or "by peer" in text or "Timed out waiting" in text or "NCCL" in text
    )


def missing_ranks(info: DistInfo, wait: float = 2.0) -> list[int]:
    """After a failed collective: the ranks that do not check in through torchrun's store within `wait`
    seconds (on rank 0; [] elsewhere, or when the store itself is gone).

    A gloo error names a peer's address and port, not its rank; the store is the agent's, so it
    outlives the workers and every survivor can say it is still there.
    """
    try:
        store = dist.distributed_c10d._get_default_store()
        prefix = f"cnnlab/alive/{elastic_restart()}/"
        store.set(prefix + str(info.rank), "1")
        if not info.is_main:
            return []
        deadline = time.monotonic() + wait
        while True:
            missing = [r for r in range(info.world_size) if not store.check([prefix + str(r)])]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.1)
    except Exception:  # noqa: BLE001 - the store went with the agent: nothing more to learn
        return []


def shutdown(info: DistInfo, together: bool) -> None:
    """Leave the process group. `together`: every rank got here on the same path, so wait for all of
    them first; a gloo rank that tears down while its peers still write the run folder can abort
    ("terminate called without an active exception"). After a one-rank error a barrier would hang."""
    if info.enabled and dist.is_initialized():
        store = _default_store()
        if together:
            dist.barrier()
        dist.destroy_process_group()
        if together and store is not None:
            # A rank that exits while a peer is still tearing its gloo connections down can make that peer
            # abort ("terminate called without an active exception", seen under load even after the barrier):
            # through torchrun's store, which outlives the workers, each rank leaves only once all have torn down.
            _wait_for_all(store, f"cnnlab/left/{elastic_restart()}", info.world_size)


def _default_store():
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # noqa: BLE001 - no store to wait on: leave as before
        return None


def _wait_for_all(store, key: str, world_size: int, timeout: float = 30.0) -> None:
    try:
        store.add(key, 1)
        deadline = time.monotonic() + timeout
        while store.add(key, 0) < world_size and time.monotonic() < deadline:
            time.sleep(0.02)
    except Exception:  # noqa: BLE001 - the agent's store is gone: nothing left to wait for
        pass
