"""Device and precision choices."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import time

import torch

from cnnlab.errors import CnnlabError
from cnnlab.runfolder.values import check_device


def pick_device(name: str | torch.device) -> torch.device:
    """'auto' -> cuda, then mps, then cpu; an explicit device that is not there is a user error.

    Every command's --device and `load_run(device=...)` come here: the name is checked by `check_device`,
    the check `train` applies to its config, so a name torch does not know is one line, never torch's traceback.
    """
    if isinstance(name, torch.device) and name.type in ("cpu", "cuda", "mps"):
        # Checked like its name (cuda:N keeps its index; cpu:0 and mps:0 are cpu and mps); any other is the caller's.
        name = str(name) if name.type == "cuda" else name.type
    elif isinstance(name, torch.device):
        return name
    name = check_device(name)
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnlabError(f"--device {name} was asked for but CUDA is not available here; use --device cpu or auto")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        which = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise CnnlabError(
            f"--device {name} was asked for but this machine has {count} CUDA device"
            f"{'s' if count != 1 else ''} ({which}); use --device cuda or one of those"
        )
    if name == "mps" and not has_mps:
        raise CnnlabError("--device mps was asked for but MPS is not available here; use --device cpu or auto")
    return torch.device(name)


def resolve_precision(device: torch.device, precision: str) -> str:
    """'auto' -> bf16 on a CPU that computes it natively (AVX-512 BF16 or AMX), else fp32.

    Measured (benchmarks/results/fast_paths*.md): on such a CPU bf16 trains the conv nets 1.2-2.2x faster;
    on an H200 the small nets at batch 128 are kernel-launch bound and ran 20-35% slower in bf16, so a
    GPU stays in fp32 (TF32 maths) unless --precision bf16 is asked for.
    """
    if precision != "auto":
        return precision
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        try:
            return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
        except (AttributeError, RuntimeError):  # a torch build without that query
            return "fp32"
    return "fp32"


def autocast_context(device: torch.device, precision: str):
    """torch.autocast for bf16/fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cpu" and precision == "fp16":
        raise CnnlabError("--precision fp16 needs a GPU; on the CPU use --precision bf16 or fp32")
    return torch.autocast(device_type=device.type, dtype=dtype)


# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit systems.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 2**20
_TRIM_THRESHOLD = 512 * 2**20


def tune_cpu_allocator() -> bool:
    """Keep freed activation buffers in glibc's heap for the next step instead of unmapping them.

    Every training step frees and reallocates its activations and gradients at the same sizes. Those
    above glibc's mmap threshold (128 KB at first) are fresh mappings each time, whose pages fault in
    and are zeroed on first touch: convnet spent about a quarter of its CPU step there. Raising the mmap
    and trim thresholds reuses them, as the jemalloc/tcmalloc that PyTorch's CPU tuning guide suggests
    would (measured: convnet 1.1-1.5x, inception-mini 1.1x). Applies to this process; the dataset
    tensors, above 32 MB, are still mapped and returned as before. Returns False where this is not glibc.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        )
    except (OSError, AttributeError):
        return False


# torch's own thread count at import: the most a training asks for. The trainer puts the caller's count
# back when it returns, so any other count at the start of a run was set by the user.
_DEFAULT_THREADS = torch.get_num_threads()


def idle_cores(seconds: float = 0.1) -> float | None:
    """How many cores sat idle over the next `seconds` (from /proc/stat; None where there is none).

    Sampled while this process waits, so its own earlier work (a previous run in a sweep) is not counted,
    as it would be in the load average.
    """

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values[:8])  # idle + iowait, all (guest time is inside user)

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    cores = os.cpu_count() or 1
    return cores * (idle1 - idle0) / max(total1 - total0, 1)


def tune_cpu_threads() -> int:
    """Use as many intra-op threads as cores other processes leave idle (at least one); returns the count.

    On a busy machine every OpenMP region of a multi-threaded step waits for its slowest thread, which
    waits for a core: on 2 cores at load 4-5, convnet's epoch ran 7-16x faster on 1 thread than on 2
    (11,900-17,500 vs 880-1,900 img/s, interleaved), while on an idle machine 2 threads are 1.5-1.9x
    faster (benchmarks/results/cpu_options.md). Left alone when the user chose (OMP_NUM_THREADS, or a
    torch.set_num_threads) or under torchrun (distributed sets its own); `train` restores the count it found.
    """
    current = torch.get_num_threads()
    if "OMP_NUM_THREADS" in os.environ or "LOCAL_WORLD_SIZE" in os.environ or current != _DEFAULT_THREADS:
        return current  # the user's (or torchrun's) choice
    idle = idle_cores()
    chosen = _DEFAULT_THREADS if idle is None else max(1, min(_DEFAULT_THREADS, round(idle)))
    if chosen != current:
        torch.set_num_threads(chosen)
    return chosen


def make_grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 (bf16 and fp32 need no loss scaling)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def set_determinism(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def check_memory(config, spec) -> None:
    """Refuse a batch and resize whose inputs alone would not fit in this machine's memory.

    A rough floor: float32 inputs of the larger batch, times 8 for the activations of even a small net.
    """
    size = config.resize or spec.image_size
    need = max(config.batch_size, config.eval_batch_size) * spec.channels * size * size * 4 * 8
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > have:
        raise CnnlabError(
            f"batches of {max(config.batch_size, config.eval_batch_size)} images at {size}x{size} need about "
            f"{need / 2**30:.0f} GiB, more than this machine's {have / 2**30:.0f} GiB; lower resize or batch_size"
        )
