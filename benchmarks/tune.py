"""`cnnlab tune`: does pruning pay, is the search worth it, do workers scale, what does the engine cost per trial?

1. Pruning: the same TPE search (same sampler seeds, same trial count; by default the issue's: fast-cnn, 30
   trials of 6 epochs over lr, weight decay, width and label smoothing) without a pruner and with the default
   (median) pruner, optionally hyperband: the best validation accuracy found, the test accuracy of that trial
   (read once), the epochs trained, the wall time, and how many pruned trials would have beaten the best had
   they run on. Goal: the pruned search reaches the unpruned one's best validation accuracy (within 0.2 points)
   in at most half its time. Pruning stops a trial through `train(on_epoch_end=...)`, as `cnnlab tune` does.
2. Worth: `cnnlab tune fast-cnn --recipe fashion-mnist-91 --space ... --time 900` (the record recipe's 3
   epochs), then the best trial's settings trained on the full training set over 5 seeds beside the recipe
   itself (`cnnlab train --recipe fashion-mnist-91 --seed S`): final test accuracy mean ± std of each.
3. Workers: a fixed 12-trial grid (no pruning) as `cnnlab tune --workers 2 --threads 1` and `--workers 1
   --threads 2`, each a fresh process: wall time, and each trial's time outside its training loop.
4. Engine overhead: 40 trials whose objective returns at once, through the same loop (ask under the folder lock,
   reconcile, tell, experiment.json rewritten after each trial) on the SQLite storage.

Before each part it waits for a quiet machine (1-minute load average below --quiet-load, polled every 60 s, for
at most --quiet-wait seconds) and writes the load before and after into the results; the results file is
rewritten after every part.

Usage (about an hour on 2 cores with the defaults; --parts and --worth-time shorten it):

    python benchmarks/tune.py --data-dir ../shared/datasets [--parts pruning worth workers overhead]

Without --data-dir it runs on the embedded fashion-mnist-sample (smaller, noisier; the worth part needs
--data-dir). Writes benchmarks/results/tune.md.
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
from tables import describe_machine, mean_std, write_table  # noqa: E402

# The search: fast-cnn's learning rate, weight decay, width and label smoothing (epochs fixed, see --epochs).
SPACE = [
    "lr=log:1e-3..0.3",
    "weight_decay=log:1e-6..1e-3",
    "model_options.width=1,2",
    "label_smoothing=0,0.05,0.1",
]
GRID = ["lr=0.01,0.03,0.1", "batch_size=32,64", "weight_decay=0,0.0005"]
RECORD = "fashion-mnist-91"  # fast-cnn's record recipe the worth part starts from and compares with


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


def wait_quiet(args, part: str) -> str:
    """Poll the 1-minute load average every 60 s until it is below args.quiet_load, at most args.quiet_wait s."""
    start, first = time.perf_counter(), load_average()
    while True:
        load = load_average()
        try:
            if float(load) < args.quiet_load:
                break
        except ValueError:
            break
        waited = time.perf_counter() - start
        if waited >= args.quiet_wait:
            print(f"[{part}] load {load} after {waited:.0f} s of waiting: running anyway", flush=True)
            return f"load {first} when it was due; waited {waited:.0f} s, still {load}: ran anyway"
        print(f"[{part}] load {load}: waiting for it to fall below {args.quiet_load}", flush=True)
        time.sleep(60)
    waited = time.perf_counter() - start
    return f"load {first} when it was due" + (f", waited {waited:.0f} s for {load}" if waited >= 1 else "")


def data_options(args, grid: bool = False) -> dict:
    """Training data of the pruning part, or (grid) of the workers part, which keeps its earlier, smaller set-up."""
    options = {"dataset": args.dataset, "limit_test": args.grid_limit_test if grid else args.limit_test}
    if args.data_dir:
        options["data_dir"] = args.data_dir
    limit = args.grid_limit_train if grid else args.limit_train
    if limit:
        options["limit_train"] = limit
    return options


def pruning(args, root: Path) -> list[str]:
    from cnnlab.experiments.tune import run_tune

    rows, totals = [], {}
    for seed in args.seeds:
        unpruned: dict[str, float] = {}  # parameters -> final validation accuracy without pruning, this seed
        reference: dict = {}  # the search without pruning, this seed: best validation accuracy and wall time
        for pruner in args.pruners:
            start = time.perf_counter()
            result = run_tune(
                args.model,
                space=args.space,
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
                reference = {"val_acc": best["val_acc"], "seconds": seconds}
                lost = gap = ratio = goal = "-"
            else:  # pruned trials that, left to run (same parameters in the search without pruning), beat its best
                lost = str(sum(1 for r in stopped if unpruned.get(key(r), 0) > best["val_acc"]))
                if reference:
                    shortfall = reference["val_acc"] - best["val_acc"]
                    share = seconds / reference["seconds"]
                    gap, ratio = f"{round(-100 * shortfall, 2) + 0.0:+.2f}", f"{share:.2f}"
                    goal = "yes" if shortfall <= 0.002 + 1e-9 and share <= 0.5 else "no"
                else:
                    gap = ratio = goal = "-"
            total = totals.setdefault(pruner, [0.0, 0, 0.0, 0.0, 0])
            total[0] += seconds
            total[1] += epochs
            total[2] += best["val_acc"]
            total[3] += best["test_acc"]
            total[4] += len(stopped)
            width = best["params"].get("model_options.width")
            by_width: dict = {}  # epochs trained at each width: a wider trial's epoch costs more
            for r in result.rows:
                w = r["params"].get("model_options.width")
                by_width[w] = by_width.get(w, 0) + (r["epochs"] or 0)
            split = " / ".join(f"{by_width[w]}" for w in sorted(by_width, key=str)) if width is not None else "-"
            rows.append(
                f"| {pruner} | {seed} | {len(stopped)} of {len(result.rows)} | {epochs} of "
                f"{len(result.rows) * args.epochs} | {split} | {best['val_acc']:.2%} (trial {best['trial']}"
                + (f", width {width}" if width is not None else "")
                + f") | {best['test_acc']:.2%} | {lost} | {seconds:.0f} | {gap} | {ratio} | {goal} |"
            )
    n = len(args.seeds)
    none = totals.get("none")
    summary = []
    for p, t in totals.items():
        if none and p != "none":
            gap = t[2] / n - none[2] / n
            share = t[0] / none[0]
            goal = "yes" if gap >= -0.002 - 1e-9 and share <= 0.5 else "no"
            verdict = f"{round(100 * gap, 2) + 0.0:+.2f} | {share:.2f} | {goal}"
        else:
            verdict = "- | 1.00 | -" if p == "none" else "- | - | -"
        summary.append(
            f"| {p} | {t[4] / n:.1f} | {t[1] / n:.0f} | {t[2] / n:.2%} | {t[3] / n:.2%} | {t[0] / n:.0f} | {verdict} |"
        )
    space = " ".join(f"'{s}'" for s in args.space)
    return [
        "## Pruning: the same search with and without a pruner",
        "",
        f"`run_tune('{args.model}', space=[{space}], trials={args.trials}, epochs={args.epochs}, "
        f"sampler_seed=SEED, val_split={args.val_split}, pruner=P)` (as `cnnlab tune {args.model} --space {space} "
        f"--trials {args.trials} --epochs {args.epochs} --pruner P`), TPE, one worker, sampler seed(s) "
        f"{', '.join(map(str, args.seeds))}; {args.model}'s fast recipe otherwise (SGD with Nesterov momentum, "
        "one-cycle schedule, batch 128, precision auto: bf16 on this CPU). median (the default pruner): "
        "MedianPruner(n_startup_trials=3, n_warmup_steps=2), from epoch 2 a trial whose best validation accuracy so "
        "far is below the median of the earlier trials at that epoch stops; hyperband: HyperbandPruner("
        "min_resource=1, max_resource=epochs, reduction_factor=3). The last epoch is never pruned. 'Lost' counts "
        "the pruned trials whose parameters, in the search without pruning (same seed, so the same early "
        "suggestions), ended above the pruned search's best. Epochs at each width: width 1 / width 2 (a width-2 "
        "epoch costs about 2.4 times a width-1 one here). Gap: the best validation accuracy minus the search "
        "without pruning's, in points; time: wall time over that search's. Goal: gap at least -0.20 and time at "
        "most 0.50.",
        "",
        f"Every trial runs {args.epochs} epochs unless pruned: the epoch count is not searched (`--space "
        "epochs=3,4,5,6` is accepted), because under the one-cycle schedule a trial's learning rate at epoch k "
        "depends on its own epoch count, so a 3-epoch trial at epoch 2 is already annealing while a 6-epoch "
        "one is at its peak: the pruner, which compares trials epoch by epoch, would stop long trials for "
        "being at a different point of their schedule, and 'pruned vs not' would no longer be the same search. "
        f"The pruner is what makes trials shorter than {args.epochs} epochs.",
        "",
        "| pruner | seed | pruned | epochs trained | of them at each width | best validation accuracy "
        "| its test accuracy | lost | wall s | gap (points) | time vs none | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
        f"Mean over the {n} seed(s):",
        "",
        "| pruner | pruned trials | epochs trained | best validation accuracy | its test accuracy | wall s "
        "| gap (points) | time vs none | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *summary,
        "",
    ]


def _flags(params: dict) -> list[str]:
    """A trial's parameters as `cnnlab train` flags (model options gathered into one --model-options JSON)."""
    flags, options = [], {}
    for name, value in params.items():
        if name.startswith("model_options."):
            options[name.split(".", 1)[1]] = value
        else:
            flags.append(f"--{name.replace('_', '-')}={value}")
    if options:
        flags.append(f"--model-options={json.dumps(options)}")
    return flags


