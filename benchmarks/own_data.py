"""Your own data (`cnnlab train MODEL --dataset FOLDER`): import speed, training speed, memory-mapping, accuracy.

One run measures, with the two sides of every comparison in turn (A, B, A, B, ...):

1. data: the data sets, made under the work dir (default /tmp/cnnlab-own-bench; reused when present):
   `mnist-png` (real MNIST as 60,000 + 10,000 PNG files, `train/<digit>/<i>.png`, `test/<digit>/<i>.png`),
   `rgb224` (224x224 RGB JPEGs from Fashion-MNIST, upscaled and tinted per class) and `rgb224-big` (the same
   kind, decoded size at least twice the memory limit of section 4).
2. import: the one-time import (`cnnlab.data.imported.load_own`, an empty cache: a fresh `XDG_CACHE_HOME`) in
   images/s, the second load (cache hit), and the peak RSS of the importing process (its own process; the
   peak over it and its decode workers, `wait4`'s ru_maxrss) against the decoded size N*C*H*W and against a
   process that only imports torch and cnnlab.
3. train: seconds per training epoch of the tutorial loop (torchvision `ImageFolder` + per-sample transforms +
   `DataLoader(num_workers=os.cpu_count(), shuffle=True)`, the model from `cnnlab.create_model`, SGD,
   cross-entropy, fp32) against `cnnlab train NAME --dataset FOLDER --recipe none --optimizer sgd --lr 0.05
   --precision fp32` (its metrics.csv `epoch_seconds`, training only, as the tutorial's), with the import
   cache already warm; same model, batch and epochs. `--tutorial-steps N` times N tutorial steps (after 3 of
   warm-up) and extrapolates to an epoch.
4. mmap: `cnnlab train` on `rgb224-big` (imported once beforehand, no limit) under a memory limit of half its
   decoded size, set with `prlimit --data` (RLIMIT_DATA; see the table's notes for why not --as), and under a
   limit that leaves room for the mapping; finished or not, whether the cache file was mapped (seen in
   /proc/PID/maps), peak RSS and peak anonymous RSS (polled).
5. accuracy: `cnnlab train convnet --recipe fast --seed S` on the PNG folder against `--dataset mnist`
   (same test split), and whether the imported pixels equal the IDX files' pixels.

    python benchmarks/own_data.py [--quick] [--only SECTION[,SECTION]] [--work-dir DIR] [--mnist DIR]
        [--fashion DIR] [--reps 2] [--epochs 1] [--tutorial-steps N] [--limit-mb 1229]

Results of each section are kept in WORK_DIR/results.json, so `--only` reruns one section and the table still
shows the others. Writes benchmarks/results/own_data.md (with --quick: WORK_DIR/own_data-quick.md).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SECTIONS = ("data", "import", "train", "mmap", "accuracy")
TINYNET = "examples/tinynet.py:TinyNet"
CPUS = os.cpu_count() or 1
# per-class tint of rgb224 (RGB, 0-255): the class is in the colour as well as the shape
TINTS = [
    (255, 80, 80), (80, 255, 80), (80, 80, 255), (255, 255, 80), (255, 80, 255),
    (80, 255, 255), (255, 160, 60), (160, 60, 255), (60, 160, 120), (200, 200, 200),
]  # fmt: skip
BACKGROUND = (30, 30, 40)


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f}"


# ------------------------------------------------------------------------------------------------ machine


def cpu_line() -> str:
    """CPU model, cores, whether it has avx512_bf16, torch and Python versions."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == (platform.processor() or platform.machine()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line
    except OSError:
        pass
    import torch

    bf16 = "yes" if "avx512_bf16" in flags.split() else "no"
    return (
        f"{model}, {CPUS} cores (os.cpu_count), avx512_bf16: {bf16}, torch {torch.__version__} "
        f"(default threads {torch.get_num_threads()}), Python {platform.python_version()}"
    )


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def load1() -> float:
    return os.getloadavg()[0]


# ------------------------------------------------------------------------------------------------ running


# Runs the measured command as its child and watches it. A probe of its own, not this process: a child's ru_maxrss
# starts at the RSS of the process it was forked from (Linux keeps the pre-exec high-water mark), and this one has
# torch loaded; the probe imports nothing, so its child's figure is the child's own.
PROBE = r"""
import json, os, subprocess, sys, time
opts, command = json.loads(sys.argv[1]), sys.argv[2:]
out = open(opts["log"], "w") if opts["log"] else subprocess.DEVNULL
start = time.perf_counter()
proc = subprocess.Popen(command, env=opts["env"], stdout=out, stderr=subprocess.STDOUT, cwd=opts["cwd"])
peak_rss = peak_anon = polls = 0
mapped = False
while True:
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if pid:
        break
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    peak_rss = max(peak_rss, int(line.split()[1]) * 1024)
                elif line.startswith("RssAnon:"):
                    peak_anon = max(peak_anon, int(line.split()[1]) * 1024)
        if opts["watch"] and not mapped and polls % 4 == 0:
            with open(f"/proc/{proc.pid}/maps") as f:
                mapped = any(opts["watch"] in line and line.rstrip().endswith(".bin") for line in f)
    except OSError:
        pass
    polls += 1
    if time.perf_counter() - start > opts["timeout"]:
        proc.kill()
    time.sleep(0.05)
seconds = time.perf_counter() - start
proc.returncode = os.waitstatus_to_exitcode(status)
result = {"seconds": seconds, "rc": proc.returncode, "maxrss": usage.ru_maxrss * 1024, "peak_rss_polled": peak_rss,
          "peak_anon_polled": peak_anon, "mapped": mapped}
with open(opts["result"], "w") as f:
    json.dump(result, f)
"""


