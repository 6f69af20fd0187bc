"""Training and evaluation throughput: the tutorial loop vs cnnlab's trainer, side by side in one run.

(a) the tutorial way: torchvision `datasets.MNIST` + `Compose([ToTensor(), Normalize()])` +
    `DataLoader(shuffle=True)` with default workers, a plain forward/backward/step loop;
(b) cnnlab's trainer (`cnnlab.training.train`) with its best settings for the device: the precision
    (fp32, or bf16 where `--precision auto` picks it) and memory layout (NCHW or channels-last) that a
    short probe of each finds fastest for this model and batch size, before the timed run.

Same model, batch size (the model's reference recipe), optimizer and number of steps. The
first steps of each side are warm-up and not timed. Each measurement runs in a fresh worker
process, (a) and (b) in turn, so neither inherits the other's process state. Usage:

    python benchmarks/throughput.py [--data-dir ../shared/datasets] [--steps 300] [--rounds 2] [--models ...] [--device cuda]

Writes the table to benchmarks/results/throughput.md (with the machine description).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.data import Dataset
from cnnlab.data.batches import Batches
from cnnlab.data.catalog import get_spec
from cnnlab.data.idx import encode_idx, read_idx
from cnnlab.device import autocast_context, pick_device, resolve_precision, tune_cpu_allocator
from cnnlab.models import create_model, model_info
from cnnlab.runfolder.preprocess import build_transform
from cnnlab.runs.evaluate import evaluate
from cnnlab.training import TrainConfig, train
from fast_paths import images_per_s, synchronize
from tables import describe_machine, write_table

MODELS = ["mlp-tiny", "cnn-tiny", "convnet", "lenet", "inception-mini", "resnet-mini"]
WARMUP = 20


# cnnlab's dataset name -> the torchvision class (and root folder) of the same files
TORCHVISION_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def tutorial_root(data_dir: str | None, tmp: Path, dataset: str = "mnist") -> tuple[Path, str]:
    """A torchvision root for `dataset` (e.g. MNIST/raw/ with uncompressed IDX files): real data, or same-shape
    synthetic; returns (root, the dataset name or "synthetic")."""
    raw = tmp / TORCHVISION_NAMES[dataset] / "raw"
    raw.mkdir(parents=True)
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    source = Path(data_dir, dataset) if data_dir else None
    if source and all((source / f"{n}.gz").exists() for n in names):
        for name in names:
            with gzip.open(source / f"{name}.gz") as f_in, open(raw / name, "wb") as f_out:
                shutil.copyfileobj(f_in, f_out)
        return tmp, dataset
    generator = torch.Generator().manual_seed(0)
    for name, n in (("train", 60000), ("t10k", 10000)):
        images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator).numpy()
        labels = torch.randint(0, 10, (n,), dtype=torch.uint8, generator=generator).numpy()
        (raw / f"{name}-images-idx3-ubyte").write_bytes(encode_idx(images))
        (raw / f"{name}-labels-idx1-ubyte").write_bytes(encode_idx(labels))
    return tmp, "synthetic"


def tutorial_setup(
    root: Path,
    model_name: str,
    batch_size: int,
    lr: float,
    momentum: float,
    device: torch.device,
    normalize: str = "0.1307,0.3081",
    seed: int = 0,
    dataset: str = "mnist",
    resize: int | None = None,
):
    """(train loader, test loader, model, optimizer) as the tutorials build them: torchvision's `datasets.MNIST`
    (or the class of `dataset`), [`Resize`], `ToTensor()` (+ `Normalize` unless `normalize` is "none"), a
    shuffling per-sample `DataLoader`, SGD."""
    from torchvision import datasets, transforms

    steps = ([transforms.Resize(resize)] if resize else []) + [transforms.ToTensor()]
    if normalize != "none":
        mean, std = (float(v) for v in normalize.split(","))
        steps.append(transforms.Normalize((mean,), (std,)))
    transform = transforms.Compose(steps)
    source = getattr(datasets, TORCHVISION_NAMES[dataset])
    train_set = source(root, train=True, download=False, transform=transform)
    test_set = source(root, train=False, download=False, transform=transform)
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000)
    model = create_model(model_name).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    return loader, test_loader, model, optimizer


def tutorial_step(model, optimizer, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
    """One step of the tutorial loop (cross-entropy; on the log-softmax nets it equals their NLL loss)."""
    x, y = x.to(device), y.to(device)
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()


def tutorial_test(model, test_loader, device: torch.device) -> tuple[float, int]:
    """(test accuracy, images seen): the tutorial's `test()` after each epoch."""
    model.eval()
    correct = seen = 0
    with torch.no_grad():
        for x, y in test_loader:
            correct += int(model(x.to(device)).argmax(1).eq(y.to(device)).sum())
            seen += len(y)
    model.train()
    return correct / seen, seen


