"""How a run continues: from its own last.pt, in its own folder (wherever that now is), or by itself after a
torchrun restart (`--resume auto`); and what a lost peer means for it.
"""

from __future__ import annotations

import re
import signal
import threading
from pathlib import Path
from typing import Any

import torch

from cnnlab.distributed import DistInfo, elastic_max_restarts, elastic_restart, max_across_ranks, missing_ranks
from cnnlab.errors import CnnlabError
from cnnlab.files import read_json
from cnnlab.runfolder import checkpoint as ckpt
from cnnlab.runfolder.config import RESUME_KEYS, TrainConfig
from cnnlab.runfolder.layout import LOCK_FILE, is_locked

# What must match for a checkpoint to continue under a config: the same network on the same data.


class PeerLost(CnnlabError):
    """Under torchrun, another process died or stopped answering: the environment, exit 1."""

    exit_code = 1


AUTO_NEEDS_OUT = (
    "--resume auto and torchrun restarts (--max-restarts) need the run folder named with --out DIR, "
    "so that every attempt continues the same run"
)


def resume_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint a resume continues from: the run's own latest state, checkpoints/last.pt, only."""
    path = Path(path)
    if path.is_file() and path.name != "last.pt":
        raise CnnlabError(
            f"{str(path)!r} is not the run's latest state: a run resumes from its last.pt (--resume RUN_DIR); "
            f"to start a new run from these weights use --init-from {path}"
        )
    last = path / "checkpoints" / "last.pt"
    if path.is_dir() and not (last.exists() or last.is_symlink()):  # a link or FIFO there: load_checkpoint says so
        if (path / "config.json").is_file():  # a run that stopped before its first checkpoint: the way that works
            raise CnnlabError(
                f"{str(path)!r} has no checkpoints/last.pt: the run stopped before its first checkpoint; "
                f"start it again in place with `cnnlab train --config {path}/config.json --resume auto "
                f"--out {path}`"
            )
        raise CnnlabError(f"{str(path)!r} has no checkpoints/last.pt to resume from; is it a cnnlab run folder?")
    checkpoint = ckpt.load_checkpoint(path, "last.pt")
    if checkpoint.get("resumable") is False:  # a best.pt copied over last.pt: the weights, not the training state
        raise CnnlabError(
            f"{checkpoint['path']!r} holds weights only (a best.pt), not the state a run continues from; "
            f"to start a new run from these weights use --init-from {checkpoint['path']}"
        )
    return checkpoint


def resumed_folder(checkpoint: dict[str, Any], out: str | None) -> Path:
    """Where a resumed run continues: the folder its checkpoint is in now. An `out` naming another place is
    refused (the one stored in the checkpoint is only where the run used to be, and is ignored)."""
    folder = ckpt.run_dir_of(checkpoint["path"])
    if out not in (None, checkpoint["config"].get("out")) and Path(out).resolve() != folder.resolve():
        raise CnnlabError(
            f"a resumed run continues in its own folder {folder}; out={out!r} cannot move it "
            "(start a new run from its weights with init_from=)"
        )
    return folder


def resume_mode(resume) -> bool:
    """Whether this is an automatic resume: `resume="auto"`, or torchrun restarting the workers (without an
    explicit --resume, which keeps its meaning)."""
    if isinstance(resume, str) and resume == "auto":
        return True
    return resume is None and elastic_restart() > 0


# What rank 0 found in the run folder of an automatic resume (agreed across ranks with max_across_ranks).
_NEW, _RESTART, _CONTINUE, _REFUSED = 0, 1, 2, 3


def resume_auto(config: TrainConfig, device: torch.device, dist_info: DistInfo) -> tuple[dict[str, Any] | None, bool]:
    """--resume auto / a torchrun restart: (the last.pt to continue, or None; whether to start the run again in
    a folder that holds it without a checkpoint). Rank 0 looks at the folder; every rank follows its decision."""
    out = _auto_out(config)
    decision, error = _NEW, None
    if dist_info.is_main:
        try:
            decision = _auto_decision(config)
        except CnnlabError as err:
            decision, error = _REFUSED, err
    decision = max_across_ranks(decision, device, dist_info)  # the other ranks offer 0: rank 0's value wins
    if decision == _REFUSED:
        raise error or CnnlabError(f"rank 0 could not continue the run in {config.out}")
    checkpoint = None
    if decision == _CONTINUE:
        # Every rank restores the same state; a rank that cannot read it (no shared folder) must not leave the others
        # waiting in a collective, so success is agreed too.
        try:
            checkpoint, error = resume_checkpoint(out), None
        except CnnlabError as err:
            error = err
        if max_across_ranks(int(error is not None), device, dist_info):
            raise error or CnnlabError(f"another rank could not read {Path(out) / 'checkpoints' / 'last.pt'}")
    return checkpoint, decision == _RESTART


