"""The training loop: one function, read top to bottom, that every model and dataset goes through."""

from __future__ import annotations

import functools
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import Dataset, load_dataset
from cnnlab.data.batches import Batches
from cnnlab.data.catalog import get_spec
from cnnlab.data.split import stratified_split
from cnnlab.device import (
    autocast_context,
    check_memory,
    make_grad_scaler,
    pick_device,
    resolve_precision,
    set_determinism,
    tune_cpu_allocator,
    tune_cpu_threads,
)
from cnnlab.distributed import (
    DistInfo,
    all_reduce_sum,
    elastic_max_restarts,
    elastic_restart,
    init_distributed,
    is_peer_failure,
    launched_by_torchrun,
    local_device,
    max_across_ranks,
    shutdown,
)
from cnnlab.errors import CnnlabError
from cnnlab.models import count_macs, create_model
from cnnlab.runfolder import checkpoint as ckpt
from cnnlab.runfolder.config import TrainConfig
from cnnlab.runfolder.own import display_name, is_own_data, load_own_data, model_source_name, reopen_model_code
from cnnlab.runfolder.preprocess import build_transform
from cnnlab.runfolder.resolve import check_model_fits, resolve_config
from cnnlab.runs.evaluate import EvalResult, evaluate, tta_kind
from cnnlab.training.optim import build_optimizer, build_scheduler, initialize_weights
from cnnlab.training.own import check_same_data, is_main_process, model_name_of, model_source, own_code_and_data
from cnnlab.training.progress import Progress
from cnnlab.training.resume import (
    AUTO_NEEDS_OUT,
    check_compatible,
    peer_lost,
    resume_auto,
    resume_checkpoint,
    resume_mode,
    resumed_folder,
)
from cnnlab.training.rundir import RunFolder, RunWriter, StepClock, default_run_dir, provenance
from cnnlab.training.state import TrainState

# On CUDA a finiteness check is a host sync, and under DDP the stop-signal check is an all-reduce: both run
# every few steps there; on one CPU process they are free and run every step.
CHECK_EVERY = 25


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

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}  # signal number -> the handler it had before

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
    on_epoch_end: Callable[[dict[str, Any]], bool | None] | None = None,
    trust_code: bool = False,
    **options: Any,
) -> TrainResult:
    """Train a model and write its run folder; returns the history, summary and trained model.

    Options resolve as on the command line: `train(model="convnet", dataset="mnist", epochs=3)` and
    `train(TrainConfig(model="convnet", dataset="mnist", epochs=3))` start from the model's recipe (fast
    unless `recipe` says otherwise), then apply the values given; the same request gives the same config.
    `resume` is a run folder (or its checkpoints/last.pt) to continue in place, or "auto": continue the run
    in `out` from its last.pt if it has one, else start it there (what every torchrun restart does too).
    `data` trains on a Dataset you built (uint8 tensors and a spec) instead of loading `config.dataset`.
    `on_epoch_end(row)`, on rank 0, sees each epoch's metrics row after its checkpoint; True ends the run there.
    Your own model: `model="nets/tiny.py:Net"`, `model=Net` (a class or factory defined in a file), or
    `model=Net()` (an instance: the run cannot be reopened without the code). Your own data:
    `dataset="path/to/folder"` (or an .npz, a CSV, a name given with `cnnlab datasets add`).
    `trust_code`: resuming a run of your own model executes the copy of its source kept in the run folder.
    """
    auto = resume_mode(resume)
    # `resume` may also be the checkpoint the caller already loaded (the CLI validates with it first).
    checkpoint = None if auto else resume if isinstance(resume, dict) else resume_checkpoint(resume) if resume else None
    request = {**(config.given() if config else {}), **options}
    if "model" in request and not isinstance(request["model"], str):
        request["model"] = model_name_of(request["model"])
    config, spec, data = _requested_config(request, checkpoint, auto, data, trust_code)
    device = pick_device(config.device)
    dist_info = init_distributed(device, config.backend, config.dist_timeout)
    device = local_device(device, dist_info)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        tune_cpu_allocator()  # reuse each step's freed buffers instead of faulting in fresh pages
        if not config.deterministic:  # a bitwise-repeatable run keeps one thread count whatever the load
            tune_cpu_threads()  # on a busy machine, fewer threads than cores wait less for one another
    together, folder, restart = False, None, False
    try:
        if auto:
            checkpoint, restart = resume_auto(config, device, dist_info)
            if checkpoint:  # resolved as a manual --resume would: the request on top of the run's own config
                imported = config.data_origin
                config = _resumed_config(request, checkpoint, ckpt.run_dir_of(checkpoint["path"]), trust_code)
                check_same_data(imported, config)
            if dist_info.is_main and elastic_restart():
                doing = "continuing" if checkpoint else "starting"
                print(f"torchrun restart {elastic_restart()}: {doing} the run in {config.out}"
                      + ("" if checkpoint else " again (no checkpoint yet)"), flush=True)  # fmt: skip
        folder = _open_folder(config, checkpoint is not None, device, dist_info, restart)
        result = _run(config, checkpoint, spec, data, device, dist_info, RunWriter(folder), argv, on_epoch_end)
        together = True
        return result
    except TrainingInterrupted:
        together = True  # the stop signal is agreed across ranks, so all of them stop at the same step
        raise
    except BaseException as err:
        if folder is not None and checkpoint is None:
            folder.discard_if_unused()  # a run that failed before its first checkpoint leaves no folder behind
        if dist_info.enabled and not isinstance(err, CnnlabError) and is_peer_failure(err):
            raise peer_lost(err, config, dist_info) from None
        raise
    finally:
        if folder is not None:
            folder.close()
        shutdown(dist_info, together)
        torch.set_num_threads(threads)  # the caller's process keeps its own setting