def measure(command: list[str], env: dict | None = None, log: Path | None = None, watch: str | None = None,
            timeout: float = 3600) -> dict:  # fmt: skip
    """Run `command` (under a small probe process); its wall time, exit code, peak RSS (wait4's ru_maxrss: the
    largest of it and its waited descendants), peak RSS and anonymous RSS of the process itself (polled every
    50 ms), and whether a .bin file whose path contains `watch` (a cache file, not an import's temp file) was ever
    mapped into it (polled in /proc/PID/maps every 200 ms)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        opts = {"log": str(log) if log else None, "env": dict(env if env is not None else os.environ),
                "cwd": str(REPO), "watch": watch, "timeout": timeout, "result": result.name}  # fmt: skip
        subprocess.run([sys.executable, "-S", "-c", PROBE, json.dumps(opts), *command], check=True)
        return json.loads(Path(result.name).read_text())


def worker_command(kind: str, **kwargs) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--worker-args", json.dumps(kwargs)]


def last_json(log: Path) -> dict:
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"no result in {log}:\n{log.read_text()[-3000:]}")


def tail(log: Path, n: int = 1) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return " / ".join(lines[-n:])


def checked(result: dict, log: Path, what: str) -> dict:
    if result["rc"] != 0:
        raise SystemExit(f"{what} failed (exit {result['rc']}); log {log}:\n{log.read_text()[-3000:]}")
    return result


def cnnlab_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnnlab", *args]


# ------------------------------------------------------------------------------------------------ workers


def memory_status() -> dict:
    """This process's VmHWM (peak RSS so far), VmRSS and its parts, in bytes (/proc/self/status)."""
    keys = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in f) if k in keys}


def worker_import(a: dict) -> None:
    """Load (import, or hit the cache of) a folder in this fresh process; one JSON line, with the process's peak
    RSS read before it exits (ru_maxrss also counts the interpreter's teardown, which with torch loaded touches
    tens of MB more)."""
    from cnnlab.data.imported import ImportOptions, load_own

    start = time.perf_counter()
    data = load_own(a["path"], ImportOptions(), progress=False, mmap=None)
    seconds = time.perf_counter() - start
    shape = [len(data.train_images) + len(data.test_images), *data.train_images.shape[1:]]
    with open("/proc/self/maps") as f:
        mapped = any("/imported/" in line and line.rstrip().endswith(".bin") for line in f)
    print(json.dumps({"seconds_in": seconds, "shape": shape, "train": len(data.train_images),
                      "test": len(data.test_images), "mean": list(data.spec.mean), "std": list(data.spec.std),
                      "mapped": mapped, "memory": memory_status()}), flush=True)  # fmt: skip


def worker_baseline(a: dict) -> None:
    """Import what an importing process imports, and nothing more (the RSS floor)."""
    import torch  # noqa: F401

    import cnnlab.data.imported  # noqa: F401

    print(json.dumps({"memory": memory_status()}), flush=True)


def worker_tutorial(a: dict) -> None:
    """The tutorial loop on an ImageFolder: seconds per training epoch (or extrapolated from a fixed number of
    steps), one JSON line per epoch."""
    import torch
    import torch.nn.functional as F
    from torchvision import datasets, transforms

    from cnnlab.models import create_model, is_custom, load_user_model

    steps = [transforms.Grayscale()] if a["channels"] == 1 else []
    steps += [transforms.ToTensor(), transforms.Normalize(a["mean"], a["std"])]
    train_set = datasets.ImageFolder(str(Path(a["folder"]) / "train"), transform=transforms.Compose(steps))
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(train_set, batch_size=a["batch"], shuffle=True, num_workers=os.cpu_count())
    name = load_user_model(a["model"]) if is_custom(a["model"]) else a["model"]
    model = create_model(name, a["channels"], len(train_set.classes), **a["options"])
    optimizer = torch.optim.SGD(model.parameters(), lr=a["lr"], momentum=a["momentum"])
    model.train()
    limit, warmup = a["steps"], 3
    if a.get("data_only"):  # the loader alone: decode, transforms, collate, no model
        start = time.perf_counter()
        for _ in loader:
            pass
        print(json.dumps({"loader_seconds": time.perf_counter() - start}), flush=True)
        return
    for epoch in range(1, a["epochs"] + 1):
        start = time.perf_counter()
        timed_from, done = None, 0
        for x, y in loader:
            if limit and done == warmup:
                timed_from = time.perf_counter()
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            done += 1
            if limit and done == warmup + limit:
                break
        end = time.perf_counter()
        if limit:
            seconds = (end - timed_from) / limit * len(loader)
        else:
            seconds = end - start
        row = {"epoch": epoch, "epoch_seconds": seconds, "steps": done, "steps_per_epoch": len(loader),
               "extrapolated": bool(limit), "images": len(train_set), "loss": float(loss)}  # fmt: skip
        print(json.dumps(row), flush=True)


def worker_verify(a: dict) -> None:
    """Whether the imported PNG folder holds exactly the IDX files' pixels: per split and class, the sorted
    digests of the images are equal."""
    import hashlib

    from cnnlab import load_dataset
    from cnnlab.data.imported import ImportOptions, load_own

    own = load_own(a["path"], ImportOptions(), progress=False)
    ref = load_dataset("mnist", a["mnist"], download=False)
    n = {"train": a["train"], "test": a["test"]}  # the folder holds the first n of each split

    def digests(images, labels):
        by_class: dict[int, list[bytes]] = {}
        for image, label in zip(images.numpy(), labels.tolist()):
            by_class.setdefault(int(label), []).append(hashlib.sha1(image.tobytes()).digest())
        return {k: sorted(v) for k, v in by_class.items()}

    same = {
        split: digests(getattr(own, f"{split}_images"), getattr(own, f"{split}_labels"))
        == digests(getattr(ref, f"{split}_images")[: n[split]], getattr(ref, f"{split}_labels")[: n[split]])
        for split in ("train", "test")
    }
    print(json.dumps({"same_pixels": same, "own_mean_std": [own.spec.mean, own.spec.std],
                      "catalog_mean_std": [ref.spec.mean, ref.spec.std]}), flush=True)  # fmt: skip


