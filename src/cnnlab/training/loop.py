"""The training loop: one function, read top to bottom, that every model and dataset goes through."""
from __future__ import annotations

import contextlib
import functools
import math
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import Dataset, load_dataset
from cnnlab.data.batches import Batches
from cnnlab.data.catalog import get_spec
from cnnlab.errors import CnnlabError
from cnnlab.models import count_macs, create_model, model_info
from cnnlab.training import checkpoint as ckpt
from cnnlab.training.config import TrainConfig, resolve_config
from cnnlab.training.device import (
    autocast_context, make_grad_scaler, pick_device, resolve_precision, set_determinism, tune_cpu_allocator,
)
from cnnlab.training.distributed import (
    DistInfo, all_reduce_sum, init_distributed, launched_by_torchrun, local_device, max_across_ranks, shutdown,
)
from cnnlab.runs.evaluate import EvalResult, evaluate
from cnnlab.training.optim import build_optimizer, build_scheduler, initialize_weights
from cnnlab.data.preprocess import build_transform
from cnnlab.training.progress import Progress
from cnnlab.training.rundir import MetricsLog, default_run_dir, prepare_run_dir, provenance, read_json, write_json

# On CUDA a finiteness check is a host sync, so it runs every few steps; on the CPU it is free.
CHECK_EVERY_CUDA = 25
# The options that shape the learning-rate schedule: a resume that changes one re-plans it.
SCHEDULE_KEYS = ("epochs", "limit_train", "schedule", "lr", "warmup_epochs", "step_size", "gamma")


class TrainingInterrupted(CnnlabError):
    """Ctrl-C / SIGTERM: a checkpoint was saved; exit 130 (SIGINT) or 143 (SIGTERM)."""

    label = "stopped"

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class NonFiniteLoss(CnnlabError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 1


@dataclass
class TrainResult:
    run_dir: Path
    model: nn.Module
    config: TrainConfig
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    final_eval: EvalResult | None = field(default=None, repr=False)


class _StopSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step; a second signal is not swallowed."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        if _in_main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        # A second signal stops at once, except under torchrun, whose agent forwards the
        # user's Ctrl-C to workers that already got it: they must still save first.
        if self.signum is not None and not launched_by_torchrun():
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | dict | None = None,
    data: Dataset | None = None,
    argv: list[str] | None = None,
    **options,
) -> TrainResult:
    """Train a model and write its run folder; returns the history, summary and trained model.

    `train(model="convnet", dataset="mnist", recipe="reference", epochs=3)` resolves options like the CLI
    (recipe first, then your values); `train(TrainConfig(...))` takes a config as written.
    `resume` is a run folder or checkpoint to continue from. `data` trains on a Dataset you built
    (uint8 tensors and a spec) instead of loading `config.dataset`.
    """
    # `resume` may also be a checkpoint the caller already loaded (the CLI reads its config first).
    checkpoint = resume if isinstance(resume, dict) else ckpt.load_checkpoint(resume) if resume else None
    if config is None:
        base = TrainConfig.from_dict(checkpoint["config"]) if checkpoint else None
        config = resolve_config(options, base=base)
    elif options:
        config = config.replace(**options)
    config.validate()
    if checkpoint:
        _check_compatible(checkpoint, config)

    # ---- set-up: device, processes, data, model --------------------------------------
    device = pick_device(config.device)
    dist_info = init_distributed(device, config.backend)
    device = local_device(device, dist_info)
    if device.type == "cpu":
        tune_cpu_allocator()  # reuse each step's freed buffers instead of faulting in fresh pages
    together = False
    try:
        result = _run(config, checkpoint, device, dist_info, argv, data)
        together = True
        return result
    except TrainingInterrupted:
        together = True  # the stop signal is agreed across ranks, so all of them stop at the same step
        raise
    finally:
        shutdown(dist_info, together)