def _requested_config(
    request: dict[str, Any], checkpoint: dict | None, auto: bool, data: Dataset | None, trust_code: bool
) -> tuple[TrainConfig, Any, Dataset | None]:
    """The resolved config of a request (on top of a resumed run's own) with its run folder, the dataset's
    spec, and your own data (imported here, so its size and classes are known); everything that can be checked
    before a process group or a folder exists is checked here."""
    if checkpoint:
        config = _resumed_config(request, checkpoint, resumed_folder(checkpoint, request.get("out")), trust_code)
    else:
        config = own_code_and_data(resolve_config(request))
        if (auto or elastic_max_restarts() > 0) and not config.out:
            raise CnnlabError(AUTO_NEEDS_OUT)  # each attempt would otherwise start its own timestamped folder
        run_dir = default_run_dir(display_name(config.model), display_name(config.dataset))
        config = config.replace(out=str(config.out or run_dir))
    if data is None and is_own_data(config):
        data = load_own_data(config, progress=config.progress and is_main_process())
        config = config.replace(data_origin=data.origin)
    spec = data.spec if data is not None else get_spec(config.dataset)
    check_model_fits(config, spec)
    check_memory(config, spec)
    if config.tensorboard:
        from cnnlab.training.tensorboard import require_tensorboard  # here: only runs that log pay for it

        require_tensorboard()  # fail before anything is written
    return config, spec, data


def _resumed_config(request: dict[str, Any], checkpoint: dict, folder: Path, trust_code: bool) -> TrainConfig:
    config = resolve_config(request, base=TrainConfig.from_dict(checkpoint["config"]))
    check_compatible(checkpoint, config)
    reopen_model_code(config, folder, trust_code)
    return config.replace(out=str(folder))


def _run_dir(config: TrainConfig) -> Path:
    """The run folder: `train` sets `config.out` before anything opens or writes it."""
    if config.out is None:
        raise RuntimeError("config.out is unset: train() names the run folder before opening it")
    return Path(config.out)


def _open_folder(
    config: TrainConfig, resume: bool, device: torch.device, dist_info: DistInfo, restart: bool = False
) -> RunFolder | None:
    """Rank 0 opens (creates or reopens) and locks the run folder; every rank learns whether that worked."""
    folder, error = None, None
    if dist_info.is_main:
        try:
            folder = RunFolder(_run_dir(config), resume, restart)
        except CnnlabError as err:
            error = err
    if max_across_ranks(int(error is not None), device, dist_info):
        raise error or CnnlabError(f"rank 0 could not open the run folder {config.out}")
    return folder