WORKERS = {"import": worker_import, "baseline": worker_baseline, "tutorial": worker_tutorial, "verify": worker_verify}


# ------------------------------------------------------------------------------------------------ data sets

_JOB: dict = {}  # set before the pool forks: the arrays the writers read


def _write_chunk(span: tuple[int, int]) -> int:
    from PIL import Image

    images, labels, folder, kind, split = (_JOB[k] for k in ("images", "labels", "folder", "kind", "split"))
    for i in range(*span):
        label = int(labels[i])
        path = folder / split / str(label) / f"{i}.{'png' if kind == 'png' else 'jpg'}"
        if kind == "png":
            Image.fromarray(images[i]).save(path, format="PNG")
        else:
            image = Image.fromarray(images[i]).resize((224, 224), Image.BILINEAR)
            import numpy as np

            gray = np.asarray(image, np.float32)[..., None] / 255
            rgb = np.asarray(BACKGROUND, np.float32) * (1 - gray) + np.asarray(TINTS[label], np.float32) * gray
            Image.fromarray(rgb.round().astype(np.uint8)).save(path, format="JPEG", quality=90)
    return span[1] - span[0]


def write_split(folder: Path, split: str, images, labels, kind: str) -> None:
    for label in sorted(set(labels.tolist())):
        (folder / split / str(label)).mkdir(parents=True, exist_ok=True)
    _JOB.update(images=images, labels=labels, folder=folder, kind=kind, split=split)
    n, step = len(images), 500
    spans = [(i, min(i + step, n)) for i in range(0, n, step)]
    with multiprocessing.get_context("fork").Pool(CPUS) as pool:
        for _ in pool.imap_unordered(_write_chunk, spans):
            pass
    _JOB.clear()


def make_set(work: Path, name: str, source: str, data_dir: str, n_train: int, n_test: int, kind: str) -> dict:
    """Make (or reuse) a data set: `name`/train and /test from the first images of `source`'s splits."""
    folder, marker = work / name, work / f"{name}.json"
    want = {"source": source, "data_dir": str(data_dir), "train": n_train, "test": n_test, "kind": kind}
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("want") == want and folder.is_dir():
            info["reused"] = True
            return info
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    from cnnlab import load_dataset

    data = load_dataset(source, data_dir, download=False)
    train_images = data.train_images[:n_train, 0].numpy()
    train_labels = data.train_labels[:n_train].numpy()
    test_images = data.test_images[:n_test, 0].numpy()
    test_labels = data.test_labels[:n_test].numpy()
    write_split(folder, "train", train_images, train_labels, kind)
    write_split(folder, "test", test_images, test_labels, kind)
    seconds = time.perf_counter() - start
    channels, side = (1, 28) if kind == "png" else (3, 224)
    n = n_train + n_test
    files = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    info = {"want": want, "name": name, "folder": str(folder), "train": n_train, "test": n_test,
            "channels": channels, "size": side, "decoded": n * channels * side * side, "files_bytes": files,
            "made_seconds": seconds, "classes": len(set(train_labels.tolist()))}  # fmt: skip
    marker.write_text(json.dumps(info))
    info["reused"] = False
    return info


def section_data(args, work: Path) -> dict:
    sets = {}
    q = args.quick
    sets["mnist-png"] = make_set(work, "mnist-png", "mnist", args.mnist, 2000 if q else 60000, 500 if q else 10000,
                                 "png")  # fmt: skip
    sets["rgb224"] = make_set(work, "rgb224", "fashion-mnist", args.fashion, args.rgb_train, args.rgb_test, "jpg")
    sets["rgb224-big"] = make_set(work, "rgb224-big", "fashion-mnist", args.fashion, args.big_train, 1000 if not q
                                  else 200, "jpg")  # fmt: skip
    for name, info in sets.items():
        print(f"data {name}: {info['train']:,} + {info['test']:,} images, decoded {mb(info['decoded'])} MiB, "
              f"files {mb(info['files_bytes'])} MiB, {'reused' if info['reused'] else 'made'} "
              f"({info['made_seconds']:.0f} s to make)", flush=True)  # fmt: skip
    return sets


# ------------------------------------------------------------------------------------------------ sections


def env_with(cache: Path) -> dict:
    return {**os.environ, "XDG_CACHE_HOME": str(cache)}