def tutorial_images_per_s(
    root: Path, model_name: str, batch_size: int, lr: float, momentum: float, steps: int, device: torch.device
) -> tuple[float, float]:
    """(train, eval) images/s of the per-sample DataLoader loop every tutorial shows (batches moved to `device`)."""
    loader, test_loader, model, optimizer = tutorial_setup(root, model_name, batch_size, lr, momentum, device)
    model.train()
    start, done = None, 0
    while done < steps + WARMUP:
        for x, y in loader:
            if done == WARMUP:
                start = time.perf_counter()
            tutorial_step(model, optimizer, x, y, device)
            done += 1
            if done == steps + WARMUP:
                break
    synchronize(device)
    train_rate = steps * batch_size / (time.perf_counter() - start)
    start = time.perf_counter()
    _, seen = tutorial_test(model, test_loader, device)
    synchronize(device)
    return train_rate, seen / (time.perf_counter() - start)


def tutorial_to_target(
    root: Path,
    model_name: str,
    recipe: dict,
    target: float,
    device: torch.device,
    deadline: float | None = None,
    report=print,
) -> None:
    """The tutorial's own run of `recipe` (a reference recipe: batch, lr, momentum, normalize, seed, epochs), with
    its test after every epoch, until the test accuracy reaches `target` or the recipe's epochs end.

    `report(dict)` gets a row per epoch (epoch, test_acc, unix_time at the end of its test). With `deadline` (a
    unix time) the run stops at the first step past it and reports a row with `capped` and the steps done.
    """
    loader, test_loader, model, optimizer = tutorial_setup(
        root,
        model_name,
        recipe["batch_size"],
        recipe["lr"],
        recipe.get("momentum", 0.0),
        device,
        recipe.get("normalize", "0.1307,0.3081"),
        recipe.get("seed") or 0,
    )
    model.train()
    for epoch in range(1, recipe["epochs"] + 1):
        epoch_start = time.time()
        for step, (x, y) in enumerate(loader, 1):
            tutorial_step(model, optimizer, x, y, device)
            if deadline is not None and time.time() > deadline:
                report(
                    {
                        "epoch": epoch,
                        "capped": True,
                        "steps": step,
                        "steps_per_epoch": len(loader),
                        "epoch_seconds_so_far": time.time() - epoch_start,
                        "unix_time": time.time(),
                    }
                )
                return
        train_seconds = time.time() - epoch_start
        acc, _ = tutorial_test(model, test_loader, device)
        report(
            {
                "epoch": epoch,
                "test_acc": acc,
                "epoch_seconds": time.time() - epoch_start,
                "train_seconds": train_seconds,
                "unix_time": time.time(),
            }
        )
        if acc >= target:
            return


def tutorial_files_as_dataset(root: Path) -> Dataset:
    """The same files the tutorial side reads, as a cnnlab Dataset (for the synthetic case)."""
    raw = root / "MNIST" / "raw"
    arrays = {
        n: torch.from_numpy(read_idx(raw / f"{n}-ubyte").copy())
        for n in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")
    }
    return Dataset(
        get_spec("mnist"),
        arrays["train-images-idx3"][:, None],
        arrays["train-labels-idx1"].long(),
        arrays["t10k-images-idx3"][:, None],
        arrays["t10k-labels-idx1"].long(),
        str(raw),
    )


def best_settings(model_name: str, batch_size: int, device: torch.device, steps: int = 40) -> tuple[str, bool]:
    """(precision, channels_last) of the fastest training step for this model, batch and device.

    Each candidate is probed twice on random inputs (the better run kept); which one wins depends on the
    model, its options and the batch (e.g. lenet without BatchNorm is fastest channels-last, with BatchNorm
    in NCHW), so a per-model recipe value alone would not always be the best setting.
    """
    if device.type == "cpu":
        tune_cpu_allocator()  # probe under the allocator settings the trainer runs with
    precisions = sorted({"fp32", resolve_precision(device, "auto")})
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in create_model(model_name).modules())
    layouts = (False, True) if has_conv else (False,)  # a memory layout means nothing to a fully-connected net
    probes = {
        (precision, channels_last): max(
            images_per_s(
                model_name, device, steps, batch_size, channels_last, precision == "bf16", model_options={}, size=28
            )
            for _ in range(2)
        )
        for precision in precisions
        for channels_last in layouts
    }
    return max(probes, key=probes.get)