def _run(config: TrainConfig, checkpoint, device: torch.device, dist_info: DistInfo, argv, data) -> TrainResult:
    main = dist_info.is_main
    say = functools.partial(print, flush=True) if main else (lambda *a, **k: None)
    spec = data.spec if data is not None else get_spec(config.dataset)
    info = model_info(config.model)
    input_size = config.resize or spec.image_size
    if input_size < info.min_input_size:
        raise CnnlabError(
            f"{config.model} needs inputs of at least {info.min_input_size}x{info.min_input_size}, "
            f"{config.dataset} gives {input_size}x{input_size}; pass --resize {max(info.min_input_size, info.default_input_size)}"
        )
    if info.max_input_size is not None and input_size > info.max_input_size:
        raise CnnlabError(
            f"{config.model} takes inputs of at most {info.max_input_size}x{info.max_input_size}, got "
            f"{input_size}x{input_size}; drop --resize or pass --resize {info.default_input_size}"
        )
    if config.tensorboard:
        from cnnlab.training.tensorboard import require_tensorboard

        require_tensorboard()  # fail before anything is written
    run_dir = Path(checkpoint["run_dir"]) if checkpoint else Path(config.out or default_run_dir(config.model, config.dataset))
    config = config.replace(out=str(run_dir))
    if main:
        prepare_run_dir(run_dir)
    set_determinism(config.seed, config.deterministic)

    data = data if data is not None else load_dataset(config.dataset, config.data_dir)
    train_images, train_labels = data.train_images[: config.limit_train], data.train_labels[: config.limit_train]
    test_images, test_labels = data.test_images[: config.limit_test], data.test_labels[: config.limit_test]
    num_classes = len(spec.classes)
    model = create_model(config.model, in_channels=spec.channels, num_classes=num_classes, **config.model_options)
    # Preparing normalized float inputs once pays off only where a step costs about as much as converting
    # its batch: the fully-connected nets. Conv nets are compute-bound, so they keep the memory instead.
    prepare = None if not any(isinstance(m, nn.Conv2d) for m in model.modules()) else False
    train_batches = Batches(
        train_images.to(device), train_labels.to(device), config.batch_size, build_transform(config, spec, train=True),
        shuffle=True, seed=config.seed, augment=config.augment, rank=dist_info.rank, world_size=dist_info.world_size,
        prepare=prepare,
    )
    test_batches = Batches(
        test_images.to(device), test_labels.to(device), config.eval_batch_size, build_transform(config, spec, train=False),
        shuffle=False, rank=dist_info.rank, world_size=dist_info.world_size, prepare=prepare,
    )

    initialize_weights(model, config.init)
    if config.sync_bn and dist_info.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format
    model = model.to(device, memory_format=memory_format)
    precision = resolve_precision(device, config.precision)
    # fp16's GradScaler with the fused SGD step turned losses into NaN within a few steps (measured on
    # CUDA and CPU, torch 2.11 and 2.14); the unfused step skips overflowing steps as it should.
    optimizer = build_optimizer(model, config, fused=precision != "fp16")
    scheduler = build_scheduler(optimizer, config, len(train_batches))
    scaler = make_grad_scaler(device, precision)
    autocast = functools.partial(autocast_context, device, precision)
    params = sum(p.numel() for p in model.parameters())

    # ---- resume: model, optimizer, schedule, position, partial-epoch sums, RNG ----------
    start_epoch, start_step, best_acc, best_epoch = 0, 0, -1.0, None
    epoch_sums = None
    if checkpoint:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, start_step = checkpoint["epoch"], checkpoint["step"]
        if all(checkpoint["config"].get(key) == getattr(config, key) for key in SCHEDULE_KEYS):
            scheduler.load_state_dict(checkpoint["scheduler"])
        else:  # e.g. --epochs raised: the schedule is planned anew for the new length, from the step reached
            scheduler = _replan(optimizer, config, len(train_batches), start_epoch * len(train_batches) + start_step)
            say(f"the {config.schedule} learning-rate schedule is re-planned for {config.epochs} epochs")
        best_acc, best_epoch = checkpoint["best_acc"], checkpoint["best_epoch"]
        epoch_sums = checkpoint.get("epoch_sums")
        ckpt.set_rng_states(checkpoint["rng"])
        say(f"resuming {run_dir} at epoch {start_epoch + 1}, step {start_step} of {len(train_batches)}")

    if main:
        meta = provenance(str(device), argv)
        meta["world_size"] = dist_info.world_size
        meta["precision"] = precision
        write_json(run_dir / "config.json", {"config": config.to_dict(), **meta})
    tensorboard = None
    if config.tensorboard and main:
        from cnnlab.training.tensorboard import TensorBoardLogger

        tensorboard = TensorBoardLogger(run_dir, config.to_dict(), purge_step=start_epoch + 1 if checkpoint else None)
    metrics = MetricsLog(run_dir / "metrics.csv", resume_after_epoch=start_epoch if checkpoint else None) if main else None
    history = _read_history(run_dir) if checkpoint and main else []
    say(f"training {config.model} ({params:,} params) on {config.dataset} "
        f"[{len(train_images):,} train / {len(test_images):,} test] with {device}"
        + (f" ({precision})" if precision != "fp32" else "")
        + (f" x {dist_info.world_size} processes" if dist_info.enabled else ""))

    net = model
    if dist_info.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)

    def save(name: str, epoch: int, step: int, sums=None) -> None:
        if not main:
            return
        state = {
            "version": ckpt.CHECKPOINT_VERSION,
            "model": ckpt.model_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": _plain_scheduler_state(scheduler),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "step": step,
            "epoch_sums": sums,
            "best_acc": best_acc,
            "best_epoch": best_epoch,
            "rng": ckpt.rng_states(),
            "config": config.to_dict(),
            "run_dir": str(run_dir),
            "num_classes": num_classes,
            "in_channels": spec.channels,
            "classes": list(spec.classes),
        }
        ckpt.save_atomic(state, run_dir / "checkpoints" / name)

    # ---- the loop -----------------------------------------------------------------------
    check_every = CHECK_EVERY_CUDA if device.type == "cuda" else 1
    progress = Progress(config.progress and main, len(train_batches))
    run_start = time.perf_counter()
    final_eval = None
    target_reached = None
    net.train()
    with _StopSignal() as stop, contextlib.ExitStack() as cleanup:
        if tensorboard is not None:
            cleanup.callback(tensorboard.close)  # flush events of interrupted runs too
        for epoch in range(start_epoch, config.epochs):
            step0 = start_step if epoch == start_epoch else 0
            # Sums over the epoch, on the device: no host sync per step.
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            seen = 0  # images, counted on the host: no device op per step
            seconds_before = 0.0
            if epoch_sums and epoch == start_epoch and main:  # saved sums are global: count them once
                loss_sum += epoch_sums["loss_sum"]
                correct += epoch_sums["correct"]
                seen += int(epoch_sums["seen"])
                seconds_before = epoch_sums["seconds"]
            progress.start_epoch(epoch, config.epochs, step0)
            epoch_start = time.perf_counter()
            for step, x, y in train_batches.iterate(epoch, step0):
                if config.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast():
                    logits = net(x)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                loss_sum += loss.detach() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
                if step % check_every == 0 and not torch.isfinite(loss):
                    raise NonFiniteLoss(
                        f"loss became {float(loss.detach())} at epoch {epoch + 1}, step {step} (lr {scheduler.get_last_lr()[0]:.4g}); "
                        f"the last good checkpoint is kept in {run_dir / 'checkpoints'}; try a lower --lr or --precision fp32"
                    )
                progress.step(step, loss, correct, seen)
                signum = max_across_ranks(stop.signum or 0, device, dist_info)
                if signum:
                    totals = _global_sums(loss_sum, correct, seen, dist_info)
                    sums = _sums(*totals.tolist(), seconds_before + time.perf_counter() - epoch_start)
                    save("last.pt", epoch, step + 1, sums)
                    progress.close()
                    name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
                    raise TrainingInterrupted(
                        f"{name}: stopped at epoch {epoch + 1}, step {step + 1}; checkpoint saved; "
                        f"resume with: cnnlab train --resume {run_dir}", signum,
                    )
            progress.close()

            # ---- end of epoch: metrics, evaluation, checkpoints --------------------------
            totals = _global_sums(loss_sum, correct, seen, dist_info)
            train_loss, train_acc = float(totals[0] / totals[2].clamp(min=1)), float(totals[1] / totals[2].clamp(min=1))
            if not math.isfinite(train_loss):
                raise NonFiniteLoss(
                    f"loss became {train_loss} in epoch {epoch + 1}; the last good checkpoint is kept in "
                    f"{run_dir / 'checkpoints'}; try a lower --lr or --precision fp32"
                )
            epoch_seconds = seconds_before + time.perf_counter() - epoch_start
            images = int(totals[2])
            last_epoch = epoch + 1 == config.epochs
            test_loss = test_acc = None
            if (epoch + 1) % config.eval_every == 0 or last_epoch:
                final_eval = evaluate(net, test_batches, num_classes, autocast, config.channels_last, dist_info)
                test_loss, test_acc = final_eval.loss, final_eval.accuracy
                if test_acc > best_acc:
                    best_acc, best_epoch = test_acc, epoch + 1
                    save("best.pt", epoch + 1, 0)
            row = {
                "epoch": epoch + 1, "step": (epoch + 1) * len(train_batches), "train_loss": train_loss,
                "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc,
                "lr": scheduler.get_last_lr()[0], "epoch_seconds": epoch_seconds,
                "images_per_s": images / max(epoch_seconds, 1e-9),
            }
            history.append(row)
            if main:
                metrics.append(row)
            if tensorboard is not None:
                from cnnlab.figures.run import sample_predictions

                images, truth, predicted, confidence = sample_predictions(model, test_batches, 16, config.channels_last)
                tensorboard.log_epoch(epoch + 1, row, final_eval.confusion if test_acc is not None else None,
                                      list(spec.classes), images, labels=truth, predicted=predicted, probs=confidence)
            save("last.pt", epoch + 1, 0)
            say(_epoch_line(row, config.epochs))
            if config.target_acc is not None and test_acc is not None and test_acc >= config.target_acc:
                target_reached = {"epoch": epoch + 1, "test_acc": test_acc, "unix_time": time.time()}
                say(f"reached the target test accuracy {config.target_acc:.2%} at epoch {epoch + 1}: stopping")
                break

    # ---- the end: summary and figures -----------------------------------------------------
    del train_batches  # free its prepared inputs (188 MB for MNIST) before drawing: peak RSS 1,021 -> 1,000-1,012 MB
    total_seconds = time.perf_counter() - run_start + sum(
        r["epoch_seconds"] for r in history[: start_epoch]
    )
    summary = {
        "status": "complete",
        "model": config.model,
        "dataset": config.dataset,
        "recipe": config.recipe,
        "epochs": len(history),
        "final_test_acc": history[-1]["test_acc"] if history else None,
        "best_test_acc": best_acc if best_acc >= 0 else None,
        "best_epoch": best_epoch,
        "total_seconds": total_seconds,
        "mean_images_per_s": sum(r["images_per_s"] for r in history) / max(len(history), 1),
        "params": params,
        "macs": count_macs(model, input_size, spec.channels) if main else None,
        "input_size": input_size,
        "device": str(device),
        "precision": precision,
        "world_size": dist_info.world_size,
        "target_reached": target_reached,
    }
    if main:
        write_json(run_dir / "summary.json", summary)
        if final_eval is not None:
            from cnnlab.figures.run import write_run_figures  # matplotlib: imported only when drawing

            write_run_figures(run_dir, history, final_eval, model, test_batches, spec.classes, config)
        acc = summary["final_test_acc"]
        say(f"done: test accuracy {acc:.2%} (best {best_acc:.2%} at epoch {best_epoch}); run folder {run_dir}"
            if acc is not None else f"done; run folder {run_dir}")
    return TrainResult(run_dir, model, config, history, summary, final_eval)


