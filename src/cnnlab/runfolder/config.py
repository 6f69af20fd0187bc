"""The run's configuration: one typed dataclass, its validation, and the role of each field.

The resolved config is written into the run folder (config.json) and into every checkpoint, and
`cnnlab train --config RUN/config.json` repeats the run. How a request becomes a config (recipes,
config files, flags) is `resolve.py`'s job; single values are checked and parsed in `values.py`.

Each field may declare a role in its metadata, and the lists other modules need are derived from it:
"resume" (a resume must keep it: it shapes the model, the data or the batches), "schedule" (a resume
that changes it re-plans the learning-rate schedule), "incidental" (where or how a run is shown, not what
it is: two runs that differ only there are the same run), "recorded" (written by train from what it found:
your own data's origin and model's sha256; never a flag).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cnnlab.errors import CnnlabError, did_you_mean, unknown_choice
from cnnlab.runfolder.values import (
    DEVICES,
    check_device,
    check_model_options,
    check_type,
    parse_init,
    parse_normalize,
    parse_typed,
)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
RECIPES = ("fast", "reference", "none")
DEFAULT_RECIPE = "fast"  # what the CLI and train(**options) start from when --recipe is not given


def _opt(default, help: str, **meta):
    """A config field with its help text (shown by `cnnlab train --help`)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    model: str = _opt("convnet", "model name (see `cnnlab models`)", role="resume")
    dataset: str = _opt("mnist", "dataset name (see `cnnlab datasets`)", role="resume")
    data_dir: str | None = _opt(
        None, "folder holding the dataset files (default: search the usual places)", role="incidental"
    )
    image_size: int | None = _opt(
        None, "your own images: import them at NxN pixels (default: their most common size)", role="resume"
    )
    channels: int | None = _opt(
        None, "your own images: 1 (grayscale) or 3 (colour) (default: 1 when every image is grayscale)", role="resume"
    )
    skip_bad_images: bool = _opt(
        False, "your own images: leave out files that cannot be decoded (listed in the import report)", role="resume"
    )
    test_fraction: float = _opt(
        0.2, "your own data without a test split: the fraction held out for testing (stratified, seed 0)", role="resume"
    )
    epochs: int = _opt(3, "passes over the training set", role="schedule")
    batch_size: int = _opt(128, "global batch size in images (split across processes under torchrun)", role="resume")
    lr: float = _opt(0.05, "peak learning rate", role="schedule")
    optimizer: str = _opt("sgd", "optimizer: " + "|".join(OPTIMIZERS))
    momentum: float = _opt(0.9, "SGD momentum (Adam: beta1)")
    nesterov: bool = _opt(False, "use Nesterov momentum with SGD")
    weight_decay: float = _opt(0.0, "L2 weight decay (decoupled for adamw)")
    schedule: str = _opt("constant", "learning-rate schedule: " + "|".join(SCHEDULES), role="schedule")
    warmup_epochs: float = _opt(0.0, "linear warm-up length in epochs (constant/step/cosine)", role="schedule")
    step_size: int = _opt(3, "epochs between lr drops for --schedule step", role="schedule")
    gamma: float = _opt(0.1, "lr factor at each drop for --schedule step", role="schedule")
    label_smoothing: float = _opt(0.0, "cross-entropy label smoothing, 0..1")
    resize: int | None = _opt(None, "resize images to NxN pixels per batch (e.g. 224 for AlexNet)", role="resume")
    augment: bool = _opt(False, "random translate (and flip where it keeps the class) while training")
    permute_pixels: bool = _opt(False, "reorder every image's pixels by one fixed seeded permutation", role="resume")
    permutation_seed: int = _opt(0, "seed of the fixed pixel permutation", role="resume")
    normalize: str = _opt("dataset", "input normalization: dataset | none | MEAN,STD", role="resume")
    init: str = _opt("default", "weight init: default | xavier | normal:STD")
    model_options: dict = _opt({}, "model options as JSON, e.g. '{\"batch_norm\": true}'", role="resume")
    recipe: str | None = _opt(
        None,
        "start from the model's recipe: fast (CPU-friendly, the CLI's default) | reference (as published) | "
        "none (plain defaults); see `cnnlab recipes`",
    )
    device: str = _opt(
        "auto", "device: " + "|".join(DEVICES) + " (auto: cuda, then mps, then cpu; cuda:N: GPU N)", role="incidental"
    )
    precision: str = _opt(
        "fp32",
        "compute precision: " + "|".join(PRECISIONS) + " (autocast; auto: bf16 on a CPU "
        "that computes it natively, AVX-512 BF16 or AMX, else fp32)",
    )
    channels_last: bool = _opt(False, "use channels-last memory format")
    compile: bool = _opt(False, "torch.compile the model")
    seed: int = _opt(0, "random seed (init, order, augmentation, dropout)")
    deterministic: bool = _opt(False, "use deterministic algorithms (bitwise-repeatable runs)")
    out: str | None = _opt(
        None, "run folder, new or empty (default runs/<model>-<dataset>-<timestamp>)", role="incidental"
    )
    init_from: str | None = _opt(
        None, "start a new run from the weights of this run folder (its best.pt) or checkpoint file"
    )
    keep_checkpoints: str | None = _opt(
        None, "also keep checkpoints/epoch-NNN.pt after each epoch: all | N (the newest N)"
    )
    limit_train: int | None = _opt(None, "use only the first N training images", role="resume")
    limit_test: int | None = _opt(None, "use only the first N test images")
    val_split: int | None = _opt(
        None,
        "hold out N training images for validation (stratified by class, seeded by --seed): best.pt and "
        "--target-acc then select on them, and metrics report validation beside test",
        role="resume",
    )
    eval_every: int = _opt(1, "evaluate on the test split every N epochs (and after the last)")
    tta: bool = _opt(
        False,
        "test-time augmentation in every evaluation: average the outputs over each test image "
        "and its mirror image (clothes, objects) or its 1-pixel shifts (digits, characters)",
    )
    eval_batch_size: int = _opt(
        500, "batch size for evaluation (larger is faster, but holds more activations)", role="incidental"
    )
    target_acc: float | None = _opt(
        None, "stop once test accuracy (validation accuracy with --val-split) reaches this fraction (e.g. 0.992)"
    )
    progress: bool = _opt(True, "show progress bars (plain lines when not a terminal)", role="incidental")
    tensorboard: bool = _opt(
        False, "also log to TensorBoard in RUN/tensorboard (needs cnnlab[tensorboard])", role="incidental"
    )
    sync_bn: bool = _opt(False, "convert BatchNorm to SyncBatchNorm under torchrun")
    backend: str | None = _opt(
        None, "torch.distributed backend (default: nccl on CUDA, gloo on CPU)", role="incidental"
    )
    dist_timeout: float = _opt(
        300.0,
        "seconds a process waits for its peers in a collective before it stops with an "
        "error (under torchrun; a lost peer otherwise hangs the others)",
    )
    # Written by train, never given: where your own data and model came from, so the run can be reopened and
    # checked (a moved or changed dataset folder, a copied run whose model source was altered).
    data_origin: dict | None = _opt(
        None, "recorded: your own dataset's path, content sha256, classes and split", role="recorded"
    )
    model_sha256: str | None = _opt(
        None, "recorded: sha256 of your own model's source file, copied into RUN/model/", role="recorded"
    )

    if TYPE_CHECKING:  # set on every instance by the wrapped __init__ (`_remember_given`); not a dataclass field
        _given: tuple[str, ...] = field(init=False, repr=False, compare=False)

    # ---- resolution ----------------------------------------------------------------

    def given(self) -> dict[str, Any]:
        """The values this config was built with explicitly (all of them for a resolved config).

        `train(TrainConfig(model="lenet", lr=0.1))` is a request like `train(model="lenet", lr=0.1)`: the
        recipe fills in what was not given, even where a given value equals the field's default.
        """
        return {name: getattr(self, name) for name in self._given}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        check_keys(values, source)
        return cls(**values)

    def replace(self, **changes) -> TrainConfig:
        check_keys(changes, "option")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """Raise a one-line CnnlabError for the first bad value; return self."""
        # here: data and models import torch; the schema loads without it
        from cnnlab.data import list_datasets
        from cnnlab.data.imported import is_own_dataset
        from cnnlab.models import list_models
        from cnnlab.models.custom import is_custom

        # Before asdict, which copies model_options recursively: a 700-deep dict would exhaust the stack there.
        check_model_options(self.model_options)
        check_types(dataclasses.asdict(self))
        if self.model not in list_models() and not is_custom(self.model):
            raise unknown_choice("model", self.model, list_models(), also="or your own: FILE.py:NAME or MODULE:NAME")
        if self.dataset not in list_datasets() and not (self.data_origin or is_own_dataset(self.dataset)):
            raise unknown_choice(
                "dataset",
                self.dataset,
                list_datasets(),
                also="or your own: a folder, .npz, .csv or a name given with `cnnlab datasets add`",
            )
        if self.channels is not None and self.channels not in (1, 3):
            raise CnnlabError(f"channels must be 1 or 3, got {self.channels}")
        if self.image_size is not None and not 1 <= self.image_size <= MAX_RESIZE:
            raise CnnlabError(f"image_size must be from 1 to {MAX_RESIZE} pixels, got {self.image_size}")
        if not 0 < self.test_fraction < 1:
            raise CnnlabError(f"test_fraction must be a fraction in (0, 1), got {self.test_fraction}")
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("precision", PRECISIONS)):
            value = getattr(self, name)
            if value not in choices:
                raise unknown_choice(name, value, choices)
        check_device(self.device)
        if self.recipe is not None and self.recipe not in RECIPES and self.recipe not in record_recipes():
            raise unknown_choice("recipe", self.recipe, [*RECIPES, *record_recipes()])
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size", "step_size"):
            if getattr(self, name) <= 0:
                raise CnnlabError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.epochs > MAX_EPOCHS:
            raise CnnlabError(f"epochs={self.epochs} is more than {MAX_EPOCHS:,}; is that a typo?")
        for name in ("lr", "gamma", "dist_timeout"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise CnnlabError(f"{name} must be a finite positive number, got {getattr(self, name)}")
        if self.resize is not None and self.resize > MAX_RESIZE:
            raise CnnlabError(f"resize={self.resize} is more than {MAX_RESIZE} pixels a side")
        if (
            self.keep_checkpoints is not None
            and self.keep_checkpoints != "all"
            and not (self.keep_checkpoints.isdigit() and int(self.keep_checkpoints) > 0)
        ):
            raise CnnlabError(f"keep_checkpoints must be 'all' or a positive number, got {self.keep_checkpoints!r}")
        if self.val_split is not None and self.limit_train is not None and self.val_split >= self.limit_train:
            raise CnnlabError(
                f"val_split={self.val_split} leaves no training images of limit_train={self.limit_train}; "
                "hold out fewer"
            )
        if self.target_acc is not None and not 0 < self.target_acc <= 1:
            raise CnnlabError(f"target_acc must be a fraction in (0, 1], got {self.target_acc}")
        for name in ("momentum", "label_smoothing"):
            if not 0 <= getattr(self, name) < 1:
                raise CnnlabError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("weight_decay", "warmup_epochs"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise CnnlabError(f"{name} must be a finite number, 0 or more, got {getattr(self, name)}")
        for name in ("resize", "limit_train", "limit_test", "val_split"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise CnnlabError(f"{name} must be a positive integer, got {value}")
        for name in ("seed", "permutation_seed"):
            if not 0 <= getattr(self, name) <= MAX_SEED:
                raise CnnlabError(f"{name} must be an integer from 0 to {MAX_SEED:,}, got {getattr(self, name)}")
        if self.augment and self.seed > MAX_AUGMENT_SEED:
            raise CnnlabError(
                f"seed must be at most {MAX_AUGMENT_SEED:,} with augment (each step's augmentation is "
                f"seeded with seed * 1,000,003^2 + step, which torch takes only below 2^64), got {self.seed}"
            )
        parse_normalize(self.normalize)
        parse_init(self.init)
        if not isinstance(self.model_options, dict):
            raise CnnlabError(f"model_options must be a JSON object, got {self.model_options!r}")
        return self


MAX_EPOCHS = 100_000
MAX_RESIZE = 2048
# Seeds go to torch generators, which take them only below 2**64 (2**80 was a traceback): the usual 32-bit range.
MAX_SEED = 2**32 - 1
# With augment each step draws from a generator seeded with (seed * 1,000,003 + epoch) * 1,000,003 + step
# (data/batches.py): below 2**64 for every epoch and step only up to this seed (a larger one failed at step 1).
MAX_AUGMENT_SEED = 2**24 - 1


def _remember_given(init):
    """Wrap the dataclass __init__ so each config knows which fields it was given (see `given`)."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        object.__setattr__(self, "_given", tuple(names[: len(args)]) + tuple(kwargs))

    __init__.__doc__ = init.__doc__
    return __init__


# Deliberate: type checkers keep the dataclass's own __init__ signature, which the wrapper takes unchanged.
TrainConfig.__init__ = _remember_given(TrainConfig.__init__)  # type: ignore[method-assign]


def field_types() -> dict[str, str]:
    """Each field's annotation as written ("int", "float | None", ...)."""
    return {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}


def fields_with_role(role: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("role") == role)


# Derived from the fields' metadata (see the module docstring), in field order.
RESUME_KEYS = fields_with_role("resume")
SCHEDULE_KEYS = fields_with_role("schedule")
INCIDENTAL_KEYS = fields_with_role("incidental")
RECORDED_KEYS = fields_with_role("recorded")


def check_types(values: dict[str, Any]) -> None:
    """Each value has its field's type (a config file's `epochs: "two"` or `batch_size: true` is one line)."""
    types = field_types()
    for name, value in values.items():
        check_type(name, value, types[name])


def check_keys(values: dict[str, Any], source: str) -> None:
    known = TrainConfig.field_names()
    for key in values:
        if key not in known:
            raise CnnlabError(f"unknown {source} key {key!r:.60}{did_you_mean(key, known)}")


def parse_option(name: str, text: str) -> Any:
    """The value of option `name` from text, typed by its TrainConfig field (see `values.parse_typed`)."""
    return parse_typed(name, text, field_types()[name])


def record_recipes() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every model's record recipes: name -> (model, TrainConfig keys). A name belongs to one model."""
    from cnnlab.models import list_models, model_info  # here: the zoo imports torch, which --help does without

    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for model in list_models():
        for name, values in model_info(model).records.items():
            if name in found or name in RECIPES:  # a model file's mistake, not user input
                raise ValueError(f"record recipe {name!r} of {model} is already a recipe name")
            found[name] = (model, values)
    return found
