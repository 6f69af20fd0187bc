"""`cnnlab tune`: does pruning pay, do workers scale, and what does the engine cost per trial?

1. Pruning: the same TPE search (same sampler seeds, same trial count) without a pruner, with the median pruner and
   with hyperband; the best validation accuracy found, the test accuracy of that trial (read once), the epochs
   trained, the wall time, and how many pruned trials would have beaten the best had they run on.
   Pruning stops a trial through `train(on_epoch_end=...)`, as `cnnlab tune` does.
2. Workers: a fixed 12-trial grid (no pruning) as `cnnlab tune --workers 2 --threads 1` and `--workers 1
   --threads 2`, each a fresh process: wall time, and each trial's time outside its training loop.
3. Engine overhead: 40 trials whose objective returns at once, through the same loop (ask under the folder lock,
   reconcile, tell, experiment.json rewritten after each trial) on the SQLite storage.

Usage (about 10 minutes on 2 cores with the defaults):

    python benchmarks/tune.py --data-dir ../shared/datasets [--dataset fashion-mnist] [--trials 16] [--epochs 6]

Without --data-dir it runs on the embedded fashion-mnist-sample (smaller, noisier). Writes benchmarks/results/tune.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import describe_machine, write_table  # noqa: E402


def cpu_line() -> str:
    """lscpu's model name and whether the CPU has the avx512_bf16 and avx2 flags."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "lscpu unavailable"
    info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = info.get("Flags", "").split()
    return (
        f"{info.get('Model name', '?').strip()}, {info.get('CPU(s)', '?').strip()} CPUs; avx512_bf16: "
        f"{'yes' if 'avx512_bf16' in flags else 'no'}, avx2: {'yes' if 'avx2' in flags else 'no'}"
    )


def load_average() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def data_options(args) -> dict:
    options = {"dataset": args.dataset, "limit_test": args.limit_test}
    if args.data_dir:
        options["data_dir"] = args.data_dir
    if args.limit_train:
        options["limit_train"] = args.limit_train
    return options


SPACE = ["lr=log:1e-3..1", "weight_decay=log:1e-6..1e-2", "batch_size=32,64,128"]


def pruning(args, root: Path) -> list[str]:
    from cnnlab.experiments.tune import run_tune

    rows, totals = [], {}
    for seed in args.seeds:
        unpruned: dict[str, float] = {}  # parameters -> final validation accuracy without pruning, this seed
        for pruner in ("none", "median", "hyperband"):
            start = time.perf_counter()
            result = run_tune(
                args.model,
                space=SPACE,
                trials=args.trials,
                pruner=pruner,
                sampler_seed=seed,
                out=root / f"prune-{pruner}-seed{seed}",
                epochs=args.epochs,
                val_split=args.val_split,
                log=lambda m, p=pruner, s=seed: print(f"  [{p} seed {s}] {m}", flush=True),
                **data_options(args),
            )
            seconds = time.perf_counter() - start
            epochs = sum(r["epochs"] or 0 for r in result.rows)
            stopped = [r for r in result.rows if r["state"].startswith("pruned")]
            best = result.best
            key = lambda r: json.dumps(r["params"], sort_keys=True)  # noqa: E731
            if pruner == "none":
                unpruned = {key(r): r["val_acc"] for r in result.rows if r["val_acc"] is not None}
                lost = "-"
            else:  # pruned trials that, left to run (same parameters in the search without pruning), beat its best
                lost = str(sum(1 for r in stopped if unpruned.get(key(r), 0) > best["val_acc"]))
            total = totals.setdefault(pruner, [0.0, 0, 0.0, 0.0])
            total[0] += seconds
            total[1] += epochs
            total[2] += best["val_acc"]
            total[3] += best["test_acc"]
            rows.append(
                f"| {pruner} | {seed} | {len(stopped)} of {len(result.rows)} | {epochs} of "
                f"{len(result.rows) * args.epochs} | {best['val_acc']:.2%} (trial {best['trial']}) | "
                f"{best['test_acc']:.2%} | {lost} | {seconds:.0f} |"
            )
    n = len(args.seeds)
    summary = [
        f"| {p} | {t[1] / n:.0f} | {t[2] / n:.2%} | {t[3] / n:.2%} | {t[0] / n:.0f} | {t[0] / totals['none'][0]:.2f} |"
        for p, t in totals.items()
    ]
    return [
        "## Pruning: the same search with and without a pruner",
        "",
        f"`run_tune('{args.model}', space={SPACE}, trials={args.trials}, epochs={args.epochs}, "
        f"sampler_seed=SEED, val_split={args.val_split}, pruner=P)`, TPE, one worker, sampler seeds "
        f"{', '.join(map(str, args.seeds))}. median: MedianPruner(n_startup_trials=3, n_warmup_steps=2), from "
        "epoch 2 a trial whose best validation accuracy so far is below the median of the earlier trials at that "
        "epoch stops; hyperband: HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3). "
        "'Lost' counts the pruned trials whose parameters, in the search without pruning (same seed, so the same "
        "early suggestions), ended above the pruned search's best.",
        "",
        "| pruner | seed | pruned | epochs trained | best validation accuracy | its test accuracy | lost | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Mean over the {n} seed(s):",
        "",
        "| pruner | epochs trained | best validation accuracy | its test accuracy | wall s | time vs none |",
        "|---|---:|---:|---:|---:|---:|",
        *summary,
        "",
    ]


