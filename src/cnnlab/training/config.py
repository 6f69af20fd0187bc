"""The typed training configuration and how it is resolved.

Precedence: field defaults, then the model's recipe (`recipe`; the CLI starts
from the model's fast recipe unless told otherwise), then a config file, then
explicit flags / keyword arguments. Unknown keys raise. The resolved
config is written into the run folder and into every checkpoint, and
`cnnlab train --config RUN/config.json` repeats the run.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError, did_you_mean, unknown_choice

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda", "mps")
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
    model: str = _opt("convnet", "model name (see `cnnlab models`)")
    dataset: str = _opt("mnist", "dataset name (see `cnnlab datasets`)")
    data_dir: str | None = _opt(None, "folder holding the dataset files (default: search the usual places)")
    epochs: int = _opt(3, "passes over the training set")
    batch_size: int = _opt(128, "global batch size in images (split across processes under torchrun)")
    lr: float = _opt(0.05, "peak learning rate")
    optimizer: str = _opt("sgd", "optimizer: " + "|".join(OPTIMIZERS))
    momentum: float = _opt(0.9, "SGD momentum (Adam: beta1)")
    nesterov: bool = _opt(False, "use Nesterov momentum with SGD")
    weight_decay: float = _opt(0.0, "L2 weight decay (decoupled for adamw)")
    schedule: str = _opt("constant", "learning-rate schedule: " + "|".join(SCHEDULES))
    warmup_epochs: float = _opt(0.0, "linear warm-up length in epochs (constant/step/cosine)")
    step_size: int = _opt(3, "epochs between lr drops for --schedule step")
    gamma: float = _opt(0.1, "lr factor at each drop for --schedule step")
    label_smoothing: float = _opt(0.0, "cross-entropy label smoothing, 0..1")
    resize: int | None = _opt(None, "resize images to NxN pixels per batch (e.g. 224 for AlexNet)")
    augment: bool = _opt(False, "random translate (and flip where it keeps the class) while training")
    permute_pixels: bool = _opt(False, "reorder every image's pixels by one fixed seeded permutation")
    permutation_seed: int = _opt(0, "seed of the fixed pixel permutation")
    normalize: str = _opt("dataset", "input normalization: dataset | none | MEAN,STD")
    init: str = _opt("default", "weight init: default | xavier | normal:STD")
    model_options: dict = _opt({}, "model options as JSON, e.g. '{\"batch_norm\": true}'")
    recipe: str | None = _opt(
        None, "start from the model's recipe: fast (CPU-friendly, the CLI's default) | reference (as published) | "
        "none (plain defaults); see `cnnlab recipes`")
    device: str = _opt("auto", "device: " + "|".join(DEVICES) + " (auto: cuda, then mps, then cpu; cuda:N: GPU N)")
    precision: str = _opt("fp32", "compute precision: " + "|".join(PRECISIONS) + " (autocast; auto: bf16 on a CPU "
                          "that computes it natively, AVX-512 BF16 or AMX, else fp32)")
    channels_last: bool = _opt(False, "use channels-last memory format")
    compile: bool = _opt(False, "torch.compile the model")
    seed: int = _opt(0, "random seed (init, order, augmentation, dropout)")
    deterministic: bool = _opt(False, "use deterministic algorithms (bitwise-repeatable runs)")
    out: str | None = _opt(None, "run folder, new or empty (default runs/<model>-<dataset>-<timestamp>)")
    init_from: str | None = _opt(None, "start a new run from the weights of this run folder (its best.pt) or checkpoint file")
    keep_checkpoints: str | None = _opt(None, "also keep checkpoints/epoch-NNN.pt after each epoch: all | N (the newest N)")
    limit_train: int | None = _opt(None, "use only the first N training images")
    limit_test: int | None = _opt(None, "use only the first N test images")
    val_split: int | None = _opt(
        None, "hold out N training images for validation (stratified by class, seeded by --seed): best.pt and "
        "--target-acc then select on them, and metrics report validation beside test")
    eval_every: int = _opt(1, "evaluate on the test split every N epochs (and after the last)")
    tta: bool = _opt(False, "test-time augmentation in every evaluation: average the outputs over each test image "
                     "and its mirror image (clothes, objects) or its 1-pixel shifts (digits, characters)")
    eval_batch_size: int = _opt(500, "batch size for evaluation (larger is faster, but holds more activations)")
    target_acc: float | None = _opt(None, "stop once test accuracy (validation accuracy with --val-split) reaches this "
                                    "fraction (e.g. 0.992)")
    progress: bool = _opt(True, "show progress bars (plain lines when not a terminal)")
    tensorboard: bool = _opt(False, "also log to TensorBoard in RUN/tensorboard (needs cnnlab[tensorboard])")
    sync_bn: bool = _opt(False, "convert BatchNorm to SyncBatchNorm under torchrun")
    backend: str | None = _opt(None, "torch.distributed backend (default: nccl on CUDA, gloo on CPU)")
    dist_timeout: float = _opt(300.0, "seconds a process waits for its peers in a collective before it stops with an "
                               "error (under torchrun; a lost peer otherwise hangs the others)")

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
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "TrainConfig":
        check_keys(values, source)
        return cls(**values)

    def replace(self, **changes) -> "TrainConfig":
        check_keys(changes, "option")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        """Raise a one-line CnnlabError for the first bad value; return self."""
        from cnnlab.data import list_datasets
        from cnnlab.models import list_models

        # Before asdict, which copies model_options recursively: a 700-deep dict would exhaust the stack there.
        check_model_options(self.model_options)
        check_types(dataclasses.asdict(self))
        if self.model not in list_models():
            raise unknown_choice("model", self.model, list_models())
        if self.dataset not in list_datasets():
            raise unknown_choice("dataset", self.dataset, list_datasets())
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
        if self.keep_checkpoints is not None and self.keep_checkpoints != "all" and not (
                self.keep_checkpoints.isdigit() and int(self.keep_checkpoints) > 0):
            raise CnnlabError(f"keep_checkpoints must be 'all' or a positive number, got {self.keep_checkpoints!r}")
        if self.val_split is not None and self.limit_train is not None and self.val_split >= self.limit_train:
            raise CnnlabError(f"val_split={self.val_split} leaves no training images of limit_train={self.limit_train}; "
                              "hold out fewer")
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
            raise CnnlabError(f"seed must be at most {MAX_AUGMENT_SEED:,} with augment (each step's augmentation is "
                              f"seeded with seed * 1,000,003^2 + step, which torch takes only below 2^64), got {self.seed}")
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
_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "dict": (dict,)}


def _remember_given(init):
    """Wrap the dataclass __init__ so each config knows which fields it was given (see `given`)."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        object.__setattr__(self, "_given", tuple(names[: len(args)]) + tuple(kwargs))

    __init__.__doc__ = init.__doc__
    return __init__


