"""Attribution maps with captum: which input pixels a prediction rests on.

Captum (a well-kept PyTorch interpretability library) does the attribution; this
module picks the layer and target, brings every map to the model's input size and
draws it over the image. captum is an optional extra, imported only here.

- gradcam: LayerGradCam on a conv layer (the last Conv2d to run by default), ReLU'd and
  upsampled bilinearly to the input size.
- integrated-gradients: IntegratedGradients from a black image (the run's preprocessing
  of all-zero pixels), summed over colour channels; signed.
- saliency: |d output / d input| (Saliency), max over colour channels.
- gradient-x-input: input times d output / d input (InputXGradient), summed over colour channels; signed.

Grad-CAM can be degenerate: in a sigmoid net with average pooling such as LeNet the gradient-weighted sum
of the last conv layer's maps is often negative everywhere, so its ReLU leaves nothing; a layer whose map is
1x1 at this input size gives a constant. `attribute_checked` detects such a map (all zero, constant or not
finite), says why, and falls back to gradient x input (then plain saliency), which are not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import nn

from cnnlab.errors import CnnlabError, unknown_choice
from cnnlab.extras import require_extra
from cnnlab.inspect.grid import save_figure
from cnnlab.inspect.inputs import is_permuted, model_view, to_unpermuted, unpermuted_view
from cnnlab.inspect.layers import capture_outputs, conv_layers, get_layer, last_conv_layer

METHODS = ("gradcam", "integrated-gradients", "saliency", "gradient-x-input")
SIGNED = {"integrated-gradients", "gradient-x-input"}  # methods whose maps have both signs
LABELS = {
    "gradcam": "Grad-CAM",
    "integrated-gradients": "integrated gradients",
    "saliency": "saliency |gradient|",
    "gradient-x-input": "gradient × input",
}
# What a degenerate map falls back to: methods that attribute to the input pixels themselves.
FALLBACK = {"gradcam": "gradient-x-input", "integrated-gradients": "gradient-x-input", "gradient-x-input": "saliency"}
IG_STEPS = 32  # integration steps: plenty for maps that are only looked at
IG_BATCH = 16  # images per forward pass (at least the inputs): bounds memory on 224x224 models


def require_captum():
    """captum.attr, or a one-line error that says how to install it."""
    return require_extra("inspect", "saliency maps")["captum.attr"]


def resolve_target(value: str | int | None, classes: Sequence[str]) -> int | None:
    """A class given by index ("3") or by name ("Sneaker", any case) -> its index."""
    if value is None:
        return None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(classes):
            raise CnnlabError(
                f"--target {index} is out of range: the run has {len(classes)} classes (0..{len(classes) - 1})"
            )
        return index
    by_name = {c.lower(): i for i, c in enumerate(classes)}
    if text.lower() not in by_name:
        raise unknown_choice("--target class", text, classes)
    return by_name[text.lower()]


def check_method(method: str | None, model: nn.Module | None = None) -> str:
    """A valid method name; None picks gradcam, or integrated-gradients for a model without conv layers."""
    if method is None:
        return "gradcam" if model is None or conv_layers(model) else "integrated-gradients"
    if method not in METHODS:
        raise unknown_choice("--method", method, METHODS)
    return method


def gradcam_layer(model: nn.Module, x: torch.Tensor, layer: str | None, model_name: str | None = None) -> str:
    """The layer Grad-CAM looks at: `layer` (checked: it must output a spatial map) or the last Conv2d to run."""
    label = model_name or type(model).__name__
    if layer is None:
        layer = last_conv_layer(model, x[:1])
        if layer is None:
            raise CnnlabError(
                f"--method gradcam needs a conv layer and {label} has none; "
                "use --method saliency or --method integrated-gradients"
            )
        return layer
    get_layer(model, layer, model_name)
    _, captured = capture_outputs(model, x[:1], [layer])
    if layer not in captured or captured[layer].dim() != 4:
        shape = tuple(captured[layer].shape) if layer in captured else "nothing"
        raise CnnlabError(
            f"--layer {layer!r} outputs {shape}, not a (N, C, H, W) feature map; Grad-CAM needs a conv "
            "layer or a block that outputs one (see `cnnlab summary`)"
        )
    return layer


def attribute(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    method: str | None = "gradcam",
    layer: str | None = None,
    baseline: torch.Tensor | None = None,
    model_name: str | None = None,
) -> torch.Tensor:
    """Attribution maps (N, S, S) for preprocessed inputs `x` (N, C, S, S) and target class(es).

    gradcam and saliency maps are >= 0; integrated-gradients maps are signed.
    """
    attr = require_captum()
    method = check_method(method, model)
    was_training = model.training
    model.eval()  # BatchNorm and dropout as at test time
    try:
        x = x.detach().clone().requires_grad_()
        if method == "gradcam":
            module = get_layer(model, gradcam_layer(model, x, layer, model_name))
            maps = attr.LayerGradCam(model, module).attribute(x, target=target, relu_attributions=True)
            maps = attr.LayerAttribution.interpolate(maps, tuple(x.shape[-2:]), "bilinear")[:, 0]
        elif method == "saliency":
            maps = attr.Saliency(model).attribute(x, target=target, abs=True).amax(1)
        elif method == "gradient-x-input":
            maps = attr.InputXGradient(model).attribute(x, target=target).sum(1)
        else:
            baseline = torch.zeros_like(x) if baseline is None else baseline.expand_as(x)
            maps = (
                attr.IntegratedGradients(model)
                .attribute(
                    x,
                    baselines=baseline,
                    target=target,
                    n_steps=IG_STEPS,
                    internal_batch_size=max(IG_BATCH, len(x)),
                )
                .sum(1)
            )
    finally:
        model.train(was_training)
    return maps.detach().float()


def degenerate(maps: torch.Tensor) -> str | None:
    """Why attribution maps (N, H, W) show nothing (any one all zero, constant or not finite), or None."""
    for one in maps.detach().float():
        if not torch.isfinite(one).all():
            return "not finite (NaN or infinity)"
        low, high = float(one.min()), float(one.max())
        peak = max(abs(low), abs(high))
        if peak == 0.0:
            return "all zero"
        if high - low <= 1e-6 * peak:
            return "constant over the image"
    return None


def _why(method: str, problem: str, layer: str | None) -> str:
    where = f" at {layer}" if layer else ""
    if method != "gradcam":
        return f"{LABELS[method]} is {problem} for this input"
    if problem == "all zero":
        return (
            f"Grad-CAM{where} is all zero for this input: the gradient-weighted sum of the layer's maps is negative "
            "everywhere and Grad-CAM keeps only its positive part (typical of sigmoid nets with average pooling "
            "such as LeNet)"
        )
    if problem == "constant over the image":
        return f"Grad-CAM{where} is constant over the image: the layer's map is too small (or flat) to locate anything"
    return f"Grad-CAM{where} is {problem} for this input"


@dataclass
class Attribution:
    maps: torch.Tensor  # (N, S, S)
    method: str  # the method whose maps these are
    requested: str  # the method asked for
    layer: str | None  # Grad-CAM's layer when Grad-CAM gave the maps
    reason: str | None  # why the requested method was not used; None when it was

    @property
    def signed(self) -> bool:
        return self.method in SIGNED

    @property
    def note(self) -> str | None:
        """One line for a reader: why, and what is shown instead."""
        if self.reason is None or self.method == self.requested:
            return self.reason
        return f"{self.reason}; showing {LABELS[self.method]} ({self.method}) instead"


def attribute_checked(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    method: str | None = "gradcam",
    layer: str | None = None,
    baseline: torch.Tensor | None = None,
    model_name: str | None = None,
) -> Attribution:
    """`attribute`, falling back while the maps are degenerate (`degenerate`): Grad-CAM and integrated gradients
    to gradient x input, that to plain saliency. The reason names the first method that failed."""
    requested = check_method(method, model)
    current, reason = requested, None
    if current == "gradcam":
        layer = gradcam_layer(model, x, layer, model_name)
    while True:
        maps = attribute(model, x, target, current, layer if current == "gradcam" else None, baseline, model_name)
        problem = degenerate(maps)
        if problem is None or current not in FALLBACK:
            if problem is not None and reason is None:
                reason = _why(current, problem, None)  # nothing left to fall back to: said, and shown as it is
            return Attribution(maps, current, requested, layer if current == "gradcam" else None, reason)
        reason = reason or _why(current, problem, layer if current == "gradcam" else None)
        current = FALLBACK[current]


# ---- figures --------------------------------------------------------------------------


def _gray(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) or (H, W, 3) for imshow."""
    picture = image.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()
    return picture[:, :, 0] if picture.shape[2] == 1 else picture