def _global_sums(loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, dist_info: DistInfo) -> torch.Tensor:
    """(loss sum, correct, images) over all ranks, as one float64 tensor."""
    totals = torch.stack([loss_sum, correct.double(), torch.tensor(float(seen), dtype=torch.float64, device=loss_sum.device)])
    return all_reduce_sum(totals, dist_info)


def _sums(loss_sum, correct, seen, seconds) -> dict[str, Any]:
    return {"loss_sum": float(loss_sum), "correct": int(correct), "seen": int(seen), "seconds": seconds}


def _plain_scheduler_state(scheduler) -> dict[str, Any]:
    """Scheduler state without callables, so weights_only loading accepts it."""
    return {k: v for k, v in scheduler.state_dict().items() if not callable(v)}


def _check_compatible(checkpoint: dict[str, Any], config: TrainConfig) -> None:
    saved = checkpoint["config"]
    for key in ("model", "dataset", "model_options", "resize", "permute_pixels", "batch_size"):
        if saved.get(key) != getattr(config, key):
            raise CnnlabError(
                f"cannot resume {checkpoint['path']}: it was trained with {key}={saved.get(key)!r}, "
                f"not {getattr(config, key)!r}; drop that option or start a new run"
            )
    if checkpoint["epoch"] >= config.epochs:
        done = f"finished all {checkpoint['epoch']} epochs" if checkpoint["step"] == 0 else \
            f"stopped in epoch {checkpoint['epoch'] + 1}"
        raise CnnlabError(f"{checkpoint['path']} has already {done}; pass --epochs N with N > {checkpoint['epoch']} to train on")


def _replan(optimizer, config: TrainConfig, steps_per_epoch: int, steps_done: int):
    """A scheduler for `config` standing at optimizer step `steps_done` (every schedule here is closed-form
    in the step). The loaded optimizer state carries the old plan's lr keys: the new plan sets its own."""
    for group in optimizer.param_groups:
        group["lr"] = config.lr
        for key in ("initial_lr", "max_lr", "min_lr"):
            group.pop(key, None)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    scheduler.last_epoch = steps_done - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": no step is skipped here
        scheduler.step()
    return scheduler


def _read_history(run_dir: Path) -> list[dict[str, Any]]:
    from cnnlab.training.rundir import read_metrics

    path = run_dir / "metrics.csv"
    return read_metrics(path) if path.exists() else []


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    test = (
        f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.2%}" if row["test_acc"] is not None else "test -"
    )
    return (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}  {test}  "
        f"lr {row['lr']:.4g}  {row['epoch_seconds']:.1f}s  {row['images_per_s']:,.0f} img/s"
    )


def summary_of(run_dir: str | Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / "summary.json")