TrainConfig.__init__ = _remember_given(TrainConfig.__init__)


def check_types(values: dict[str, Any]) -> None:
    """Each value has its field's type (a config file's `epochs: "two"` or `batch_size: true` is one line)."""
    fields = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    for name, value in values.items():
        kind = fields[name].replace(" | None", "").strip()
        if value is None and "None" in fields[name]:
            continue
        if not isinstance(value, _TYPES[kind]) or (isinstance(value, bool) and kind != "bool"):
            if name == "keep_checkpoints" and isinstance(value, int) and not isinstance(value, bool):
                continue  # `keep_checkpoints: 3` in YAML; normalised by the caller
            raise CnnlabError(f"{name} must be {'a number' if kind == 'float' else 'an integer' if kind == 'int' else 'true or false' if kind == 'bool' else 'a ' + kind}, "
                              f"got {value!r}")


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_EXAMPLES = {"int": "3", "float": "0.01", "bool": "true", "dict": '{"batch_norm": true}', "str": "x"}


def parse_option(name: str, text: str) -> Any:
    """The value of option `name` from text, typed by its TrainConfig field: the one parser of command-line
    flags, `--set name=value` and sweep axes. `none`/`null` is None where the field allows it."""
    kind = {f.name: f.type for f in dataclasses.fields(TrainConfig)}[name]
    base = kind.replace(" | None", "").strip()
    if "None" in kind and base != "str" and text.lower() in ("none", "null"):
        return None
    try:
        if base == "int":
            return int(text)
        if base == "float":
            return float(text)
        if base == "bool":
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        if base == "dict":
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError
            return value
    except ValueError:
        raise CnnlabError(f"{name}={text!r}: {name} takes {'an' if base == 'int' else 'a'} {base} value, "
                          f"e.g. {name}={_EXAMPLES[base]}") from None
    return text


def check_memory(config: TrainConfig, spec) -> None:
    """Refuse a batch and resize whose inputs alone would not fit in this machine's memory.

    A rough floor: float32 inputs of the larger batch, times 8 for the activations of even a small net.
    """
    size = config.resize or spec.image_size
    need = max(config.batch_size, config.eval_batch_size) * spec.channels * size * size * 4 * 8
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > have:
        raise CnnlabError(
            f"batches of {max(config.batch_size, config.eval_batch_size)} images at {size}x{size} need about "
            f"{need / 2**30:.0f} GiB, more than this machine's {have / 2**30:.0f} GiB; lower resize or batch_size"
        )