def _auto_out(config: TrainConfig) -> str:
    """The run folder an automatic resume works in (train() refuses one without --out before it gets here)."""
    if config.out is None:
        raise CnnlabError(AUTO_NEEDS_OUT)
    return config.out


def _auto_decision(config: TrainConfig) -> int:
    """What an automatic resume does with `config.out` (on rank 0): start a new run, start this run again, or
    continue it from its last.pt. A folder holding another run is refused."""
    path = Path(_auto_out(config))
    if not path.is_dir():
        return _NEW
    if is_locked(path):  # a live run: never read or write under it
        raise CnnlabError(
            f"{str(path)!r} is in use by another cnnlab process (its training holds {LOCK_FILE}); "
            "wait for it to finish, or choose another --out"
        )
    if (path / "checkpoints" / "last.pt").is_file():
        return _CONTINUE  # compatibility is checked as for --resume, once every rank has the checkpoint
    entries = {p.name for p in path.iterdir()} - {LOCK_FILE}
    if not entries or entries == {"checkpoints"} and not any((path / "checkpoints").iterdir()):
        return _RESTART if (path / LOCK_FILE).exists() else _NEW  # what a run leaves before it writes anything
    try:
        saved = read_json(path / "config.json", within=path)["config"]
    except (CnnlabError, OSError, KeyError, TypeError, ValueError):
        return _NEW  # not a run cnnlab can recognise: RunFolder refuses it as it would for any new run
    # The first attempt died before its first checkpoint: start it again here, if it is the same run.
    for key in RESUME_KEYS:
        if saved.get(key) != getattr(config, key):
            raise CnnlabError(
                f"{str(path)!r} holds another run ({key}={saved.get(key)!r}, not "
                f"{getattr(config, key)!r}); choose another --out"
            )
    return _RESTART


def peer_lost(err: BaseException, config: TrainConfig, dist_info: DistInfo) -> PeerLost:
    """A collective failed because a peer died or stopped answering: one line naming the rank(s) and the way on."""
    if threading.current_thread() is threading.main_thread():
        # torchrun's agent now stops the job with SIGTERM: say why first (it follows with SIGKILL after 30 s).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lost = missing_ranks(dist_info)
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    reason = re.sub(r"^\[[^\]]*\]\s*", "", reason).split(". This is typically")[0].rstrip(".")  # gloo's source location
    if "timed out" in reason.lower() or "timeout" in reason.lower():
        reason = f"no answer within --dist-timeout {config.dist_timeout:g} s"  # gloo's wording varies with the op
    who = (
        f"lost rank {', '.join(map(str, lost))} of {dist_info.world_size}"
        if lost
        else f"lost contact with another of the {dist_info.world_size} processes"
    )
    restarts_left = elastic_max_restarts() - elastic_restart()
    if restarts_left > 0:
        way = f"torchrun restarts the job ({restarts_left} restart(s) left) and it continues in {config.out}"
    elif config.out is not None and (Path(config.out) / "checkpoints" / "last.pt").is_file():
        way = f"resume with: cnnlab train --resume {config.out}"
    else:
        way = "no checkpoint was saved yet: run the command again"
    return PeerLost(f"{who} ({reason}); {way}")


def check_compatible(checkpoint: dict[str, Any], config: TrainConfig) -> None:
    saved = checkpoint["config"]
    for key in RESUME_KEYS:
        if saved.get(key) != getattr(config, key):
            raise CnnlabError(
                f"cannot resume {checkpoint['path']}: it was trained with {key}={saved.get(key)!r}, "
                f"not {getattr(config, key)!r}; drop that option or start a new run"
            )
    if checkpoint["epoch"] >= config.epochs:
        done = (
            f"finished all {checkpoint['epoch']} epochs"
            if checkpoint["step"] == 0
            else f"stopped in epoch {checkpoint['epoch'] + 1}"
        )
        raise CnnlabError(
            f"{checkpoint['path']} has already {done}; pass --epochs N with N > {checkpoint['epoch']} to train on"
        )
