"""Images/s of data-parallel training: 1 process vs N processes (`cnnlab train --nproc N`) vs 2 simulated nodes
(two `torchrun --nnodes 2` launches on 127.0.0.1), and the restart time after a killed worker.

    python benchmarks/distributed.py --data-dir ../shared/datasets [--models convnet] [--nproc 2]

On one CPU machine the processes share its cores, so expect no speed-up; the figure shows the
cost of the gradient all-reduce. The restart is timed from the SIGKILL of rank 1 in epoch 2 to the
first training step of the attempt torchrun starts in its place (`--max-restarts 1`): torchrun's
monitor, the survivor's 2 s wait to name the lost rank, a fresh `python -m cnnlab`, the rendezvous,
loading the data and the checkpoint. Writes benchmarks/results/distributed.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tables import describe_machine, write_table

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def train_args(model: str, data_dir: str | None, out: Path, epochs: int, batch: int, dataset: str) -> list[str]:
    return [
        "train",
        model,
        "--dataset",
        dataset,
        "--recipe",
        "none",
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch),
        "--out",
        str(out),
        "--no-progress",
    ] + (["--data-dir", data_dir] if data_dir else [])


def last_images_per_s(out: Path) -> float:
    with open(out / "metrics.csv", newline="") as f:
        return float(list(csv.DictReader(f))[-1]["images_per_s"])


def run(model: str, nproc: int, data_dir: str | None, out: Path, epochs: int, batch: int, dataset: str):
    command = [
        sys.executable,
        "-m",
        "cnnlab",
        *train_args(model, data_dir, out, epochs, batch, dataset),
        "--nproc",
        str(nproc),
    ]
    start = time.time()
    subprocess.run(command, check=True, capture_output=True)
    return last_images_per_s(out), time.time() - start


def run_two_nodes(model: str, data_dir: str | None, out: Path, epochs: int, batch: int, dataset: str):
    """The README's two-machine command, both "machines" on 127.0.0.1, one process each."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = [
        *TORCHRUN,
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        "bench",
    ]
    # One thread per "node", as the 2 local processes get: each launch alone would take every core of the machine.
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // 2))}
    start = time.time()
    nodes = [
        subprocess.Popen(
            [
                *node,
                "--node-rank",
                str(rank),
                "-m",
                "cnnlab",
                *train_args(model, data_dir, out, epochs, batch, dataset),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        for rank in (0, 1)
    ]
    if any(p.wait() != 0 for p in nodes):
        raise SystemExit("the two-node run failed")
    return last_images_per_s(out), time.time() - start


def _rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def _worker(agent_pid: int, rank: int) -> int:
    """The pid of the agent's child with RANK=rank (from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) != agent_pid:
                continue
            if f"RANK={rank}\0" in (entry / "environ").read_text():
                return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    raise SystemExit(f"no worker with rank {rank} under pid {agent_pid}")


def restart_time(model: str, data_dir: str | None, out: Path, epochs: int, batch: int, dataset: str) -> dict:
    """Kill rank 1 at the first progress row of epoch 2; time until the restarted attempt's first step."""
    job = subprocess.Popen(
        [
            *TORCHRUN,
            "--standalone",
            "--nproc-per-node",
            "2",
            "--max-restarts",
            "1",
            "-m",
            "cnnlab",
            *train_args(model, data_dir, out, epochs, batch, dataset),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    steps = out / "steps.csv"
    while not any(r["epoch"] == "2" for r in _rows(steps)):
        if job.poll() is not None:
            raise SystemExit("the run ended before epoch 2")
        time.sleep(0.01)
    before = {tuple(r.values()) for r in _rows(steps)}
    os.kill(_worker(job.pid, 1), signal.SIGKILL)
    killed = time.time()
    while True:  # the restarted attempt rewrites steps.csv up to epoch 1, then adds its own rows
        new = [r for r in _rows(steps) if r["epoch"] == "2" and tuple(r.values()) not in before]
        if new:
            seen = time.time()
            break
        if job.poll() is not None:
            raise SystemExit("the job ended without a restarted step")
        time.sleep(0.01)
    if job.wait() != 0:
        raise SystemExit("the restarted job failed")
    # `elapsed` counts from the start of the run minus the epochs kept in metrics.csv: what is left is the time the
    # new attempt spent training up to that row; one step of it (elapsed / steps) is the first step itself.
    row = new[0]
    epoch_1 = float(_rows(out / "metrics.csv")[0]["epoch_seconds"])
    training = float(row["elapsed"]) - epoch_1
    first_step = seen - killed - training + training / int(row["step"])
    epochs_once = [int(r["epoch"]) for r in _rows(out / "metrics.csv")] == list(range(1, epochs + 1))
    return {
        "first_step": first_step,
        "first_row": seen - killed,
        "row_step": int(row["step"]),
        "epochs_once": epochs_once,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--models", nargs="+", default=["mlp-tiny", "convnet"])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="the last epoch is timed")
    parser.add_argument("--batch-size", type=int, default=256, help="global batch")
    parser.add_argument("--restart-model", default="convnet", help="model of the killed-worker run (3 epochs)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "distributed.md"))
    args = parser.parse_args()
    lines = [
        "# Data-parallel throughput on this machine",
        "",
        f"Command: `python benchmarks/distributed.py {' '.join(sys.argv[1:])}`; {args.dataset}, global batch "
        f"{args.batch_size}, images/s of the last epoch (training only), wall time of the whole command. "
        f"2 nodes: two `torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d` launches on 127.0.0.1, "
        "each with half the cores (OMP_NUM_THREADS).",
        "",
        f"Machine: {describe_machine()}, {os.cpu_count()} cores.",
        "",
        f"| model | 1 process img/s | {args.nproc} processes img/s | 2 nodes (loopback) img/s | ratio N / nodes "
        f"| wall 1 / {args.nproc} / nodes (s) |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        common = (args.data_dir, args.epochs, args.batch_size, args.dataset)
        for model in args.models:
            one, wall_one = run(model, 1, args.data_dir, Path(tmp) / f"{model}-1", *common[1:])
            many, wall_many = run(model, args.nproc, args.data_dir, Path(tmp) / f"{model}-n", *common[1:])
            nodes, wall_nodes = run_two_nodes(model, args.data_dir, Path(tmp) / f"{model}-nodes", *common[1:])
            line = (
                f"| {model} | {one:,.0f} | {many:,.0f} | {nodes:,.0f} | {many / one:.2f}x / {nodes / one:.2f}x "
                f"| {wall_one:.0f} / {wall_many:.0f} / {wall_nodes:.0f} |"
            )
            print(line, flush=True)
            lines.append(line)
        restart = restart_time(
            args.restart_model, args.data_dir, Path(tmp) / "restart", 3, args.batch_size, args.dataset
        )
    line = (
        f"| {args.restart_model} | {restart['first_step']:.1f} s | {restart['first_row']:.1f} s "
        f"(step {restart['row_step']}) | {'yes' if restart['epochs_once'] else 'NO'} |"
    )
    print(line, flush=True)
    lines += [
        "",
        "## Restart after a lost worker",
        "",
        "2 processes under `torchrun --standalone --nproc-per-node 2 --max-restarts 1`, rank 1 killed (SIGKILL) at "
        "the first progress row of epoch 2; the new attempt continues from the epoch-1 `last.pt`. First step: "
        "from the kill to the restarted attempt's first training step (the first `steps.csv` row after the "
        "restart, minus the training time that row reports); first row: to that row itself.",
        "",
        "| model | kill → first step | kill → first progress row | metrics.csv holds each epoch once |",
        "|---|---|---|---|",
        line,
    ]
    write_table(args.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