def _run(command: list[str]) -> subprocess.CompletedProcess:
    print("  $ " + " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return done


def worth(args, root: Path) -> list[str]:
    cli = [sys.executable, "-m", "cnnlab"]
    study = root / "worth-study"
    data = ["--data-dir", args.data_dir]
    search = [
        *cli,
        "tune",
        "fast-cnn",
        "--dataset",
        "fashion-mnist",
        *data,
        "--recipe",
        RECORD,
        "--space",
        *args.worth_space,
        "--time",
        f"{args.worth_time:g}",
        "--sampler-seed",
        str(args.worth_sampler_seed),
        "-o",
        str(study),
        *([f"--limit-train={args.worth_limit_train}"] if args.worth_limit_train else []),
    ]
    start = time.perf_counter()
    _run(search)
    search_seconds = time.perf_counter() - start
    experiment = json.loads((study / "experiment.json").read_text())
    best = experiment["best"]
    import optuna

    trials = optuna.load_study(study_name=study.name, storage=f"sqlite:///{study}/study.db").trials
    states = [t.state.name for t in trials]
    flags = _flags(best["params"])
    seeds = list(range(1, args.worth_seeds + 1))
    results: dict[str, list[tuple[float, float]]] = {"recipe": [], "found": []}
    rows = []
    for seed in seeds:
        for name, command in (
            ("recipe", [*cli, "train", "--recipe", RECORD]),
            ("found", [*cli, "train", "fast-cnn", "--recipe", RECORD, *flags]),
        ):
            out = root / f"worth-{name}-{seed}"
            begun = time.perf_counter()
            _run([*command, "--seed", str(seed), *data, "--no-progress", "--out", str(out)])
            seconds = time.perf_counter() - begun
            acc = json.loads((out / "summary.json").read_text())["final_test_acc"]
            results[name].append((acc, seconds))
            print(f"  [worth] {name} seed {seed}: final test accuracy {acc:.2%} in {seconds:.0f} s", flush=True)
        rows.append(
            f"| {seed} | {results['recipe'][-1][0]:.2%} | {results['found'][-1][0]:.2%} | "
            f"{results['recipe'][-1][1]:.0f} | {results['found'][-1][1]:.0f} |"
        )
    recipe_acc = [a for a, _ in results["recipe"]]
    found_acc = [a for a, _ in results["found"]]
    better = statistics.mean(found_acc) >= statistics.mean(recipe_acc)
    params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
    shown = [*search[3:-2], "-o", "STUDY"] if not args.worth_limit_train else [*search[3:-3], "-o", "STUDY", search[-1]]
    return [
        f"## Worth: a {args.worth_time / 60:g}-minute search against the record recipe",
        "",
        f"`cnnlab {' '.join(_quote(a) for a in shown)}`: the record recipe "
        f"{RECORD} (fast-cnn, 3 epochs, SGD Nesterov lr 0.05, weight decay 5e-4, label smoothing 0.1, width 1, "
        "one-cycle, batch 128, bf16) with the search varying "
        + ", ".join(s.split("=")[0] for s in args.worth_space)
        + "; the default median pruner, the default 10% of the training images held out for validation"
        + (f", the first {args.worth_limit_train:,} training images" if args.worth_limit_train else "")
        + f". It ran {search_seconds:.0f} s: {len(trials)} trials ({states.count('COMPLETE')} complete, "
        f"{states.count('PRUNED')} pruned, {states.count('FAIL')} failed). Best: trial {best['trial']}, validation "
        f"accuracy {best['val_acc']:.2%} (test {best['test_acc']:.2%}), with **{params}**.",
        "",
        f"Then, on the full training set (60,000 images, no validation split) and test set (10,000), seeds "
        f"{seeds[0]}..{seeds[-1]}, each a fresh process, final test accuracy (the last epoch, as records.py): "
        f"`cnnlab train --recipe {RECORD} --seed S` (recipe) and `cnnlab train fast-cnn --recipe {RECORD} "
        f"{' '.join(_quote(f) for f in flags)} --seed S` (found).",
        "",
        "| seed | recipe test acc | found test acc | recipe s | found s |",
        "|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"| settings | final test accuracy, mean ± std over {len(seeds)} seeds | min-max | median s |",
        "|---|---:|---:|---:|",
        f"| recipe {RECORD} | {mean_std(recipe_acc)} | {min(recipe_acc):.2%}-{max(recipe_acc):.2%} | "
        f"{statistics.median(s for _, s in results['recipe']):.0f} |",
        f"| found ({params}) | {mean_std(found_acc)} | {min(found_acc):.2%}-{max(found_acc):.2%} | "
        f"{statistics.median(s for _, s in results['found']):.0f} |",
        "",
        f"Found settings at least as accurate as the recipe (mean): **{'yes' if better else 'no'}** "
        f"({100 * (statistics.mean(found_acc) - statistics.mean(recipe_acc)):+.2f} points).",
        "",
    ]


def _quote(text: str) -> str:
    return f"'{text}'" if any(c in text for c in ' {}"*') else text


def workers(args, root: Path) -> list[str]:
    import optuna

    extra = [f"--{k.replace('_', '-')}={v}" for k, v in data_options(args, grid=True).items()]
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
                args.grid_model,
                "--space",
                *GRID,
                "--sampler",
                "grid",
                "--pruner",
                "none",
                "--epochs",
                str(args.grid_epochs),
                f"--val-split={args.grid_val_split}",
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
    limit = args.grid_limit_train
    return [
        "## Workers: a fixed 12-trial grid, 2 workers x 1 thread against 1 worker x 2 threads",
        "",
        f"`cnnlab tune {args.grid_model} --space {' '.join(GRID)} --sampler grid --pruner none --epochs "
        f"{args.grid_epochs} --val-split {args.grid_val_split} --workers W --threads T` on "
        + (f"the first {limit:,} training images, " if limit else "all training images, ")
        + f"test on the first {args.grid_limit_test:,} (each a fresh process: wall time includes starting "
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


def engine_overhead(args, root: Path, n: int = 40) -> list[str]:
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


PARTS = {"pruning": pruning, "worth": worth, "workers": workers, "overhead": engine_overhead}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding the datasets (default: the embedded sample)")
    parser.add_argument("--dataset", help="default: fashion-mnist with --data-dir, else fashion-mnist-sample")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    pruning_flags = parser.add_argument_group("pruning part")
    pruning_flags.add_argument("--model", default="fast-cnn", help="model of the pruning searches (default: fast-cnn)")
    pruning_flags.add_argument("--space", nargs="+", default=SPACE, help=f"default: {' '.join(SPACE)}")
    pruning_flags.add_argument("--trials", type=int, default=30, help="trials of each pruning search (default: 30)")
    pruning_flags.add_argument("--epochs", type=int, default=6, help="epochs of a pruning-search trial (default: 6)")
    pruning_flags.add_argument("--pruners", nargs="+", default=["none", "median"], help="default: none median")
    pruning_flags.add_argument("--seeds", type=int, nargs="+", default=[0], help="sampler seeds (default: 0)")
    pruning_flags.add_argument("--limit-train", type=int, help="default: 20000 with --data-dir, else all")
    pruning_flags.add_argument("--limit-test", type=int, default=5000)
    pruning_flags.add_argument("--val-split", default="2000", help="default: 2000 images (200 on the sample)")
    worth_flags = parser.add_argument_group("worth part (needs --data-dir)")
    worth_flags.add_argument("--worth-time", type=float, default=900, help="search seconds (default: 900)")
    worth_flags.add_argument("--worth-space", nargs="+", default=SPACE, help="default: the pruning part's")
    worth_flags.add_argument("--worth-seeds", type=int, default=5, help="training seeds 1..N (default: 5)")
    worth_flags.add_argument("--worth-sampler-seed", type=int, default=0)
    worth_flags.add_argument("--worth-limit-train", type=int, help="search on the first N images (default: all)")
    grid_flags = parser.add_argument_group("workers part")
    grid_flags.add_argument("--grid-model", default="cnn-tiny")
    grid_flags.add_argument("--grid-epochs", type=int, default=3, help="epochs of a grid trial (default: 3)")
    grid_flags.add_argument("--grid-limit-train", type=int, help="default: 6000 with --data-dir, else all")
    grid_flags.add_argument("--grid-limit-test", type=int, default=2000)
    grid_flags.add_argument("--grid-val-split", default="1000", help="default: 1000 images (200 on the sample)")
    grid_flags.add_argument("--repeats", type=int, default=2, help="runs of each worker set-up (default: 2)")
    parser.add_argument("--quiet-load", type=float, default=1.5, help="wait for a load below this (default: 1.5)")
    parser.add_argument("--quiet-wait", type=float, default=1200, help="wait at most this many s (default: 1200)")
    parser.add_argument("--keep", help="keep the study folders here (default: a temporary folder)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "tune.md"))
    args = parser.parse_args()
    if args.data_dir:
        args.dataset = args.dataset or "fashion-mnist"
        args.limit_train = args.limit_train or 20000
        args.grid_limit_train = args.grid_limit_train or 6000
    else:
        if "worth" in args.parts:
            parser.error("the worth part trains on the full Fashion-MNIST: give --data-dir")
        args.dataset = args.dataset or "fashion-mnist-sample"
        args.val_split = "200" if args.val_split == "2000" else args.val_split
        args.grid_val_split = "200" if args.grid_val_split == "1000" else args.grid_val_split
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cnnlab-tune-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    began = time.strftime("%Y-%m-%d %H:%M")
    start = time.perf_counter()
    import optuna

    cpu = cpu_line()
    sections: list[str] = []
    for part in args.parts:
        quiet = wait_quiet(args, part)
        before, part_start = load_average(), time.perf_counter()
        lines = PARTS[part](args, root)
        after = load_average()
        lines.insert(
            2,
            f"CPU: {cpu}. Load average (1 minute) {before} as the part began ({quiet}), {after} as it ended; "
            f"{time.perf_counter() - part_start:.0f} s.\n",
        )
        sections += lines
        write_table(
            args.output,
            [
                "# cnnlab tune: pruning, the search's worth, workers, engine overhead",
                "",
                f"Command: `python benchmarks/tune.py {' '.join(_quote(a) for a in sys.argv[1:])}` ({began}, "
                f"{time.perf_counter() - start:.0f} s in all so far; parts done: "
                f"{', '.join(args.parts[: args.parts.index(part) + 1])}). Data: {args.dataset}; the pruning part "
                + (
                    f"on the first {args.limit_train:,} training images, "
                    if args.limit_train
                    else "on all training images, "
                )
                + f"{args.val_split} of them held out for validation, test on the first {args.limit_test:,}; "
                "the worth part on the full training and test sets; the workers part as it states.",
                "",
                f"Machine: {cpu}; {describe_machine()}; Optuna {optuna.__version__}. A shared machine: other "
                "sessions' work runs beside it, so times carry their noise; each part waited for a 1-minute load "
                f"average below {args.quiet_load} (at most {args.quiet_wait:.0f} s) and says the load it met.",
                "",
                *sections,
            ],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