def section_import(args, work: Path, sets: dict) -> dict:
    names = ["mnist-png", "rgb224"]
    rows: dict[str, list] = {n: [] for n in names}
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    base = []
    for rep in range(args.reps):
        for name in names:  # in turn: mnist-png, rgb224, mnist-png, ...
            info = sets[name]
            cache = Path(tempfile.mkdtemp(prefix="xdg-cold-", dir=work))
            log = logs / f"import-{name}-{rep}-cold.log"
            load = load1()
            cold = checked(measure(worker_command("import", path=info["folder"]), env_with(cache), log), log, "import")
            cold.update(last_json(log))
            log = logs / f"import-{name}-{rep}-warm.log"
            warm = checked(measure(worker_command("import", path=info["folder"]), env_with(cache), log), log, "load")
            warm.update(last_json(log))
            shutil.rmtree(cache)
            rows[name].append({"cold": cold, "warm": warm, "load": load})
            n = cold["shape"][0]
            print(f"import {name} rep {rep}: {n:,} images in {cold['seconds']:.2f} s of process "
                  f"({cold['seconds_in']:.2f} s in load_own: {n / cold['seconds_in']:,.0f} images/s), peak RSS "
                  f"{mb(cold['memory']['VmHWM'])} MiB (ru_maxrss {mb(cold['maxrss'])} MiB); cache hit "
                  f"{warm['seconds_in']:.3f} s", flush=True)  # fmt: skip
        log = logs / f"baseline-{rep}.log"
        floor = checked(measure(worker_command("baseline"), None, log), log, "baseline")
        floor.update(last_json(log))
        base.append(floor)
        print(f"floor (import torch + cnnlab): peak RSS {mb(floor['memory']['VmHWM'])} MiB (ru_maxrss "
              f"{mb(floor['maxrss'])} MiB)", flush=True)  # fmt: skip
    return {"rows": rows, "floor": base}


# tag -> (model, data set, model options, goal for the per-epoch ratio tutorial / cnnlab)
CASES = {
    "mlp-tiny": ("mlp-tiny", "mnist-png", {}, 10),
    "convnet": ("convnet", "mnist-png", {}, 5),
    "tinynet4": (TINYNET, "rgb224", {"width": 4}, 3),
    "tinynet16": (TINYNET, "rgb224", {}, 3),
}
DEFAULT_CASES = ["mlp-tiny", "convnet", "tinynet4"]


def cnnlab_epochs(out: Path) -> list[float]:
    """The per-epoch training seconds of a run: metrics.csv's epoch_seconds column."""
    lines = (out / "metrics.csv").read_text().splitlines()
    column = lines[0].split(",").index("epoch_seconds")
    return [float(line.split(",")[column]) for line in lines[1:]]


def section_train(args, work: Path, sets: dict, previous: dict | None = None) -> dict:
    """Per case: (a) the tutorial loop, (b) cnnlab as a user runs it (it picks its threads from the idle cores),
    (c) cnnlab with OMP_NUM_THREADS = the cores (the tutorial's thread count), in turn, `reps` times."""
    cache = work / "xdg-cache"  # the import cache of sections train, mmap and accuracy: warm before timing
    logs, runs = work / "logs", work / "runs"
    logs.mkdir(exist_ok=True)
    runs.mkdir(exist_ok=True)
    done = {c["tag"]: c for c in (previous or {}).get("cases", [])}  # cases of an earlier run not rerun now
    for tag in args.models:
        model, set_name, options, goal = CASES[tag]
        info = sets[set_name]
        folder = info["folder"]
        extra = ["--model-options", json.dumps(options)] if options else []
        if set_name != "mnist-png":  # the default 500 at 224x224x3 holds GBs of activations
            extra += ["--eval-batch-size", str(args.batch_size)]
        started, load_start = time.strftime("%Y-%m-%d %H:%M"), load1()
        # Warm the cache: the import (timed, reported apart), then a tiny run (fonts, page cache, first use).
        log = logs / f"train-import-{tag}.log"
        imp = checked(measure(worker_command("import", path=folder), env_with(cache), log), log, "import")
        imp.update(last_json(log))
        log = logs / f"train-warmup-{tag}.log"
        warm = cnnlab_command("train", model, "--dataset", folder, "--epochs", "1", "--limit-train", "256",
                              "--limit-test", "256", "--recipe", "none", "--no-progress", *extra,
                              "--out", str(runs / "warm"))  # fmt: skip
        checked(measure(warm, env_with(cache), log), log, "warm-up run")
        shutil.rmtree(runs / "warm", ignore_errors=True)
        steps = args.tutorial_steps if set_name == "mnist-png" else args.tutorial_steps_rgb
        tut_args = {"folder": folder, "model": model, "channels": info["channels"], "mean": imp["mean"],
                    "std": imp["std"], "batch": args.batch_size, "epochs": args.epochs, "lr": 0.05,
                    "momentum": args.momentum, "options": options, "steps": steps}  # fmt: skip
        cnn_args = ["train", model, "--dataset", folder, "--epochs", str(args.epochs), "--batch-size",
                    str(args.batch_size), "--recipe", "none", "--optimizer", "sgd", "--lr", "0.05", "--momentum",
                    str(args.momentum), "--precision", "fp32", "--no-progress", *extra]  # fmt: skip
        reps = []
        for rep in range(args.reps):
            load = load1()
            log = logs / f"train-tutorial-{tag}-{rep}.log"
            a = checked(measure(worker_command("tutorial", **tut_args), None, log), log, "tutorial loop")
            rows = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
            a.update(epochs=rows, epoch_seconds=statistics.median(r["epoch_seconds"] for r in rows))
            row = {"a": a, "load": load}
            log = logs / f"train-loader-{tag}-{rep}.log"
            checked(measure(worker_command("tutorial", **tut_args, data_only=True), None, log), log, "loader")
            row["loader_seconds"] = last_json(log)["loader_seconds"]
            for side, env in (("b", env_with(cache)), ("c", {**env_with(cache), "OMP_NUM_THREADS": str(CPUS)})):
                out = runs / f"{tag}-{side}-{rep}"
                shutil.rmtree(out, ignore_errors=True)
                log = logs / f"train-cnnlab-{tag}-{side}-{rep}.log"
                r = checked(measure(cnnlab_command(*cnn_args, "--out", str(out)), env, log), log, "cnnlab")
                r["epoch_list"] = cnnlab_epochs(out)
                r["epoch_seconds"] = statistics.median(r["epoch_list"])
                r["test_acc"] = json.loads((out / "summary.json").read_text())["final_test_acc"]
                shutil.rmtree(out, ignore_errors=True)
                row[side] = r
            row["ratio"] = a["epoch_seconds"] / row["b"]["epoch_seconds"]
            row["ratio_c"] = a["epoch_seconds"] / row["c"]["epoch_seconds"]
            reps.append(row)
            print(
                f"train {tag} on {set_name} rep {rep}: tutorial {a['epoch_seconds']:.2f} s/epoch"
                f"{' (extrapolated)' if rows[0]['extrapolated'] else ''}, cnnlab {row['b']['epoch_seconds']:.2f} "
                f"s/epoch (wall {row['b']['seconds']:.1f} s), with {CPUS} threads {row['c']['epoch_seconds']:.2f} "
                f"s/epoch; ratio {row['ratio']:.1f}x, {row['ratio_c']:.1f}x; the tutorial's loader alone "
                f"{row['loader_seconds']:.2f} s/epoch; load {load:.2f}",
                flush=True,
            )
        done[tag] = {"tag": tag, "model": model, "set": set_name, "options": options, "goal": goal, "extra": extra,
                     "import": imp, "reps": reps, "tutorial_args": tut_args, "cnnlab_args": cnn_args,
                     "when": started, "load": f"{load_start:.2f} -> {load1():.2f}"}  # fmt: skip
    order = list(CASES)
    return {"cases": sorted(done.values(), key=lambda c: order.index(c["tag"]) if c["tag"] in order else 99)}


