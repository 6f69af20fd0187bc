"""Training and evaluation throughput: the tutorial loop vs cnnlab's trainer, in one process run.

(a) the tutorial way: torchvision `datasets.MNIST` + `Compose([ToTensor(), Normalize()])` +
    `DataLoader(shuffle=True)` with default workers, a plain forward/backward/step loop;
(b) cnnlab's trainer (`cnnlab.train.train`) with its default fast path for the device.

Same model, batch size (the model's reference recipe), optimizer and number of steps. The
first steps of each side are warm-up and not timed. Usage:

    python benchmarks/throughput.py [--data-dir ../shared/datasets] [--steps 300] [--models ...]

Writes the table to benchmarks/results/throughput.md (with the machine description).
"""
from __future__ import annotations

import argparse
import gzip
import platform
import shutil
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
from cnnlab.train.evaluate import evaluate
from cnnlab.train.preprocess import build_transform
from cnnlab.models import create_model, model_info
from cnnlab.train import TrainConfig, train

MODELS = ["mlp-tiny", "cnn-tiny", "convnet", "lenet", "inception-mini", "resnet-mini"]
WARMUP = 20


def tutorial_root(data_dir: str | None, tmp: Path) -> tuple[Path, str]:
    """A torchvision MNIST root (MNIST/raw/ with uncompressed IDX files): real data, or same-shape synthetic."""
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True)
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    source = Path(data_dir, "mnist") if data_dir else None
    if source and all((source / f"{n}.gz").exists() for n in names):
        for name in names:
            with gzip.open(source / f"{name}.gz") as f_in, open(raw / name, "wb") as f_out:
                shutil.copyfileobj(f_in, f_out)
        return tmp, "mnist"
    generator = torch.Generator().manual_seed(0)
    for name, n in (("train", 60000), ("t10k", 10000)):
        images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator).numpy()
        labels = torch.randint(0, 10, (n,), dtype=torch.uint8, generator=generator).numpy()
        (raw / f"{name}-images-idx3-ubyte").write_bytes(encode_idx(images))
        (raw / f"{name}-labels-idx1-ubyte").write_bytes(encode_idx(labels))
    return tmp, "synthetic"


def tutorial_images_per_s(root: Path, model_name: str, batch_size: int, lr: float, momentum: float, steps: int) -> tuple[float, float]:
    """(train, eval) images/s of the per-sample DataLoader loop every tutorial shows."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = datasets.MNIST(root, train=True, download=False, transform=transform)
    test_set = datasets.MNIST(root, train=False, download=False, transform=transform)
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True)
    torch.manual_seed(0)
    model = create_model(model_name)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    start, done = None, 0
    while done < steps + WARMUP:
        for x, y in loader:
            if done == WARMUP:
                start = time.perf_counter()
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps + WARMUP:
                break
    train_rate = steps * batch_size / (time.perf_counter() - start)
    model.eval()
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000)
    start = time.perf_counter()
    with torch.no_grad():
        seen = sum(model(x).argmax(1).eq(y).numel() for x, y in test_loader)
    return train_rate, seen / (time.perf_counter() - start)


def tutorial_files_as_dataset(root: Path) -> Dataset:
    """The same files the tutorial side reads, as a cnnlab Dataset (for the synthetic case)."""
    raw = root / "MNIST" / "raw"
    arrays = {n: torch.from_numpy(read_idx(raw / f"{n}-ubyte").copy()) for n in
              ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")}
    return Dataset(get_spec("mnist"), arrays["train-images-idx3"][:, None], arrays["train-labels-idx1"].long(),
                   arrays["t10k-images-idx3"][:, None], arrays["t10k-labels-idx1"].long(), str(raw))


def cnnlab_images_per_s(data: Dataset, model_name: str, batch_size: int, lr: float, momentum: float, steps: int,
                        out: Path) -> tuple[float, float]:
    """(train, eval) images/s of cnnlab's trainer; epoch 1 is warm-up, epoch 2 is timed."""
    # Best settings for a CPU, measured: channels-last for conv nets (oneDNN's faster layout); the trainer
    # itself prepares normalized inputs once and uses a fused optimizer step.
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in create_model(model_name).modules())
    config = TrainConfig(
        model=model_name, dataset="mnist", epochs=2, batch_size=batch_size, lr=lr, momentum=momentum,
        normalize="0.1307,0.3081", limit_train=steps * batch_size, progress=False, out=str(out),
        channels_last=has_conv,
    )
    result = train(config, data=data)
    train_rate = result.history[-1]["images_per_s"]
    batches = Batches(data.test_images, data.test_labels, config.eval_batch_size,
                      build_transform(config, data.spec, train=False), shuffle=False)
    evaluate(result.model, batches, 10)  # warm-up
    start = time.perf_counter()
    evaluate(result.model, batches, 10)
    return train_rate, len(data.test_labels) / (time.perf_counter() - start)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with mnist/ (the IDX .gz files); synthetic data if absent")
    parser.add_argument("--steps", type=int, default=300, help="timed training steps per side")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "throughput.md"))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root, kind = tutorial_root(args.data_dir, Path(tmp))
        if kind != "mnist":
            print("real MNIST not found: using same-shape synthetic data", file=sys.stderr)
        data = tutorial_files_as_dataset(root)
        for name in args.models:
            recipe = model_info(name).reference_recipe
            batch, lr, momentum = recipe["batch_size"], recipe["lr"], recipe.get("momentum", 0.0)
            a_train, a_eval = tutorial_images_per_s(root, name, batch, lr, momentum, args.steps)
            b_train, b_eval = cnnlab_images_per_s(data, name, batch, lr, momentum, args.steps + WARMUP,
                                                  Path(tmp) / f"run-{name}")
            rows.append((name, batch, a_train, b_train, b_train / a_train, a_eval, b_eval, b_eval / a_eval))
            print(f"{name:15s} batch {batch:4d}  train {a_train:9,.0f} -> {b_train:9,.0f} img/s ({b_train / a_train:5.1f}x)  "
                  f"eval {a_eval:9,.0f} -> {b_eval:9,.0f} img/s ({b_eval / a_eval:5.1f}x)", flush=True)

    lines = [
        "# Training throughput: tutorial DataLoader loop (a) vs cnnlab (b)",
        "",
        f"Machine: {machine()}. Data: {kind}. {args.steps} timed steps per side after {WARMUP} warm-up steps.",
        f"Command: `python benchmarks/throughput.py {' '.join(sys.argv[1:])}`",
        "",
        "| model | batch | train img/s (a) | train img/s (b) | ratio | eval img/s (a) | eval img/s (b) | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {b} | {at:,.0f} | {bt:,.0f} | {r:.1f}x | {ae:,.0f} | {be:,.0f} | {re:.1f}x |"
              for n, b, at, bt, r, ae, be, re in rows]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