def workers(args, root: Path) -> list[str]:
    import optuna

    grid = ["lr=0.01,0.03,0.1", "batch_size=32,64", "weight_decay=0,0.0005"]
    extra = [f"--{k.replace('_', '-')}={v}" for k, v in data_options(args).items()]
    rows, walls = [], {}
    for repeat in range(1, args.repeats + 1):
        for n_workers, threads in ((2, 1), (1, 2)) if repeat % 2 else ((1, 2), (2, 1)):  # interleaved
            out = root / f"grid-{n_workers}x{threads}-{repeat}"
            load = load_average()
            command = [
                sys.executable,
                "-m",
                "cnnlab",
                "tune",
                args.model,
                "--space",
                *grid,
                "--sampler",
                "grid",
                "--pruner",
                "none",
                "--epochs",
                str(args.grid_epochs),
                f"--val-split={args.val_split}",
                "--workers",
                str(n_workers),
                "--threads",
                str(threads),
                "-o",
                str(out),
                *extra,
            ]
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
            study = optuna.load_study(study_name=out.name, storage=f"sqlite:///{out}/study.db")
            trials = study.trials
            training = []
            outside = []
            for t in trials:
                summary = json.loads((out / t.user_attrs["run"] / "summary.json").read_text())
                span = (t.datetime_complete - t.datetime_start).total_seconds()
                training.append(summary["total_seconds"])
                outside.append(span - summary["total_seconds"])
            walls.setdefault(f"{n_workers} x {threads}", []).append(seconds)
            rows.append(
                f"| {n_workers} x {threads} | {repeat} | {load} | {len(trials)} | {seconds:.0f} | "
                f"{sum(training) / len(trials):.1f} | {sum(outside) / len(trials):.1f} | {max(t.value for t in trials):.2%} |"
            )
    medians = {k: statistics.median(v) for k, v in walls.items()}
    return [
        "## Workers: a fixed 12-trial grid, 2 workers x 1 thread against 1 worker x 2 threads",
        "",
        f"`cnnlab tune {args.model} --space {' '.join(grid)} --sampler grid --pruner none --epochs {args.grid_epochs} "
        f"--val-split {args.val_split} --workers W --threads T` (each a fresh process: wall time includes starting "
        "Python and torch in every worker). Training s: the run's own total_seconds (its epochs and evaluations); "
        "outside s: the rest of the trial's time in the study (loading the data, building the model, the run's "
        "figures and files, the storage). The two set-ups alternate, each run "
        f"{args.repeats} time(s); load: the 1-minute load average as each began.",
        "",
        "| workers x threads | run | load | trials | wall s | training s per trial | outside training s per trial "
        "| best val acc |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Median wall time: "
        + ", ".join(f"{k}: {v:.0f} s" for k, v in medians.items())
        + f"; 2 workers x 1 thread take {medians['2 x 1'] / medians['1 x 2']:.2f}x the time of 1 worker x 2 threads.",
        "",
    ]