def section_mmap(args, work: Path, sets: dict) -> dict:
    info = sets["rgb224-big"]
    cache = work / "xdg-cache"
    logs, runs = work / "logs", work / "runs"
    logs.mkdir(exist_ok=True)
    runs.mkdir(exist_ok=True)
    log = logs / "mmap-import.log"
    imp = checked(measure(worker_command("import", path=info["folder"]), env_with(cache), log), log, "import")
    imp.update(last_json(log))
    print(f"mmap: imported rgb224-big ({mb(info['decoded'])} MiB decoded) in {imp['seconds']:.1f} s, "
          f"peak RSS {mb(imp['maxrss'])} MiB", flush=True)  # fmt: skip
    cache_files = list((cache / "cnnlab" / "imported").glob("*.bin"))
    decoded = info["decoded"]
    # 1. the limit asked for: the data is twice the limit; 2. a limit with room for the mapping (RLIMIT_DATA counts
    # it) that still makes cnnlab map (decoded > limit / 2); 3. no limit: what an in-memory load costs.
    roomy = min(decoded + (1600 << 20), 2 * decoded - (64 << 20))
    limits = [("half the decoded size", args.limit_mb << 20), ("room for the mapping", roomy), ("no limit", None)]
    rows = []
    quick = ["--limit-train", "256", "--limit-test", "64"] if args.quick else []  # a smoke run: a few steps
    for what, limit in limits:
        before = {str(f): f.stat().st_mtime_ns for f in cache_files}
        tag = limit >> 20 if limit else "none"
        out = runs / f"mmap-{tag}"
        shutil.rmtree(out, ignore_errors=True)
        command = (["prlimit", f"--data={limit}"] if limit else []) + [*cnnlab_command(
            "train", TINYNET, "--dataset", info["folder"], "--epochs", "1", "--batch-size", "32",
            "--eval-batch-size", "32", "--model-options", '{"width": 4}', "--recipe", "none", "--optimizer", "sgd",
            "--lr", "0.05", "--precision", "fp32", "--no-progress", "--out", str(out), *quick)]  # fmt: skip
        log = logs / f"mmap-train-{tag}.log"
        load = load1()
        r = measure(command, env_with(cache), log, watch=str(cache / "cnnlab" / "imported"))
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
        after = {str(f): f.stat().st_mtime_ns for f in (cache / "cnnlab" / "imported").glob("*.bin")}
        epochs = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("epoch ")]
        r.update(epochs_done=len(epochs), epoch_line=epochs[-1] if epochs else "")
        r.update(what=what, limit=limit, load=load, finished=r["rc"] == 0 and summary.get("status") == "complete",
                 test_acc=summary.get("final_test_acc"), last_line=tail(log), rewritten=after != before,
                 command=command)  # fmt: skip
        rows.append(r)
        print(f"mmap: limit {mb(limit) if limit else '-'} MiB ({what}): finished {r['finished']}, mapped {r['mapped']}, peak RSS "
              f"{mb(r['maxrss'])} MiB (anon {mb(r['peak_anon_polled'])} MiB), {r['seconds']:.1f} s; "
              f"cache file rewritten: {r['rewritten']}; {r['last_line'][:200]}", flush=True)  # fmt: skip
        shutil.rmtree(out, ignore_errors=True)
    return {"import": imp, "rows": rows, "decoded": decoded}