@dataclass
class _Run:
    """What one training works with, set up by `_set_up` and read by the loop in `_run`."""

    config: TrainConfig
    spec: Any
    writer: RunWriter
    dist_info: DistInfo
    model: nn.Module  # the plain model (checkpoints, figures)
    net: nn.Module  # what steps run through: the model under DDP and torch.compile where asked
    state: TrainState
    precision: str
    train: Batches
    test: Batches
    val: Batches | None
    autocast: Any
    tta: str | None
    params: int
    history: list[dict[str, Any]]
    run_start: float  # perf_counter at the start, less the seconds of the epochs a resume continues
    on_epoch_end: Callable[[dict[str, Any]], bool | None] | None = None

    def save(self, name: str, epoch: int, step: int, sums: dict[str, Any] | None = None) -> None:
        if self.writer.enabled:
            # best.pt is weights only: a run continues from last.pt, never from best.pt
            resumable = name != "best.pt"
            checkpoint = self.state.to_checkpoint(self.config, self.spec, epoch, step, sums, resumable)
            self.writer.checkpoint(name, checkpoint, self.config.keep_checkpoints)


def _run(
    config: TrainConfig,
    checkpoint,
    spec,
    data,
    device: torch.device,
    dist_info: DistInfo,
    writer: RunWriter,
    argv,
    on_epoch_end: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """The loop: epochs of steps, each epoch ended by an evaluation, a metrics row and a checkpoint."""
    run = _set_up(config, checkpoint, spec, data, device, dist_info, writer, argv)
    run.on_epoch_end = on_epoch_end
    state, net = run.state, run.net
    check_every = CHECK_EVERY if device.type == "cuda" or dist_info.enabled else 1
    final_eval: EvalResult | None = None
    target_reached = None
    with _StopSignal() as stop:
        for epoch in range(state.epoch, config.epochs):
            start_step = state.step if epoch == state.epoch else 0
            saved = state.epoch_sums if epoch == state.epoch and dist_info.is_main else None  # global: count once
            meter = _EpochMeter(run, epoch, saved, start_step)
            net.train()
            step, signum = start_step - 1, 0
            for step, x, y in run.train.iterate(epoch, start_step):
                if config.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with run.autocast():
                    logits = net(x)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
                state.optimizer.zero_grad(set_to_none=True)
                state.scaler.scale(loss).backward()
                state.scaler.step(state.optimizer)
                state.scaler.update()
                meter.add(loss, logits, y)  # before the scheduler moves on: rows show the lr this step used
                state.scheduler.step()
                if step % check_every == 0:
                    _check_finite(loss, run, epoch, step, meter.lr)
                    signum = max_across_ranks(stop.signum or 0, device, dist_info)
                meter.report(step)
                if signum:
                    break
            totals, seconds = meter.close(step)
            if signum:
                _stop_here(run, epoch, totals, seconds, signum)
            final_eval, target_reached = _end_epoch(run, epoch, totals, seconds, final_eval)
            if target_reached:
                break
    writer.close()
    del run.train  # free its prepared inputs (188 MB for MNIST) before drawing: peak RSS 1,021 -> 1,000-1,012 MB
    summary = _summary(run, device, target_reached)
    writer.finish(summary, run.history, final_eval, run.model, run.test, spec.classes, config)
    return TrainResult(_run_dir(config), run.model, config, run.history, summary, final_eval)


def _set_up(config: TrainConfig, checkpoint, spec, data, device, dist_info: DistInfo, writer: RunWriter, argv) -> _Run:
    """The model, its state (restored when resuming), the batches, and the run folder's opening files."""
    set_determinism(config.seed, config.deterministic)
    model = _create_model(config, spec, dist_info)
    train_batches, test_batches, counts, val_batches = _load_batches(config, spec, data, device, dist_info, model)
    model, state, precision = _train_state(model, config, device, len(train_batches))
    if checkpoint and state.restore(checkpoint, config, len(train_batches)):
        writer.say(f"the {config.schedule} learning-rate schedule is re-planned for {config.epochs} epochs")
    if checkpoint:
        writer.say(f"resuming {config.out} at epoch {state.epoch + 1}, step {state.step} of {len(train_batches)}")
    meta = {**provenance(str(device), argv), "world_size": dist_info.world_size, "precision": precision}
    if config.model_sha256 and not checkpoint:  # the run keeps the code its model needs (a resume has it)
        writer.keep_model_source(model_source_name(config.model), model_source(config))
    history = writer.start(config.to_dict(), meta, state.epoch if checkpoint else None, config.tensorboard)
    params = sum(p.numel() for p in model.parameters())
    writer.say(
        f"training {config.model} ({params:,} params) on {config.dataset} [{counts[0]:,} train / {counts[1]:,} test] "
        f"with {device}"
        + (f" ({precision})" if precision != "fp32" else "")
        + (f" x {dist_info.world_size} processes" if dist_info.enabled else "")
    )
    net: nn.Module = model
    if dist_info.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    net = torch.compile(net) if config.compile else net  # type: ignore[assignment]  # a compiled module runs alike
    return _Run(
        config, spec, writer, dist_info, model, net, state, precision, train_batches, test_batches, val_batches,
        functools.partial(autocast_context, device, precision), tta_kind(spec) if config.tta else None, params,
        history, time.perf_counter() - sum(r["epoch_seconds"] for r in history),
    )  # fmt: skip


class _EpochMeter:
    """An epoch's running loss and accuracy, summed on the device (no host sync per step), and its live reports:
    a steps.csv row and the progress line every ~10% of the epoch. A resumed epoch starts from its saved sums.

    A steps.csv row holds the mean loss and accuracy of the steps since the previous row (its `images`), so a
    curve of them neither lags nor drops at an epoch boundary; the progress line shows the epoch's running mean."""

    def __init__(self, run: _Run, epoch: int, saved: dict[str, Any] | None, start_step: int):
        device = run.train.device
        self.run, self.epoch = run, epoch
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.seen, self.seconds_before = 0, 0.0  # images counted on the host: no device op per step
        self.lr = run.state.optimizer.param_groups[0]["lr"]  # of the latest step
        if saved:
            self.loss_sum += saved["loss_sum"]
            self.correct += saved["correct"]
            self.seen, self.seconds_before = int(saved["seen"]), saved["seconds"]
        self.seen_before = self.seen
        # The sums as of the last steps.csv row, on the host (a resumed epoch's rows start again from the resume).
        self.row_loss_sum = float(saved["loss_sum"]) if saved else 0.0
        self.row_correct, self.row_seen = float(saved["correct"]) if saved else 0.0, self.seen
        self.progress = Progress(run.config.progress and run.writer.enabled, len(run.train))
        self.progress.start_epoch(epoch, run.config.epochs, start_step)
        self.clock = StepClock(len(run.train))
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.loss_sum += loss.detach() * len(y)
        self.correct += (logits.detach().argmax(1) == y).sum()
        self.seen += len(y)
        self.lr = self.run.state.optimizer.param_groups[0]["lr"]

    def report(self, step: int) -> None:
        run = self.run
        if run.writer.enabled and self.clock.due(step):  # one host read of the running sums every ~10% of the epoch
            now = time.perf_counter()
            loss_sum, correct = torch.stack([self.loss_sum, self.correct.double()]).tolist()
            images = self.seen - self.row_seen
            live = {
                "epoch": self.epoch + 1, "step": step + 1,
                "loss": (loss_sum - self.row_loss_sum) / max(images, 1),
                "accuracy": (correct - self.row_correct) / max(images, 1), "lr": self.lr,
                "images_per_s": (self.seen - self.seen_before) / max(now - self.start, 1e-9),
                "elapsed": now - run.run_start, "images": images,
            }  # fmt: skip
            run.writer.step_row(live)
            self.row_loss_sum, self.row_correct, self.row_seen = loss_sum, correct, self.seen
            running = {"loss": loss_sum / max(self.seen, 1), "accuracy": correct / max(self.seen, 1)}
            self.progress.report({**live, **running}, len(run.train))
        self.progress.step()

    def close(self, step: int) -> tuple[dict[str, Any], float]:
        """The epoch's sums over every process, and its seconds (a resumed epoch's earlier part included)."""
        self.progress.close()
        seen = torch.tensor(float(self.seen), dtype=torch.float64, device=self.loss_sum.device)
        totals = all_reduce_sum(torch.stack([self.loss_sum, self.correct.double(), seen]), self.run.dist_info).tolist()
        sums = {
            "loss_sum": totals[0],
            "correct": int(totals[1]),
            "seen": int(totals[2]),
            "step": step + 1,
            "lr": self.lr,
        }
        return sums, self.seconds_before + time.perf_counter() - self.start


def _check_finite(loss: torch.Tensor, run: _Run, epoch: int, step: int, lr: float) -> None:
    """`lr`: the one this step used (the scheduler has already moved on to the next)."""
    if not torch.isfinite(loss):
        raise NonFiniteLoss(
            f"loss became {float(loss.detach())} at epoch {epoch + 1}, step {step} "
            f"(lr {lr:.4g}); {_what_is_kept(run.config)}; "
            "try a lower --lr or --precision fp32"
        )


def _what_is_kept(config: TrainConfig) -> str:
    folder = Path(config.out or ".") / "checkpoints"
    if (folder / "last.pt").is_file():
        return f"the last good checkpoint is kept in {folder}"
    return "no checkpoint was written before it"


def _stop_here(run: _Run, epoch: int, totals: dict[str, Any], seconds: float, signum: int) -> None:
    """Ctrl-C or SIGTERM: save the step reached (with the epoch's partial sums) and stop with the way on."""
    run.save("last.pt", epoch, totals["step"], {**totals, "seconds": seconds})
    name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
    raise TrainingInterrupted(
        f"{name}: stopped at epoch {epoch + 1}, step {totals['step']}; checkpoint "
        f"saved; resume with: cnnlab train --resume {run.config.out}",
        signum,
    )


def _end_epoch(
    run: _Run, epoch: int, totals: dict[str, Any], seconds: float, final_eval: EvalResult | None
) -> tuple[EvalResult | None, dict[str, Any] | None]:
    """Evaluate (every `eval_every` epochs and after the last), keep best.pt, write the metrics row and last.pt,
    say how it went; returns the latest test evaluation and, when the target accuracy is reached, when."""
    config, state, writer = run.config, run.state, run.writer
    train_loss, train_acc = totals["loss_sum"] / max(totals["seen"], 1), totals["correct"] / max(totals["seen"], 1)
    if not math.isfinite(train_loss):
        raise NonFiniteLoss(
            f"loss became {train_loss} in epoch {epoch + 1}; {_what_is_kept(config)}; "
            "try a lower --lr or --precision fp32"
        )
    test_loss = test_acc = val_loss = val_acc = chosen_acc = None
    if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
        evaluation = functools.partial(evaluate, run.net, num_classes=len(run.spec.classes), autocast=run.autocast,
                                       channels_last=config.channels_last, dist_info=run.dist_info, tta=run.tta)  # fmt: skip
        final_eval = evaluation(run.test)
        test_loss, test_acc = final_eval.loss, final_eval.accuracy
        if run.val is not None:
            val_eval = evaluation(run.val)
            val_loss, val_acc = val_eval.loss, val_eval.accuracy
        # With a validation split, best.pt and the target are chosen on it: the test set stays unseen.
        chosen_acc = val_acc if run.val is not None else test_acc
        if chosen_acc is not None and chosen_acc > state.best_acc:
            state.best_acc, state.best_epoch = chosen_acc, epoch + 1
            run.save("best.pt", epoch + 1, 0)
    row = {
        "epoch": epoch + 1, "step": (epoch + 1) * len(run.train), "train_loss": train_loss, "train_acc": train_acc,
        "test_loss": test_loss, "test_acc": test_acc, "lr": totals["lr"], "epoch_seconds": seconds,
        "images_per_s": totals["seen"] / max(seconds, 1e-9), "val_loss": val_loss, "val_acc": val_acc,
    }  # fmt: skip
    run.history.append(row)
    writer.epoch_row(row)
    if writer.tensorboard is not None:
        shown = final_eval if test_acc is not None else None
        writer.tensorboard.log_run_epoch(row, run.model, run.test, shown, run.spec.classes, config.channels_last)
    run.save("last.pt", epoch + 1, 0)
    writer.say(_epoch_line(row, config.epochs))
    if run.val is not None and val_acc is not None:
        writer.say(f"  validation loss {val_loss:.4f} acc {val_acc:.2%}")
    if run.on_epoch_end is not None:  # given to every rank alike; only rank 0 calls it, and all stop together
        asked = bool(run.on_epoch_end(dict(row))) if run.dist_info.is_main else False
        if max_across_ranks(int(asked), run.train.device, run.dist_info):
            writer.say(f"stopped after epoch {epoch + 1}, as on_epoch_end asked")
            return final_eval, {"epoch": epoch + 1, "by": "on_epoch_end", "unix_time": time.time()}
    if config.target_acc is None or test_acc is None or chosen_acc is None or chosen_acc < config.target_acc:
        return final_eval, None
    chosen = "validation" if run.val is not None else "test"
    writer.say(f"reached the target {chosen} accuracy {config.target_acc:.2%} at epoch {epoch + 1}: stopping")
    return final_eval, {"epoch": epoch + 1, "test_acc": test_acc, "val_acc": val_acc, "unix_time": time.time()}


def _summary(run: _Run, device: torch.device, target_reached: dict[str, Any] | None) -> dict[str, Any]:
    """summary.json: what the run reached, in how long, on what."""
    config, state, history, spec = run.config, run.state, run.history, run.spec
    best_test: float | None = None
    if state.best_acc >= 0:  # best.pt's epoch is chosen on validation with a split; its test figure is reported as is
        best_test = state.best_acc if config.val_split is None else next(
            (r["test_acc"] for r in history if r["epoch"] == state.best_epoch), None)  # fmt: skip
    size = config.resize or spec.image_size
    early = target_reached is not None and "by" in target_reached  # on_epoch_end stopped it, not the target
    validation = {
        "val_split": config.val_split,
        "final_val_acc": history[-1].get("val_acc") if history else None,
        "best_val_acc": state.best_acc if state.best_acc >= 0 else None,
    }
    return {
        "status": "complete", "model": config.model, "dataset": config.dataset, "recipe": config.recipe,
        "epochs": len(history), "final_test_acc": history[-1]["test_acc"] if history else None,
        "best_test_acc": best_test, "best_epoch": state.best_epoch,
        "total_seconds": time.perf_counter() - run.run_start,
        "mean_images_per_s": sum(r["images_per_s"] for r in history) / max(len(history), 1),
        "params": run.params, "macs": count_macs(run.model, size, spec.channels) if run.writer.enabled else None,
        "input_size": size, "device": str(device), "precision": run.precision,
        "world_size": run.dist_info.world_size, "target_reached": None if early else target_reached,
        **(validation if config.val_split else {}), **({"stopped_early": target_reached} if early else {}),
    }  # fmt: skip


def _load_batches(
    config: TrainConfig, spec, data: Dataset | None, device: torch.device, dist_info: DistInfo, model: nn.Module
):
    data = data if data is not None else load_dataset(config.dataset, config.data_dir)
    train_images, train_labels = data.train_images[: config.limit_train], data.train_labels[: config.limit_train]
    test_images, test_labels = data.test_images[: config.limit_test], data.test_labels[: config.limit_test]
    val_batches, rows, val_rows = None, None, None
    if config.val_split is not None:
        if config.val_split >= len(train_labels):
            raise CnnlabError(
                f"val_split={config.val_split} leaves no training images of the {len(train_labels):,}; hold out fewer"
            )
        keep, held = stratified_split(train_labels, config.val_split, config.seed)
        val_images, val_labels = train_images, train_labels
        if data.mapped:  # gathered by index from the mapped file per batch: a copy would read it all into memory
            rows, val_rows = keep, held
        else:
            val_images, val_labels = train_images[held], train_labels[held]
            train_images, train_labels = train_images[keep], train_labels[keep]
    # Preparing normalized float inputs once pays off only where a step costs about as much as converting
    # its batch: the fully-connected nets. Conv nets are compute-bound, so they keep the memory instead.
    prepare = None if not any(isinstance(m, nn.Conv2d) for m in model.modules()) else False
    shards = functools.partial(Batches, rank=dist_info.rank, world_size=dist_info.world_size, prepare=prepare)

    def evaluation(images: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None = None) -> Batches:
        transform = build_transform(config, spec, train=False)
        return shards(images.to(device), labels.to(device), config.eval_batch_size, transform, shuffle=False, rows=rows)

    train_transform = build_transform(config, spec, train=True)
    train_batches = shards(train_images.to(device), train_labels.to(device), config.batch_size, train_transform,
                           shuffle=True, seed=config.seed, augment=config.augment, rows=rows)  # fmt: skip
    test_batches = evaluation(test_images, test_labels)
    if config.val_split is not None:
        val_batches = evaluation(val_images, val_labels, val_rows)
    return train_batches, test_batches, (len(train_batches.labels), len(test_images)), val_batches


def _create_model(config: TrainConfig, spec, dist_info: DistInfo) -> nn.Module:
    """The model, initialized (or with the weights of `init_from`)."""
    model = create_model(
        config.model,
        in_channels=spec.channels,
        num_classes=len(spec.classes),
        image_size=config.resize or spec.image_size,  # your own model may be built for its input size
        **config.model_options,
    )
    initialize_weights(model, config.init)
    if config.init_from:
        model.load_state_dict(_init_weights(config.init_from, config, spec))
    if config.sync_bn and dist_info.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _train_state(model: nn.Module, config: TrainConfig, device: torch.device, steps_per_epoch: int):
    """The model on its device with its optimizer, schedule and grad scaler, as a TrainState."""
    # Module.to takes a device and a memory format together (torch._C._nn._parse_to); its stub overloads do not.
    layout = torch.channels_last if config.channels_last else torch.preserve_format
    model = model.to(device, memory_format=layout)  # type: ignore[call-overload]
    precision = resolve_precision(device, config.precision)
    # fp16's GradScaler with the fused SGD step turned losses into NaN within a few steps (measured on
    # CUDA and CPU, torch 2.11 and 2.14); the unfused step skips overflowing steps as it should.
    optimizer = build_optimizer(model, config, fused=precision != "fp16")
    state = TrainState(
        model, optimizer, build_scheduler(optimizer, config, steps_per_epoch), make_grad_scaler(device, precision)
    )
    return model, state, precision


def _init_weights(init_from: str, config: TrainConfig, spec) -> dict[str, torch.Tensor]:
    """The model weights of checkpoint `config.init_from`, after checking they fit this network."""
    source = ckpt.load_checkpoint(init_from, "best.pt")
    saved = source["config"]
    for key, value in (("model", config.model), ("model_options", config.model_options)):
        if saved.get(key) != value:
            raise CnnlabError(f"init_from={config.init_from!r} holds {key}={saved.get(key)!r}, not {value!r}")
    if (source["in_channels"], source["num_classes"]) != (spec.channels, len(spec.classes)):
        raise CnnlabError(
            f"init_from={config.init_from!r} was trained for {source['in_channels']} channel(s) and "
            f"{source['num_classes']} classes; {spec.name} has {spec.channels} and {len(spec.classes)}"
        )
    return source["model"]


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    test = f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.2%}" if row["test_acc"] is not None else "test -"
    return (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}  {test}  "
        f"lr {row['lr']:.4g}  {row['epoch_seconds']:.1f}s  {row['images_per_s']:,.0f} img/s"
    )