def check_keys(values: dict[str, Any], source: str) -> None:
    known = TrainConfig.field_names()
    for key in values:
        if key not in known:
            raise CnnlabError(f"unknown {source} key {key!r}{did_you_mean(key, known)}")


def parse_normalize(value: str) -> tuple[float, float] | str:
    """'dataset' | 'none' | (mean, std)."""
    if value in ("dataset", "none"):
        return value
    try:
        mean, std = (float(v) for v in value.split(","))
    except ValueError:
        raise CnnlabError(f"--normalize must be 'dataset', 'none' or MEAN,STD (e.g. 0.5,0.5), got {value!r}") from None
    if std <= 0:
        raise CnnlabError(f"--normalize STD must be positive, got {std}")
    return mean, std


def parse_init(value: str) -> tuple[str, float | None]:
    """'default' | 'xavier' | ('normal', std)."""
    if value in ("default", "xavier"):
        return value, None
    if value.startswith("normal:"):
        try:
            std = float(value.split(":", 1)[1])
            if std > 0:
                return "normal", std
        except ValueError:
            pass
    raise CnnlabError(f"--init must be 'default', 'xavier' or normal:STD (e.g. normal:0.01), got {value!r}")


_CUDA_INDEX = re.compile(r"cuda:[0-9]{1,4}")


def check_device(name: Any) -> str:
    """The one check of a device name: train's --device, eval's and inspect's, and `load_run(device=...)`.

    auto|cpu|cuda|mps, or cuda:N for one GPU of several; whether it is there is `pick_device`'s to say.
    """
    if not isinstance(name, str):
        raise CnnlabError(f"device must be a name ({'|'.join(DEVICES)} or cuda:N), got {name!r:.60}")
    if name not in DEVICES and not _CUDA_INDEX.fullmatch(name):
        raise unknown_choice("device", name, [*DEVICES, "cuda:N"])
    return name


# Bounds on a config file, far above any real one (cnnlab's own are under 2 KB, model_options 1 level deep):
# a small hostile file must not take the stack, the memory or minutes before the first check.
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 32  # nested mappings/lists
MAX_CONFIG_NODES = 10_000  # values in all


