"""Checkpoints: plain dicts of tensors and plain types, written atomically, loaded with weights_only.

A checkpoint holds everything needed to continue a run exactly: model, optimizer,
scheduler and grad-scaler state, the position (epoch, step), the partial-epoch
metric sums, every RNG state and the resolved config.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError

CHECKPOINT_VERSION = 1


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename over `path`.

    A kill at any moment leaves either the old or the new file, never a torn one.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model under DDP and torch.compile wrappers."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict without DDP's `module.` or compile's `_orig_mod.` prefixes."""
    return unwrap_model(model).state_dict()


def run_dir_of(checkpoint_file: str | Path) -> Path:
    """The run folder a checkpoint file belongs to: the folder above its checkpoints/, else the one it is in.

    Derived from where the file *is*, so a moved or copied run stays self-contained; the `run_dir`
    stored inside a checkpoint is informational only and never decides where anything is written.
    """
    file = Path(checkpoint_file).absolute()
    return file.parent.parent if file.parent.name == "checkpoints" else file.parent


def find_checkpoint(path: str | Path, name: str = "last.pt") -> Path:
    """A checkpoint file from a run folder (its checkpoints/`name`) or a .pt path."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / name
        if candidate.is_file():
            return candidate
        other = "best.pt" if name == "last.pt" else "last.pt"
        if (path / "checkpoints" / other).is_file():
            return path / "checkpoints" / other
        raise CnnlabError(f"no checkpoint in {str(path)!r} (looked for checkpoints/{name}); is it a cnnlab run folder?")
    if path.is_file():
        return path
    raise CnnlabError(f"no such run folder or checkpoint: {str(path)!r}")


def load_checkpoint(path: str | Path, name: str = "last.pt") -> dict[str, Any]:
    """Load a checkpoint safely (weights_only=True: a file from elsewhere cannot run code)."""
    file = find_checkpoint(path, name)
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unreadable/corrupt/unsafe files all become one line
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CnnlabError(f"cannot load checkpoint {str(file)!r}: {first_line}") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "config" not in checkpoint:
        raise CnnlabError(f"{str(file)!r} is not a cnnlab checkpoint (no model/config inside)")
    if checkpoint.get("version", 0) > CHECKPOINT_VERSION:
        raise CnnlabError(
            f"{str(file)!r} was written by a newer cnnlab (checkpoint version {checkpoint['version']}); upgrade cnnlab"
        )
    checkpoint["path"] = str(file)
    return checkpoint


def rng_states() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