def section_accuracy(args, work: Path, sets: dict) -> dict:
    info = sets["mnist-png"]
    cache = work / "xdg-cache"
    logs, runs = work / "logs", work / "runs"
    logs.mkdir(exist_ok=True)
    runs.mkdir(exist_ok=True)
    log = logs / "verify.log"
    verify = checked(measure(worker_command("verify", path=info["folder"], mnist=args.mnist, train=info["train"], test=info["test"]), env_with(cache), log),
                     log, "pixel check")  # fmt: skip
    verify.update(last_json(log))
    extra = ["--limit-train", str(info["train"]), "--limit-test", str(info["test"])] if args.quick else []
    sides = {
        "mnist-png": ["--dataset", info["folder"]],
        "mnist": ["--dataset", "mnist", "--data-dir", args.mnist],
    }
    rows: dict[str, list] = {k: [] for k in sides}
    for seed in args.seeds:
        for side, flags in sides.items():  # in turn
            out = runs / f"acc-{side}-{seed}"
            shutil.rmtree(out, ignore_errors=True)
            command = cnnlab_command("train", "convnet", "--recipe", "fast", *flags, "--seed", str(seed),
                                     "--no-progress", "--out", str(out), *extra)  # fmt: skip
            log = logs / f"acc-{side}-{seed}.log"
            r = checked(measure(command, env_with(cache), log), log, "accuracy run")
            summary = json.loads((out / "summary.json").read_text())
            r.update(seed=seed, test_acc=summary["final_test_acc"], best=summary["best_test_acc"],
                     epochs=summary["epochs"], precision=summary["precision"])  # fmt: skip
            rows[side].append(r)
            print(f"accuracy {side} seed {seed}: {r['test_acc']:.2%} ({summary['epochs']} epochs, "
                  f"{summary['precision']}), {r['seconds']:.1f} s", flush=True)  # fmt: skip
            shutil.rmtree(out, ignore_errors=True)
    return {"verify": verify, "rows": rows, "quick_extra": extra}


# ------------------------------------------------------------------------------------------------ table


