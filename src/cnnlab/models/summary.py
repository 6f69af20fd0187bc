"""Layer-by-layer model summary: output shapes, parameters and MACs per layer.

Counting and rendering are separate: `summarize` runs one forward pass of a single
image with forward hooks on every leaf module (removed afterwards) under
`torch.utils.flop_counter.FlopCounterMode`, whose per-module counts give each
layer's MACs (FLOPs / 2; conv and matmul work only). `render_summary` turns the
numbers into a table. Both work on a model built on the meta device, which costs
no memory or time even for VGG-11, and on any nn.Module (a user's own network included):
a forward that returns a tuple or dict gives its first tensor's shape.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

MB = 1_000_000


@dataclass(frozen=True)
class LayerStats:
    path: str  # module path, e.g. "features.0"
    type: str  # class name, e.g. "Conv2d"
    input_shape: tuple[int, ...]  # of the first tensor argument; () when there is none
    output_shape: tuple[int, ...]  # for a batch of one image
    params: int  # parameters the layer itself holds
    macs: int  # multiply-accumulates per image


@dataclass(frozen=True)
class ModelSummary:
    model: str  # class name
    input_shape: tuple[int, ...]  # (1, C, H, W)
    output_shape: tuple[int, ...]
    layers: list[LayerStats]  # leaf modules in the order they ran
    total_params: int
    trainable_params: int
    macs: int  # per image
    flops: int  # per image, 2 x MACs
    batch_size: int  # the batch the activation estimate is for
    activation_bytes: int  # input + every layer's output for `batch_size` images (kept for backward)
    model_bytes: int  # parameters and buffers

    @property
    def activation_mb(self) -> float:
        return self.activation_bytes / MB

    @property
    def model_mb(self) -> float:
        return self.model_bytes / MB

    def __str__(self) -> str:
        """The table `cnnlab summary` prints: `print(cnnlab.summarize(model, 28, 1))` in a notebook."""
        return render_summary(self)


def _shape(value: object) -> tuple[int, ...]:
    """The shape of a tensor, or of the first tensor in a tuple, list or dict (a model returning extras); ()."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else ()
    return next((tuple(v.shape) for v in items if isinstance(v, torch.Tensor)), ())


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def _probe(model: nn.Module, input_size: int, in_channels: int) -> torch.Tensor:
    """One image of zeros on the model's device and in its dtype."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return torch.zeros(1, in_channels, input_size, input_size, device=device, dtype=dtype)


def _run_counted(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, FlopCounterMode]:
    """Forward `x` in eval mode without autograd under a FlopCounterMode; restore the mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = model(x)
    finally:
        model.train(was_training)
    return out, counter


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside torch.compile's and DDP's wrappers."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def count_macs(model: nn.Module, input_size: int, in_channels: int) -> int:
    """Multiply-accumulates of one forward pass of one image (conv and matmul work).

    Counted from the shapes each conv and linear layer sees, by forward hooks: the figure `summarize`
    gets from FlopCounterMode (a test checks every model), without that mode's first use, which
    imports torch._dynamo (about a second) at the end of every training run.
    """
    model = _unwrap(model)
    total = 0

    def count(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        elif isinstance(module, nn.modules.conv._ConvNd):  # the only other layers hooked below
            total += output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)

    handles = [
        m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(_probe(model, input_size, in_channels))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def summarize(model: nn.Module, input_size: int, in_channels: int, batch_size: int = 1) -> ModelSummary:
    """Trace one image through `model` and collect per-layer and total counts."""
    model = _unwrap(model)
    outputs: dict[str, tuple[tuple[int, ...], torch.Tensor]] = {}
    leaves = {module: path for path, module in model.named_modules() if path and _is_leaf(module)}

    def record(module: nn.Module, args: tuple, output) -> None:
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        outputs[leaves[module]] = (tuple(first.shape) if first is not None else (), output)  # first-call order

    handles = [module.register_forward_hook(record) for module in leaves]
    try:
        x = _probe(model, input_size, in_channels)
        out, counter = _run_counted(model, x)
    finally:
        for handle in handles:
            handle.remove()

    # FlopCounterMode names a module "<RootClass>.<path>"; its counts include the module's children.
    flops_by_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__
    modules = dict(model.named_modules())
    layers = []
    for path, (input_shape, output) in outputs.items():
        module = modules[path]
        shape = _shape(output)
        params = sum(p.numel() for p in module.parameters())
        layers.append(
            LayerStats(
                path, type(module).__name__, input_shape, shape, params, flops_by_module.get(f"{root}.{path}", 0) // 2
            )
        )

    tensors = [x, *(o for _, o in outputs.values() if isinstance(o, torch.Tensor))]
    per_image_bytes = sum(t.numel() * t.element_size() for t in tensors)
    macs = counter.get_total_flops() // 2
    params = list(model.parameters())
    return ModelSummary(
        model=root,
        input_shape=tuple(x.shape),
        output_shape=_shape(out),
        layers=layers,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        macs=macs,
        flops=2 * macs,
        batch_size=batch_size,
        activation_bytes=per_image_bytes * batch_size,
        model_bytes=sum(t.numel() * t.element_size() for t in (*params, *model.buffers())),
    )


# ---- rendering ----------------------------------------------------------------------
def format_count(n: float) -> str:
    """1234 -> '1.2 K', 46_764_746 -> '46.8 M' (Lightning's style)."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {suffix}"
    return f"{n:g}"


def render_table(header: list[str], rows: list[list[str]], right: Collection[int] = ()) -> str:
    """Plain text columns; the columns in `right` are right-aligned (numbers)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def render_summary(summary: ModelSummary, name: str | None = None) -> str:
    """The layer table and the totals, as text."""
    rows = [
        [layer.path, layer.type, str(layer.output_shape), f"{layer.params:,}", format_count(layer.macs)]
        for layer in summary.layers
    ]
    table = render_table(["layer", "type", "output shape", "params", "MACs"], rows, right={3, 4})
    totals = [
        f"model: {name or summary.model}, input {summary.input_shape}, output {summary.output_shape}",
        f"trainable params: {summary.trainable_params:,} ({format_count(summary.trainable_params)})",
        f"total params:     {summary.total_params:,} ({format_count(summary.total_params)})",
        f"MACs per image:   {summary.macs:,} ({format_count(summary.macs)})",
        f"FLOPs per image:  {summary.flops:,} ({format_count(summary.flops)}; 2 x MACs, conv and linear layers)",
        f"activations:      {summary.activation_mb:,.2f} MB for a batch of {summary.batch_size} "
        "(input and every layer output, kept for backward)",
        f"model size:       {summary.model_mb:,.2f} MB (parameters and buffers)",
    ]
    return table + "\n\n" + "\n".join(totals)
