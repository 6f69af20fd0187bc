"""`cnnlab train --nproc N`: start N local processes through torch's elastic launcher (what torchrun uses)."""

from __future__ import annotations

import sys
import uuid

from cnnlab.errors import CnnlabError


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        out.append(arg)
    return out


def launch_local(nproc: int, argv: list[str]) -> int:
    """Run `python -m cnnlab <argv without --nproc>` in `nproc` processes; return the job's exit code."""
    if nproc < 1:
        raise CnnlabError(f"--nproc must be a positive integer, got {nproc}")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"cnnlab-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.5,
    )
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "cnnlab", *_without_nproc(argv))
    except ChildFailedError as err:
        # The failing rank already printed its one-line message; report only its exit code.
        first = min(err.failures.values(), key=lambda failure: failure.timestamp)
        return first.exitcode if first.exitcode > 0 else 1
    except SignalException as err:
        # Ctrl-C / SIGTERM: the agent passed it on and waited while the workers saved a checkpoint.
        return 128 + int(err.sigval)
    return 0