def check_nesting(value: Any, source: str) -> None:
    """Refuse a value nested deeper than MAX_CONFIG_DEPTH or holding more than MAX_CONFIG_NODES values.

    Iterative, so it cannot itself run out of stack on the very input it guards against.
    """
    stack, nodes = [(value, 1)], 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_CONFIG_NODES:
            raise CnnlabError(f"{source} holds more than {MAX_CONFIG_NODES:,} values; is it a config file?")
        if isinstance(item, (dict, list, tuple)):
            if depth > MAX_CONFIG_DEPTH:
                raise CnnlabError(f"{source} is nested more than {MAX_CONFIG_DEPTH} levels deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def check_model_options(options: Any) -> None:
    """A model_options mapping holds option names (strings) and values of bounded size (not a dict: `check_types`)."""
    if not isinstance(options, dict):
        return
    check_nesting(options, "model_options")
    for key in options:
        if not isinstance(key, str):
            raise CnnlabError(f"model_options keys must be option names (strings), got {key!r:.60}")


def _parse_yaml(text: str, source: str) -> Any:
    """YAML without aliases, depth- and size-bounded while it is composed, before anything is constructed.

    An alias makes the constructed value a graph: nine nested aliases in 1 KB expand to 10^9 values
    ("billion laughs"). cnnlab's configs never need one, so an alias is refused outright.
    """
    import yaml

    class Loader(yaml.SafeLoader):
        depth = nodes = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise CnnlabError(f"{source} uses a YAML alias (line {mark.line + 1}); cnnlab config files take "
                                  "plain values only: write the value out")
            self.nodes += 1
            if self.nodes > MAX_CONFIG_NODES:
                raise CnnlabError(f"{source} holds more than {MAX_CONFIG_NODES:,} values; is it a config file?")
            if self.check_event(yaml.ScalarEvent):
                return super().compose_node(parent, index)
            self.depth += 1  # a mapping or list: levels counted as `check_nesting` counts them
            if self.depth > MAX_CONFIG_DEPTH:
                raise CnnlabError(f"{source} is nested more than {MAX_CONFIG_DEPTH} levels deep")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    loader = Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_config_text(path: Path) -> str:
    """The text of a config file: a regular file (a link to one is followed), UTF-8, at most MAX_CONFIG_BYTES.

    Read through `read_text` at the link's target, so a FIFO, a device (a link to /dev/zero) or a huge file
    is one line at once instead of a hang or a read without end.
    """
    from cnnlab.files import read_text

    real = os.path.realpath(path)
    try:
        return read_text(real, limit=MAX_CONFIG_BYTES)
    except CnnlabError as err:  # "'/real/path' is a FIFO, ...": said of the name the user gave
        what = str(err)
        if not what.startswith(repr(real)):
            raise CnnlabError(f"cannot read config file {str(path)!r}: {what}") from None
        target = "" if real == os.path.abspath(path) else f" (a link to {real!r})"
        raise CnnlabError(f"config file {str(path)!r}{target}{what[len(repr(real)):]}") from None
    except OSError as err:
        raise CnnlabError(f"cannot read config file {str(path)!r}: {err.strerror}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict of TrainConfig keys."""
    path = Path(path)
    text = _read_config_text(path)
    source = f"config file {str(path)!r}"
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            values = _parse_yaml(text, source)
    except CnnlabError:
        raise
    except RecursionError:  # JSON nested some thousand levels: past the bound below, whose message it takes
        raise CnnlabError(f"{source} is nested more than {MAX_CONFIG_DEPTH} levels deep") from None
    except Exception as err:  # noqa: BLE001 - any parse error becomes one line
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CnnlabError(f"cannot parse config file {str(path)!r}: {first_line}") from None
    if not isinstance(values, dict):
        raise CnnlabError(f"config file {str(path)!r} must hold a mapping of option names to values")
    check_nesting(values, source)
    # A run folder's config.json carries provenance beside the options; it is not configuration.
    values = dict(values.get("config", values))
    check_keys(values, f"config file {path.name}")
    check_types(values)
    # A config file says what to train, not where: repeating a run must never write into that run's folder.
    values.pop("out", None)
    return values


def saved_config(values: dict[str, Any], source: str) -> TrainConfig:
    """A run's saved config (a checkpoint's `config`) as a TrainConfig, checked exactly as `train` checks a
    requested one (`validate`, then the model's input sizes) before anything is built from it.

    The file may come from anywhere: a resize of -28 or 10**6 or a seed of 2**80 is one line here, not a
    traceback, or gigabytes allocated, further on.
    """
    from cnnlab.data.catalog import get_spec
    from cnnlab.models.registry import check_input_size

    try:
        config = TrainConfig.from_dict(values, "saved config").validate()
        check_input_size(config.model, config.resize or get_spec(config.dataset).image_size)
    except CnnlabError as err:
        raise CnnlabError(f"{source} holds a config cnnlab cannot use: {err}") from None
    return config


def resolve_config(
    overrides: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    base: TrainConfig | None = None,
) -> TrainConfig:
    """defaults < recipe < config file < overrides, validated.

    A fresh config starts from the model's recipe (the fast one unless `recipe` is given); with
    `base` (a resumed run's config) a recipe is applied only when asked for again.
    """
    overrides = dict(overrides or {})
    check_keys(overrides, "option")
    check_types(overrides)
    file_values = load_config_file(config_file) if config_file else {}
    layered = {**file_values, **overrides}
    if isinstance(layered.get("keep_checkpoints"), int):
        layered["keep_checkpoints"] = str(layered["keep_checkpoints"])
    config = base or TrainConfig(recipe=DEFAULT_RECIPE)
    recipe = layered.get("recipe", None if base else config.recipe)
    if recipe in record_recipes():  # a record names its model: `cnnlab train --recipe mnist-99.2`
        model = record_recipes()[recipe][0]
        if layered.get("model", model) != model:
            raise CnnlabError(f"recipe {recipe!r} is a record recipe of model {model!r}, not {layered['model']!r}; "
                              f"drop the model or use --recipe fast")
        layered.setdefault("model", model)
    if recipe is not None:
        config = dataclasses.replace(config, **recipe_values(layered.get("model", config.model), recipe))
    return dataclasses.replace(config, **layered).validate()


def recipe_values(model: str, recipe: str) -> dict[str, Any]:
    """The TrainConfig values of a model's named recipe."""
    from cnnlab.models import list_models, model_info

    records = record_recipes()
    if recipe not in RECIPES and recipe not in records:
        raise unknown_choice("recipe", recipe, [*RECIPES, *records])
    if model not in list_models():
        raise unknown_choice("model", model, list_models())
    if recipe == "none":
        return {}
    info = model_info(model)
    if recipe in records:
        values = dict(info.records[recipe])
    else:
        values = dict(info.reference_recipe if recipe == "reference" else info.fast_recipe)
    check_keys(values, f"{model} {recipe} recipe")
    return values


def record_recipes() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every model's record recipes: name -> (model, TrainConfig keys). A name belongs to one model."""
    from cnnlab.models import list_models, model_info

    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for model in list_models():
        for name, values in model_info(model).records.items():
            if name in found or name in RECIPES:  # a model file's mistake, not user input
                raise ValueError(f"record recipe {name!r} of {model} is already a recipe name")
            found[name] = (model, values)
    return found