def span(values: list[float], fmt: str = "{:.2f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def pct_stats(values: list[float]) -> str:
    mean = statistics.mean(values)
    sd = f" ± {statistics.stdev(values):.2%}" if len(values) > 1 else ""
    return f"{mean:.2%}{sd} (seeds: {', '.join(f'{v:.2%}' for v in values)})"


def render(results: dict, sets: dict, meta: dict) -> list[str]:
    lines = [
        "# Your own data: import, training speed, memory-mapped training, accuracy",
        "",
        f"Machine: {meta['cpu']}; {meta['mem']}.",
        f"Load (`uptime`) before: `{meta['uptime_before']}`; after: `{meta['uptime_after']}`.",
        f"Command: `{meta['command']}` (sections run this time: {', '.join(meta['ran'])}; "
        "others are from an earlier run, with their own time).",
        "",
        "## Data sets",
        "",
        "| name | train + test images | image | decoded (N·C·H·W) | files on disk | made in |",
        "|---|---|---|---|---|---|",
    ]
    for name, info in sets.items():
        fmt = "PNG" if info["channels"] == 1 else "JPEG q90"
        lines.append(
            f"| {name} | {info['train']:,} + {info['test']:,} | {info['size']}x{info['size']}x{info['channels']} "
            f"{fmt} | {mb(info['decoded'])} MiB | {mb(info['files_bytes'])} MiB | {info['made_seconds']:.0f} s |"
        )
    lines += [
        "",
        "mnist-png: the real MNIST (train 60,000 / test 10,000) written as `train/<digit>/<i>.png`, "
        "`test/<digit>/<i>.png`; rgb224 and rgb224-big: Fashion-MNIST upscaled to 224x224 (bilinear) and tinted "
        "per class, `train/<class>/<i>.jpg`, `test/...`.",
    ]
    if "import" in results:
        r = results["import"]
        floor = statistics.median(x["memory"]["VmHWM"] for x in r["floor"])
        floor_ru = statistics.median(x["maxrss"] for x in r["floor"])
        lines += [
            "",
            f"## Import ({r['when']}, load {r['load']})",
            "",
            f"`load_own(FOLDER, ImportOptions(), progress=False)` in a fresh process, {len(r['rows']['mnist-png'])}"
            " repetitions, the data sets in turn. Cold: an empty cnnlab cache (a fresh `XDG_CACHE_HOME`); the image "
            "files themselves are in the OS page cache (written or read just before). images/s: images / seconds "
            "inside `load_own` (scan, hash, decode, write the cache file). Cache hit: the next process, same cache. "
            "Peak RSS: the process's VmHWM read by itself when `load_own` has returned (the in-memory import "
            "decodes into shared memory, so the decoded images count once, as RssShmem); ru_maxrss: `wait4`'s, "
            "the largest of the process (its whole life, the interpreter's teardown included) and its decode "
            "workers. Floor: the same figures of a process that only imports torch and cnnlab.data.imported: "
            f"{mb(floor)} MiB VmHWM, {mb(floor_ru)} MiB ru_maxrss. Goal: peak ≤ decoded + a small constant; "
            "the constant is the last column. Figures are median (min-max).",
            "",
            "| data set | images | decoded | cold import s | images/s | goal ≥ 10,000/s | cache hit s | process wall "
            "(cold) s | peak RSS (VmHWM) | ru_maxrss | peak − floor − decoded |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, reps in r["rows"].items():
            n = reps[0]["cold"]["shape"][0]
            cold = [x["cold"]["seconds_in"] for x in reps]
            rates = [n / s for s in cold]
            peak = [x["cold"]["memory"]["VmHWM"] for x in reps]
            decoded = sets[name]["decoded"]
            goal = ("ok" if statistics.median(rates) >= 10000 else "NOT MET") if name == "mnist-png" else "-"
            lines.append(
                f"| {name} | {n:,} | {mb(decoded)} MiB | {span(cold)} | {span(rates, '{:,.0f}')} | {goal} | "
                f"{span([x['warm']['seconds_in'] for x in reps], '{:.3f}')} | "
                f"{span([x['cold']['seconds'] for x in reps])} | {span([v / 2**20 for v in peak], '{:,.0f}')} MiB | "
                f"{span([x['cold']['maxrss'] / 2**20 for x in reps], '{:,.0f}')} MiB | "
                f"{span([(v - floor - decoded) / 2**20 for v in peak], '{:+,.0f}')} MiB |"
            )
    if "train" in results:
        r = results["train"]
        momentum = r["cases"][0]["tutorial_args"]["momentum"] if r["cases"] else "?"
        lines += [
            "",
            "## Training speed per epoch",
            "",
            "(a) the tutorial loop: torchvision `ImageFolder(FOLDER/train)` with per-sample `Compose([Grayscale() "
            "(MNIST only), ToTensor(), Normalize(mean, std)])` (the imported data's mean/std), "
            f"`DataLoader(batch_size=B, shuffle=True, num_workers=os.cpu_count()={CPUS})`, "
            f"`cnnlab.create_model(name, C, 10, **options)`, SGD (lr 0.05, momentum {momentum}), cross-entropy, fp32, "
            "torch's default threads; seconds from the epoch's first `next()` (worker start included) to its last "
            "step, or, where marked, extrapolated from N steps timed after 3 of warm-up (worker start not counted: "
            "a lower bound for (a)). (b) `cnnlab train NAME --dataset FOLDER --epochs E --batch-size B --recipe none "
            f"--optimizer sgd --lr 0.05 --momentum {momentum} --precision fp32 --no-progress --out RUN` (plus the "
            "flags in the model column), its import cache warm (the one-time import, timed apart in a fresh "
            "process, is the column 'import'); it picks its thread count from the cores that are idle when it "
            f"starts. (c) the same with `OMP_NUM_THREADS={CPUS}`: the tutorial's thread count. Per epoch for (b) "
            "and (c): RUN/metrics.csv `epoch_seconds` (training only, no test, as (a)); wall: the whole process. "
            "Seconds per epoch: median over a run's epochs, then median (min-max) over the repetitions; ratios "
            "(a)/(b) and (a)/(c) per repetition (a, b, c, a, b, c, ...); (a)'s loader alone: the same DataLoader "
            "iterated for an epoch with no model (what the data costs the tutorial, with its workers using both "
            "cores); load: the 1-minute load average before each repetition.",
            "",
            "| model | data | B | E | (a) tutorial s/epoch | (b) cnnlab s/epoch | (a)/(b) per rep | goal | "
            f"(c) cnnlab, {CPUS} threads, s/epoch | (a)/(c) per rep | (a)'s loader alone s/epoch | (b) wall s "
            "| (b) test acc | import s (once) | load | when |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for case in r["cases"]:
            reps = case["reps"]
            rows0 = reps[0]["a"]["epochs"][0]
            how = (
                f" (extrapolated from {rows0['steps'] - 3} of {rows0['steps_per_epoch']} steps)"
                if rows0["extrapolated"]
                else ""
            )
            med = statistics.median(x["ratio"] for x in reps)
            goal = f"{'ok' if med >= case['goal'] else 'NOT MET'} (≥ {case['goal']}x)"
            shown = shlex.join([case["model"], *case["extra"]])
            ratios = ", ".join(f"{x['ratio']:.1f}x" for x in reps)
            ratios_c = ", ".join(f"{x['ratio_c']:.1f}x" for x in reps)
            accs = ", ".join(f"{x['b']['test_acc']:.2%}" for x in reps)
            loads = ", ".join(f"{x['load']:.1f}" for x in reps)
            lines.append(
                f"| {shown} | {case['set']} | {case['tutorial_args']['batch']} | {case['tutorial_args']['epochs']} "
                f"| {span([x['a']['epoch_seconds'] for x in reps])}{how} "
                f"| {span([x['b']['epoch_seconds'] for x in reps])} "
                f"| {ratios} (median {med:.1f}x) | {goal} "
                f"| {span([x['c']['epoch_seconds'] for x in reps])} "
                f"| {ratios_c} | {span([x.get('loader_seconds', float('nan')) for x in reps])} "
                f"| {span([x['b']['seconds'] for x in reps], '{:.1f}')} "
                f"| {accs} | {case['import']['seconds_in']:.2f} "
                f"| {loads} | {case['when']} |"
            )
    if "mmap" in results:
        r = results["mmap"]
        imp = r["import"]
        lines += [
            "",
            f"## Memory-mapped training under a memory limit ({r['when']}, load {r['load']})",
            "",
            f"rgb224-big ({mb(r['decoded'])} MiB decoded) imported once without a limit ({imp['seconds_in']:.1f} s, "
            f"mapped: {imp['mapped']}), then `prlimit --data=LIMIT cnnlab train {TINYNET} --dataset rgb224-big "
            "--epochs 1 --batch-size 32 --eval-batch-size 32 --model-options '{\"width\": 4}' --recipe none "
            "--optimizer sgd --lr 0.05 --precision fp32 --no-progress --out RUN`. The limit is RLIMIT_DATA (soft "
            "= hard), which cnnlab's `memory_available()` reads, and which counts a process's private writable "
            "memory (heap, anonymous and private file mappings) but not its code or shared libraries. Not "
            "RLIMIT_AS: a process that has imported torch and cnnlab already has about 3.2 GB of address space "
            "(mostly shared libraries) and 0.8 GB of data (`VmSize` and `VmData` in /proc/self/status here), so a "
            "limit of RLIMIT_AS would say little about memory. A cgroup (memory.max) cannot be made on this "
            "machine. mapped: the cache file appeared in /proc/PID/maps; peak RSS: `wait4` ru_maxrss; peak "
            "anonymous RSS: /proc/PID/status RssAnon, polled every 50 ms; cache rewritten: the cache file's mtime "
            "changed (an import was done again).",
            "",
            "| limit (RLIMIT_DATA) | decoded / limit | finished | epochs trained (its line) | mapped | peak RSS | "
            "peak anon RSS | wall s | cache rewritten | last line of output |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in r["rows"]:
            last = row["last_line"].replace("|", "\\|")[:300]
            lines.append(
                f"| {mb(row['limit']) + ' MiB' if row['limit'] else 'none'} ({row['what']}) | "
                f"{r['decoded'] / row['limit'] if row['limit'] else 0:.2f} | "
                f"{'yes' if row['finished'] else 'NO'} | {row.get('epochs_done', '?')} "
                f"{'(' + row['epoch_line'] + ')' if row.get('epoch_line') else ''} | "
                f"{'yes' if row['mapped'] else 'no'} | {mb(row['maxrss'])} MiB "
                f"| {mb(row['peak_anon_polled'])} MiB | {row['seconds']:.1f} | {'yes' if row['rewritten'] else 'no'} "
                f"| {last} |"
            )
    if "accuracy" in results:
        r = results["accuracy"]
        v = r["verify"]
        extra = " ".join(r["quick_extra"])
        lines += [
            "",
            f"## Accuracy: the PNG folder against the catalog MNIST ({r['when']}, load {r['load']})",
            "",
            "`cnnlab train convnet --recipe fast --seed S --no-progress --out RUN` with `--dataset mnist-png` (the "
            "folder) and `--dataset mnist --data-dir MNIST`, seeds in turn; final test accuracy (the same 10,000 "
            f"test images: the folder's test/ is the IDX test set){' ' + extra if extra else ''}. Imported pixels "
            f"equal the IDX files' (per split and class, as sets): train {v['same_pixels']['train']}, test "
            f"{v['same_pixels']['test']}; normalization: the folder's mean/std {v['own_mean_std']} (computed at "
            f"import) against the catalog's {v['catalog_mean_std']}.",
            "",
            "| data | test acc, mean ± sample std | epochs | precision | wall s |",
            "|---|---|---|---|---|",
        ]
        for side, rows in r["rows"].items():
            lines.append(
                f"| {side} | {pct_stats([x['test_acc'] for x in rows])} | {rows[0]['epochs']} | "
                f"{rows[0]['precision']} | {span([x['seconds'] for x in rows], '{:.1f}')} |"
            )
    return lines


# ------------------------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of about a minute")
    parser.add_argument("--only", help=f"comma-separated sections of {','.join(SECTIONS)} (data is always made)")
    parser.add_argument("--work-dir", help="where the data sets, caches and logs go")
    parser.add_argument("--mnist", default=os.environ.get("CNNLAB_BENCH_MNIST", "/work/shared/datasets/mnist"))
    parser.add_argument(
        "--fashion", default=os.environ.get("CNNLAB_BENCH_FASHION", "/work/shared/datasets/fashion-mnist")
    )
    parser.add_argument("--rgb-train", type=int, help="rgb224 train images (default 3000; quick 300)")
    parser.add_argument("--rgb-test", type=int, help="rgb224 test images (default 500; quick 100)")
    parser.add_argument("--big-train", type=int, help="rgb224-big train images (default 16500; quick 3400)")
    parser.add_argument("--limit-mb", type=int, help="section 4's memory limit in MiB (default 1229; 1,000 quick)")
    parser.add_argument("--reps", type=int, help="repetitions of each comparison (default 2; quick 1)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each training-speed run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum of both sides of section 3")
    parser.add_argument("--tutorial-steps", type=int, default=0, help="mnist-png: time N tutorial steps (0: epochs)")
    parser.add_argument("--tutorial-steps-rgb", type=int, default=0, help="rgb224: the same")
    parser.add_argument(
        "--models", nargs="+", choices=list(CASES), default=DEFAULT_CASES, help="section 3's cases (tinynet16: slow)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="accuracy seeds (default 1 2; quick 1)")
    parser.add_argument("--output", help="the markdown table (default benchmarks/results/own_data.md)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        WORKERS[args.worker](json.loads(args.worker_args))
        return 0

    q = args.quick
    work = Path(args.work_dir or ("/tmp/cnnlab-own-bench-quick" if q else "/tmp/cnnlab-own-bench"))
    work.mkdir(parents=True, exist_ok=True)
    defaults = {"rgb_train": (200, 3000), "rgb_test": (64, 500), "big_train": (3400, 16500),
                "limit_mb": (1000, 1229), "reps": (1, 2), "seeds": ([1], [1, 2])}  # fmt: skip
    for key, (quick, full) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if q else full)
    output = Path(args.output or (work / "own_data-quick.md" if q else HERE / "results" / "own_data.md"))
    only = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")

    store = work / "results.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    before = uptime()
    print(f"load before: {before}", flush=True)
    sets = section_data(args, work)
    runners = {"import": section_import, "train": section_train, "mmap": section_mmap, "accuracy": section_accuracy}
    for name in only:
        if name == "data":
            continue
        load = load1()
        start = time.time()
        if name == "train":
            results[name] = section_train(args, work, sets, results.get("train"))
        else:
            results[name] = runners[name](args, work, sets)
        results[name].update(when=time.strftime("%Y-%m-%d %H:%M", time.localtime(start)),
                             load=f"{load:.2f} -> {load1():.2f}", minutes=(time.time() - start) / 60)  # fmt: skip
        store.write_text(json.dumps(results))
        print(f"section {name}: {results[name]['minutes']:.1f} min", flush=True)
    after = uptime()
    try:
        with open("/proc/meminfo") as f:
            total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal"))
        mem = f"{total / 2**30:.0f} GiB memory, no GPU used"
    except (OSError, StopIteration):
        mem = "memory unknown"
    meta = {"cpu": cpu_line(), "mem": mem, "uptime_before": before, "uptime_after": after,
            "command": "python benchmarks/own_data.py " + " ".join(sys.argv[1:]), "ran": only}  # fmt: skip
    lines = render(results, sets, meta)
    sys.path.insert(0, str(HERE))
    from tables import write_table

    write_table(output, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