def _scaled(saliency: torch.Tensor, signed: bool) -> np.ndarray:
    values = saliency.detach().cpu().float().numpy()
    peak = float(np.abs(values).max()) or 1.0
    return values / peak if signed else np.clip(values, 0, None) / peak


def _overlay(ax, image: torch.Tensor, saliency: np.ndarray) -> None:
    picture = _gray(image)
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    heat = colormaps["jet"](np.clip(saliency, 0, 1))
    heat[..., 3] = 0.6 * np.clip(saliency, 0, 1)  # transparent where there is no attribution
    ax.imshow(heat, interpolation="bilinear")


def saliency_figure(rows: list[dict], method: str, title: str) -> Figure:
    """One row per class: input, attribution map, overlay (+ un-permuted input and overlay).

    Each row dict: caption, image (C, S, S) in [0, 1], map (S, S); optional unpermuted_image, unpermuted_map.
    """
    signed = method in SIGNED
    columns = 5 if "unpermuted_map" in rows[0] else 3
    fig = Figure(figsize=(2.1 * columns, 2.3 * len(rows) + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), columns, squeeze=False))
    for row_axes, row in zip(axes, rows):
        scaled = _scaled(row["map"], signed)
        picture = _gray(row["image"])
        row_axes[0].imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        row_axes[0].set_title("as the model saw it", fontsize=8)
        image = row_axes[1].imshow(
            scaled, cmap="RdBu_r" if signed else "inferno", vmin=-1 if signed else 0, vmax=1, interpolation="nearest"
        )
        fig.colorbar(image, ax=row_axes[1], fraction=0.046, pad=0.02)
        row_axes[1].set_title(f"{method}: {row['caption']}", fontsize=8)
        _overlay(row_axes[2], row["image"], scaled)
        row_axes[2].set_title("overlay", fontsize=8)
        if columns == 5:
            restored = _scaled(row["unpermuted_map"], signed)
            plain = _gray(row["unpermuted_image"])
            row_axes[3].imshow(plain, cmap="gray" if plain.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            row_axes[3].set_title("un-permuted", fontsize=8)
            _overlay(row_axes[4], row["unpermuted_image"], restored)
            row_axes[4].set_title("overlay, un-permuted", fontsize=8)
        for ax in row_axes:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    return fig


def _short(reason: str | None) -> str:
    """The first clause of a reason, for a figure title."""
    return (reason or "").split(":")[0]


def write_saliency(
    trained,
    inputs,
    out_dir: str | Path,
    method: str | None = None,
    target: str | int | None = None,
    layer: str | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """saliency-<method>-<input>.png per input: maps for the predicted class and, if given, `target`.

    `method` None: gradcam, or integrated-gradients for a model without conv layers (an MLP). Where the
    maps are degenerate (`attribute_checked`) the figure shows the fallback, its title names the method
    used and why, and `log` hears one line per input.
    """

    require_captum()
    classes, model, model_name = trained.classes, trained.model, trained.config.model
    method = check_method(method, model)
    if layer is not None and method != "gradcam":
        raise CnnlabError(
            f"--layer chooses Grad-CAM's layer; --method {method} attributes to the input pixels, "
            "drop --layer or use --method gradcam"
        )
    target_index = resolve_target(target, classes)
    transform = trained.transform()
    x = transform(inputs.pixels)
    with torch.no_grad():
        probs = model(x).float().softmax(1)
    if method == "gradcam":
        layer = gradcam_layer(model, x, layer, model_name)
    baseline = transform(torch.zeros_like(inputs.pixels[:1]))  # a black image, preprocessed like the input
    views, plain_views = model_view(trained, inputs.pixels), unpermuted_view(trained, inputs.pixels)
    paths = []
    for i, (name, tag) in enumerate(zip(inputs.names, inputs.tags)):
        predicted = int(probs[i].argmax())
        wanted = [predicted] + ([target_index] if target_index is not None and target_index != predicted else [])
        result = attribute_checked(
            model, x[i : i + 1].repeat(len(wanted), 1, 1, 1), torch.tensor(wanted), method, layer, baseline, model_name
        )
        maps, used = result.maps, result.method
        if result.note and log is not None:
            log(f"{name}: {result.note}")
        rows = []
        for k, cls in enumerate(wanted):
            kind = "predicted" if cls == predicted else "target"
            row = {"caption": f"{kind} {classes[cls]} {probs[i, cls]:.0%}", "image": views[i], "map": maps[k]}
            if is_permuted(trained):
                row["unpermuted_image"] = plain_views[i]
                row["unpermuted_map"] = to_unpermuted(trained, maps[k][None, None])[0, 0]
            rows.append(row)
        truth = "" if inputs.labels is None else f", true {classes[int(inputs.labels[i])]}"
        where = f" at {result.layer}" if used == "gradcam" else ""
        fell_back = f" ({LABELS[method]} fell back: {_short(result.reason)})" if used != method else ""
        title = f"{model_name} on {name}: {used}{where}{fell_back}{truth}"
        paths.append(save_figure(saliency_figure(rows, used, title), Path(out_dir) / f"saliency-{method}-{tag}.png"))
    return paths