def cnnlab_images_per_s(
    data: Dataset,
    model_name: str,
    batch_size: int,
    lr: float,
    momentum: float,
    steps: int,
    out: Path,
    device: torch.device,
) -> tuple[float, float, str]:
    """(train, eval) images/s of cnnlab's trainer and its settings; epoch 1 is warm-up, epoch 2 is timed."""
    # The trainer itself keeps the data on the device, prepares inputs once for the fully-connected nets
    # and fuses the optimizer step; the probe picks the precision and memory layout.
    precision, channels_last = best_settings(model_name, batch_size, device)
    config = TrainConfig(
        model=model_name,
        recipe="none",
        dataset="mnist",
        epochs=2,
        batch_size=batch_size,
        lr=lr,
        momentum=momentum,
        normalize="0.1307,0.3081",
        limit_train=steps * batch_size,
        progress=False,
        out=str(out),
        channels_last=channels_last,
        precision=precision,
        device=device.type,
    )
    result = train(config, data=data)
    train_rate = result.history[-1]["images_per_s"]
    batches = Batches(
        data.test_images.to(device),
        data.test_labels.to(device),
        config.eval_batch_size,
        build_transform(config, data.spec, train=False),
        shuffle=False,
    )
    autocast = lambda: autocast_context(device, precision)  # noqa: E731
    evaluate(result.model, batches, 10, autocast, config.channels_last)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    evaluate(result.model, batches, 10, autocast, config.channels_last)
    synchronize(device)
    settings = f"{precision}{', channels-last' if channels_last else ''}"
    return train_rate, len(data.test_labels) / (time.perf_counter() - start), settings


def measure(args: argparse.Namespace) -> dict:
    """One side for one model, in this (fresh) process: the worker the main process starts."""
    device = pick_device(args.device)
    root = Path(args.root)
    recipe = model_info(args.model).reference_recipe
    batch, lr, momentum = recipe["batch_size"], recipe["lr"], recipe.get("momentum", 0.0)
    if args.side == "a":
        train_rate, eval_rate = tutorial_images_per_s(root, args.model, batch, lr, momentum, args.steps, device)
        return {"train": train_rate, "eval": eval_rate}
    with tempfile.TemporaryDirectory() as tmp:
        train_rate, eval_rate, settings = cnnlab_images_per_s(
            tutorial_files_as_dataset(root),
            args.model,
            batch,
            lr,
            momentum,
            args.steps + WARMUP,
            Path(tmp) / "run",
            device,
        )
    return {"train": train_rate, "eval": eval_rate, "settings": settings}


def run_side(side: str, name: str, root: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--model",
        name,
        "--root",
        str(root),
        "--steps",
        str(args.steps),
        "--device",
        args.device,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{name} ({side}) failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with mnist/ (the IDX .gz files); synthetic data if absent")
    parser.add_argument("--steps", type=int, default=300, help="timed training steps per side")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda: both sides train there")
    parser.add_argument("--rounds", type=int, default=2, help="(a), (b) pairs per model; each side keeps its best")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "throughput.md"))
    parser.add_argument("--side", choices=("a", "b"), help=argparse.SUPPRESS)  # worker mode: one measurement
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(measure(args)))
        return 0
    device = pick_device(args.device)

    # Each measurement runs in a fresh process, (a) and (b) in turn: neither side inherits the other's
    # state (cnnlab's trainer tunes its process's allocator), and a machine that drifts in speed over
    # minutes weighs on both sides alike.
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root, kind = tutorial_root(args.data_dir, Path(tmp))
        if kind != "mnist":
            print("real MNIST not found: using same-shape synthetic data", file=sys.stderr)
        for name in args.models:
            tutorial, ours = [], []
            for _ in range(args.rounds):
                tutorial.append(run_side("a", name, root, args))
                ours.append(run_side("b", name, root, args))
            a = max(tutorial, key=lambda r: r["train"])
            b = max(ours, key=lambda r: r["train"])
            a_train, a_eval = a["train"], max(r["eval"] for r in tutorial)
            b_train, b_eval, settings = b["train"], max(r["eval"] for r in ours), b["settings"]
            batch = model_info(name).reference_recipe["batch_size"]
            rows.append((name, batch, settings, a_train, b_train, b_train / a_train, a_eval, b_eval, b_eval / a_eval))
            print(
                f"{name:15s} batch {batch:4d} {settings:20s}  train {a_train:9,.0f} -> {b_train:9,.0f} img/s ({b_train / a_train:5.1f}x)  "
                f"eval {a_eval:9,.0f} -> {b_eval:9,.0f} img/s ({b_eval / a_eval:5.1f}x)",
                flush=True,
            )

    lines = [
        "# Training throughput: tutorial DataLoader loop (a) vs cnnlab (b)",
        "",
        f"Machine: {describe_machine(device)}. Device: {device}. Data: {kind}. {args.steps} timed steps per side after "
        f"{WARMUP} warm-up steps, each side in a fresh process, {args.rounds} rounds of (a) then (b), the best "
        "of each side kept. (a) trains in fp32 NCHW; (b) in the precision and layout a short probe found fastest "
        "(its column).",
        f"Command: `python benchmarks/throughput.py {' '.join(sys.argv[1:])}`",
        "",
        "| model | batch | (b) settings | train img/s (a) | train img/s (b) | ratio | eval img/s (a) | eval img/s (b) | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {b} | {p} | {at:,.0f} | {bt:,.0f} | {r:.1f}x | {ae:,.0f} | {be:,.0f} | {re:.1f}x |"
        for n, b, p, at, bt, r, ae, be, re in rows
    ]
    write_table(args.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