def engine_overhead(root: Path, n: int = 40) -> list[str]:
    from cnnlab.experiments.studies import Plan, open_study, work
    from cnnlab.experiments.tune import TuneRunner, write_study_files

    class Instant(TuneRunner):
        def run(self, trial, frozen):
            values = self.space.suggest(trial)
            return float(values["lr"])

    out = root / "overhead"
    out.mkdir(parents=True)
    plan = Plan(
        "tune",
        str(out),
        None,
        "overhead",
        {"kind": "bench", "space": [{"name": "lr"}]},
        job={
            "model": "mlp-tiny",
            "dataset": "mnist-sample",
            "space": ["lr=log:1e-3..1"],
            "base": {"val_split": 100},
            "epochs": 1,
        },
        trials=n,
        sampler="tpe",
        pruner="none",
    )
    study = open_study(plan, create=True)
    write_study_files(plan, study, "running", figures=False)
    runner = Instant(plan, lambda m: None)
    start = time.perf_counter()
    work(plan, runner, lambda m: None)
    seconds = time.perf_counter() - start
    return [
        "## Engine overhead per trial",
        "",
        f"{n} trials of a TPE search whose objective returns at once, through the tuner's own loop on the SQLite "
        f"storage (the folder lock, reconciling, ask, tell, experiment.json/trials.csv/table.md rewritten after "
        f"every trial): **{1000 * seconds / n:.0f} ms per trial** ({seconds:.1f} s in all). TPE's own sampling "
        "grows with the trials; it is inside that figure.",
        "",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding the datasets (default: the embedded sample)")
    parser.add_argument("--dataset", help="default: fashion-mnist with --data-dir, else fashion-mnist-sample")
    parser.add_argument("--model", default="cnn-tiny")
    parser.add_argument("--trials", type=int, default=16, help="trials of each pruning search (default: 16)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of a pruning-search trial (default: 6)")
    parser.add_argument("--grid-epochs", type=int, default=3, help="epochs of a grid trial (default: 3)")
    parser.add_argument("--limit-train", type=int, help="default: 6000 with --data-dir, else all")
    parser.add_argument("--limit-test", type=int, default=2000)
    parser.add_argument("--val-split", default="1000", help="default: 1000 images (200 on the sample)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="sampler seeds (default: 0 1)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each worker set-up (default: 2)")
    parser.add_argument("--keep", help="keep the study folders here (default: a temporary folder)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "tune.md"))
    parser.add_argument("--parts", nargs="+", default=["pruning", "workers", "overhead"])
    args = parser.parse_args()
    if args.data_dir:
        args.dataset = args.dataset or "fashion-mnist"
        args.limit_train = args.limit_train or 6000
    else:
        args.dataset = args.dataset or "fashion-mnist-sample"
        args.val_split = "200" if args.val_split == "1000" else args.val_split
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cnnlab-tune-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    began, load = time.strftime("%Y-%m-%d %H:%M"), load_average()
    start = time.perf_counter()
    sections = []
    if "pruning" in args.parts:
        sections += pruning(args, root)
    if "workers" in args.parts:
        sections += workers(args, root)
    if "overhead" in args.parts:
        sections += engine_overhead(root)
    import optuna

    lines = [
        "# cnnlab tune: pruning, workers, engine overhead",
        "",
        f"Command: `python benchmarks/tune.py {' '.join(sys.argv[1:])}` ({began}, {time.perf_counter() - start:.0f} "
        f"s in all). Data: {args.dataset}"
        + (f", the first {args.limit_train:,} training images" if args.limit_train else "")
        + f", {args.val_split} of them held out for validation, test on the first {args.limit_test:,}. Model: "
        f"{args.model}, its fast recipe.",
        "",
        f"Machine: {cpu_line()}; {describe_machine()}; Optuna {optuna.__version__}; load average {load} when it "
        "started (a shared machine: other sessions' work runs beside it, so times carry their noise).",
        "",
        *sections,
    ]
    write_table(args.output, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
