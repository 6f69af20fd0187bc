"""Explain one value of a feature map: the computation that produced it, from the layer's real input.

CNN Explainer (Wang et al., 2020) animates this for one fixed Tiny VGG; here it is for any network and
input. Forward hooks capture the layer's input and output on the actual preprocessed image, and the value
at (channel, y, x) is computed again from that input and the layer's weights:

- Conv2d (stride, padding, dilation, groups): the input patch, the kernel, their element-wise products per
  input channel and their sum, plus the bias. A wide layer sends the MAX_FULL_CHANNELS input channels that
  contribute most in full and the others as one sum (and says so), which bounds the answer.
- MaxPool2d, AvgPool2d and the adaptive pools: the window and its max or mean.
- BatchNorm2d: (v - running mean) / sqrt(running var + eps) * weight + bias.
- an activation (ReLU, sigmoid, ...): f(v); dropout and Identity pass the value through.
- a residual block (`cnnlab.models.resnet`'s Residual and BasicBlock): out = relu(branch + shortcut), with
  the branch's last conv (and a 1x1 conv shortcut) explained in turn.
- a concatenation (the Inception blocks): which branch produced the channel, then that branch's last conv.
- another container (a Sequential): the last conv or pool in it, followed to the container's output.

After the layer, the modules that take its output directly follow as steps while they keep the pixel's
meaning (BatchNorm, the activation, the one pooling window that holds the pixel), so a conv's value is
followed to what the next layer sees: conv -> max-pool -> ReLU in convnet, conv -> sigmoid -> avg-pool in LeNet.

`output` is the recomputed value and `actual` the layer's real output there; they agree to float precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.inspect.layers import get_layer
from cnnlab.models.inception import Inception, InceptionA
from cnnlab.models.resnet import BasicBlock, Residual

MAX_FULL_CHANNELS = 16  # input channels of a conv sent with kernel, patch and products; the rest are summed
MAX_GRID_SIDE = 32  # a kernel or pooling window wider than this is summarized, not sent number by number
MAX_STEPS = 8  # modules followed after the layer
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.LogSigmoid,
)
PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.AlphaDropout)
ELEMENTWISE = (nn.BatchNorm2d, *ACTIVATIONS, *PASS_THROUGH)
RESIDUAL_BLOCKS = (Residual, BasicBlock)
CONCAT_BLOCKS = (InceptionA, Inception)


@dataclass(eq=False)
class _Call:
    """One module call of the recorded forward pass: what went in and came out (image 0, cloned)."""

    name: str
    module: nn.Module
    start: int
    input_ref: Any  # the argument object itself, to see which call took which call's output
    input: torch.Tensor | None
    end: int = -1
    output_ref: Any = None
    output: torch.Tensor | None = None
    leaf: bool = field(default=False)


def _clone(value: Any) -> torch.Tensor | None:
    """Image 0 of a module's tensor argument or output, copied to the CPU now (an in-place op may change it later)."""
    return value[0].detach().to("cpu", copy=True) if isinstance(value, torch.Tensor) and value.dim() >= 1 else None


class _Recorder:
    """Forward hooks on every module: calls inside `target` are kept, and after it, the leaf modules that take
    its output (and then theirs) while they are element-wise or pooling (the chain `_steps` follows)."""

    def __init__(self, model: nn.Module, target: str):
        self.model, self.target = model, target
        self.calls: list[_Call] = []
        self.open: dict[int, list[_Call]] = {}
        self.clock = 0
        self.current: Any = None  # the tensor the chain after the target follows
        self.chain_open = False
        self.target_done = False
        self.depth = 0  # > 0 while the target runs

    def inside(self, name: str) -> bool:
        return name == self.target or name.startswith(self.target + ".")

    def pre(self, name: str, module: nn.Module, args: tuple) -> None:
        self.clock += 1
        first = args[0] if args else None
        leaf = next(module.children(), None) is None
        if name == self.target:
            self.depth += 1
        keep = self.depth > 0 and self.inside(name)
        if not keep and self.chain_open and leaf and first is self.current and first is not None:
            keep = True
            if not isinstance(module, ELEMENTWISE + POOLS) or len(self.calls_after()) >= MAX_STEPS:
                self.chain_open = False
        call = _Call(name, module, self.clock, first, _clone(first) if keep else None, leaf=leaf)
        self.open.setdefault(id(module), []).append(call)
        if keep:
            self.calls.append(call)

    def post(self, name: str, module: nn.Module, output: Any) -> None:
        self.clock += 1
        call = self.open[id(module)].pop()
        call.end, call.output_ref = self.clock, output
        if call in self.calls:
            call.output = _clone(output)
        if name == self.target:
            self.depth -= 1
            if self.depth == 0 and not self.target_done:
                self.current, self.chain_open, self.target_done = output, True, True
        elif self.chain_open and call.leaf and call.input_ref is self.current and call in self.calls:
            self.current = output

    def calls_after(self) -> list[_Call]:
        target_calls = [c for c in self.calls if c.name == self.target]
        end = target_calls[0].end if target_calls and target_calls[0].end > 0 else math.inf
        return [c for c in self.calls if c.start > end]

    def run(self, x: torch.Tensor) -> None:
        handles = []
        for name, module in self.model.named_modules():
            if not name:
                continue
            handles.append(module.register_forward_pre_hook(lambda m, a, name=name: self.pre(name, m, a)))
            handles.append(module.register_forward_hook(lambda m, a, o, name=name: self.post(name, m, o)))
        try:
            with torch.no_grad():
                self.model(x)
        finally:
            for handle in handles:
                handle.remove()


# ---- numbers ---------------------------------------------------------------------------


def _grid(values: torch.Tensor) -> list[list[float]]:
    """A 2-D tensor as rows of numbers to 6 significant digits (what a reader can take in; sums stay exact)."""
    return [[float(f"{v:.6g}") for v in row] for row in values.tolist()]


def _window_rows(index: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> list[int]:
    """Input rows of the window of output row `index` (negative or past the end: padding)."""
    return [index * stride - padding + k * dilation for k in range(kernel)]


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _check_position(shape: torch.Size, channel: int, y: int, x: int, name: str) -> None:
    channels, height, width = shape
    if not (0 <= channel < channels and 0 <= y < height and 0 <= x < width):
        raise CnnlabError(
            f"({channel}, {y}, {x}) is outside {name}'s output of {channels} channels of {height}x{width}: "
            f"channel 0..{channels - 1}, y 0..{height - 1}, x 0..{width - 1}"
        )


# ---- one module ------------------------------------------------------------------------


def _conv(call: _Call, c: int, y: int, x: int) -> dict[str, Any]:
    conv = call.module
    assert isinstance(conv, nn.Conv2d) and call.input is not None
    inp = call.input.double()
    groups, c_out = conv.groups, conv.out_channels
    per_group = conv.in_channels // groups
    group = c // (c_out // groups)
    first = group * per_group
    kh, kw = conv.kernel_size
    sh, sw = _pair(conv.stride)
    dh, dw = _pair(conv.dilation)
    left, right, top, bottom = conv._reversed_padding_repeated_twice
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    padded = F.pad(inp[None, first : first + per_group], (int(left), int(right), int(top), int(bottom)), mode=mode)[0]
    rows = [y * sh + k * dh for k in range(kh)]
    cols = [x * sw + k * dw for k in range(kw)]
    patch = padded[:, rows][:, :, cols]  # (per_group, kh, kw)
    weight = conv.weight.detach()[c].double().cpu()
    products = patch * weight
    sums = products.sum((1, 2))
    bias = float(conv.bias.detach()[c]) if conv.bias is not None else 0.0
    height, width = inp.shape[-2:]
    in_rows = [r - int(top) for r in rows]
    in_cols = [q - int(left) for q in cols]
    outside = [[not (0 <= r < height and 0 <= q < width) for q in in_cols] for r in in_rows]
    order = sums.abs().argsort(descending=True).tolist()
    full = order[:MAX_FULL_CHANNELS] if kh <= MAX_GRID_SIDE and kw <= MAX_GRID_SIDE else []
    channels = [
        {
            "in_channel": first + k,
            "kernel": _grid(weight[k]),
            "patch": _grid(patch[k]),
            "products": _grid(products[k]),
            "sum": float(sums[k]),
        }
        for k in full
    ]
    rest = order[len(full) :]
    total = float(sums.sum())
    result: dict[str, Any] = {
        "type": "conv",
        "kernel_size": [kh, kw],
        "stride": [sh, sw],
        "padding": [int(top), int(left)],
        "dilation": [dh, dw],
        "groups": groups,
        "input_channels": per_group,
        "first_input_channel": first,
        "rows": in_rows,
        "cols": in_cols,
        "channels": channels,
        "other_channels": {"count": len(rest), "sum": float(sums[rest].sum())} if rest else None,
        "sum": total,
        "bias": bias,
        "output": total + bias,
    }
    if any(any(row) for row in outside):
        result["outside"] = outside
        result["padding_mode"] = conv.padding_mode
    if rest:
        result["note"] = (
            f"{per_group} input channels: the {len(full)} that contribute most (largest |sum|) are shown in full, "
            f"the other {len(rest)} as one sum"
        )
    return result


def _pool_window(module: nn.Module, height: int, width: int, y: int, x: int) -> tuple[list[int], list[int], int]:
    """(input rows, input columns, divisor) of output pixel (y, x); rows out of range are padding."""
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        out_h, out_w = _adaptive_size(module, height, width)
        rows = list(range((y * height) // out_h, -((-(y + 1) * height) // out_h)))
        cols = list(range((x * width) // out_w, -((-(x + 1) * width) // out_w)))
        return rows, cols, len(rows) * len(cols)
    assert isinstance(module, (nn.MaxPool2d, nn.AvgPool2d))
    kh, kw = _pair(module.kernel_size)
    sh, sw = _pair(module.stride if module.stride is not None else module.kernel_size)
    ph, pw = _pair(module.padding)
    dh, dw = _pair(getattr(module, "dilation", 1))
    rows, cols = _window_rows(y, kh, sh, ph, dh), _window_rows(x, kw, sw, pw, dw)
    if isinstance(module, nn.MaxPool2d):
        return rows, cols, 1
    if module.divisor_override:
        return rows, cols, int(module.divisor_override)
    # PyTorch's avg_pool2d: the window clipped to input + padding counts with padding, or only inside without.
    h0, w0 = y * sh - ph, x * sw - pw
    h1, w1 = min(h0 + kh, height + ph), min(w0 + kw, width + pw)
    if module.count_include_pad:
        return rows, cols, (h1 - h0) * (w1 - w0)
    return rows, cols, (min(h1, height) - max(h0, 0)) * (min(w1, width) - max(w0, 0))


def _adaptive_size(module: nn.Module, height: int, width: int) -> tuple[int, int]:
    """An adaptive pool's output size; None in it keeps that side of the input."""
    size: Any = module.output_size
    out_h, out_w = (size, size) if isinstance(size, int) else tuple(size)
    return int(out_h or height), int(out_w or width)


def _pool(module: nn.Module, inp: torch.Tensor, c: int, y: int, x: int) -> dict[str, Any]:
    """The window of output pixel (c, y, x) of a pooling module over its (C, H, W) input, and its max or mean."""
    height, width = inp.shape[-2:]
    rows, cols, divisor = _pool_window(module, height, width, y, x)
    is_max = isinstance(module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d))
    plane = inp[c].double()
    window = torch.full((len(rows), len(cols)), -math.inf if is_max else 0.0, dtype=torch.float64)
    outside = [[True] * len(cols) for _ in rows]
    for i, r in enumerate(rows):
        for j, q in enumerate(cols):
            if 0 <= r < height and 0 <= q < width:
                window[i, j] = plane[r, q]
                outside[i][j] = False
    value = float(window.max()) if is_max else float(window.sum()) / divisor
    result: dict[str, Any] = {
        "type": "pool",
        "op": "max" if is_max else "mean",
        "rows": rows,
        "cols": cols,
        "divisor": divisor,
        "output": value,
    }
    if len(rows) <= MAX_GRID_SIDE and len(cols) <= MAX_GRID_SIDE:
        result["window"] = [
            [None if outside[i][j] else float(f"{float(window[i, j]):.6g}") for j in range(len(cols))]
            for i in range(len(rows))
        ]
        if is_max:
            flat = int(window.argmax())
            result["argmax"] = [flat // len(cols), flat % len(cols)]
    else:
        inside = window[~torch.tensor(outside)]
        result["summary"] = {"count": int(inside.numel()), "min": float(inside.min()), "max": float(inside.max())}
    return result


def _elementwise(module: nn.Module, value: float, channel: int) -> dict[str, Any]:
    """BatchNorm, an activation or a pass-through applied to one value of channel `channel`."""
    if isinstance(module, nn.BatchNorm2d):
        if module.running_mean is None or module.running_var is None:
            raise CnnlabError("a BatchNorm without running statistics cannot be explained one pixel at a time")
        mean, var = float(module.running_mean[channel]), float(module.running_var[channel])
        weight = float(module.weight.detach()[channel]) if module.weight is not None else 1.0
        bias = float(module.bias.detach()[channel]) if module.bias is not None else 0.0
        out = (value - mean) / math.sqrt(var + module.eps) * weight + bias
        return {
            "type": "batchnorm",
            "input": value,
            "mean": mean,
            "var": var,
            "eps": module.eps,
            "weight": weight,
            "bias": bias,
            "output": out,
        }
    if isinstance(module, PASS_THROUGH):
        return {"type": "identity", "input": value, "output": value}
    with torch.no_grad():
        out = float(module(torch.tensor([[[[value]]]], dtype=torch.float64)).flatten()[0])
    return {"type": "activation", "function": type(module).__name__, "input": value, "output": out}


def _module_text(module: nn.Module) -> str:
    text = repr(module)
    return text if "\n" not in text else type(module).__name__


# ---- the explanation ---------------------------------------------------------------------


class _Explainer:
    def __init__(self, calls: list[_Call]):
        self.calls = calls

    def first(self, name: str) -> _Call:
        return next(c for c in self.calls if c.name == name and c.end > 0)

    def steps(self, call: _Call, c: int, y: int, x: int, value: float, stop: Any = None) -> tuple[list, float, bool]:
        """Modules after `call` that take its output directly: (steps, final value, whether `stop` was reached).

        Element-wise modules keep the pixel; one pooling window that holds it moves to the pooled pixel;
        anything else ends the chain. With `stop`, only element-wise modules, up to the call producing `stop`.
        """
        current, pools = call.output_ref, int(isinstance(call.module, POOLS))
        steps: list[dict[str, Any]] = []
        if stop is not None and current is stop:
            return steps, value, True
        for later in self.calls:
            if later.start <= call.end or not later.leaf or later.input_ref is not current or later.input is None:
                continue
            if len(steps) >= MAX_STEPS:
                break
            if isinstance(later.module, ELEMENTWISE):
                step = _elementwise(later.module, value, c)
            elif isinstance(later.module, POOLS) and pools == 0 and stop is None:
                assert later.output is not None
                at = _pooled_pixel(later.module, later.input.shape, later.output.shape, y, x)
                if at is None:
                    break
                y, x = at
                step = _pool(later.module, later.input, c, y, x)
                pools += 1
            else:
                break
            step.update(layer=later.name, kind=type(later.module).__name__, at=[c, y, x])
            assert later.output is not None
            step["actual"] = float(later.output[c, y, x])
            steps.append(step)
            value, current = step["output"], later.output_ref
            if stop is not None and current is stop:
                return steps, value, True
        return steps, value, False

    def explain(self, call: _Call, c: int, y: int, x: int, stop: Any = None) -> dict[str, Any]:
        """The explanation of `call`'s output at (c, y, x), followed by its steps (up to `stop`, if given)."""
        module = call.module
        if call.input is None or call.output is None or call.output.dim() != 3:
            raise CnnlabError(
                f"{call.name} ({type(module).__name__}) does not output a feature map (channels x height x width); "
                "explain works on conv, pooling, BatchNorm and activation layers and on residual and Inception blocks"
            )
        _check_position(call.output.shape, c, y, x, call.name)
        if isinstance(module, nn.Conv2d):
            result = _conv(call, c, y, x)
        elif isinstance(module, POOLS):
            result = _pool(module, call.input, c, y, x)
        elif isinstance(module, ELEMENTWISE):
            result = _elementwise(module, float(call.input[c, y, x]), c)
        elif isinstance(module, RESIDUAL_BLOCKS):
            result = self.residual(call, c, y, x)
        elif self.branches(call):
            result = self.concat(call, c, y, x)
        elif not call.leaf:
            result = self.sequence(call, c, y, x)
        else:
            raise CnnlabError(
                f"{call.name} is a {type(module).__name__}; explain works on Conv2d, pooling, BatchNorm2d and "
                "activation layers, residual and Inception blocks and containers of them"
            )
        steps, final, reached = self.steps(call, c, y, x, result["output"], stop)
        result.update(
            layer=call.name,
            kind=type(module).__name__,
            module=_module_text(module),
            channel=c,
            y=y,
            x=x,
            input_shape=list(call.input.shape),
            output_shape=list(call.output.shape),
            actual=float(call.output[c, y, x]),
            after=steps,
            activation=final,
        )
        return result

    def residual(self, call: _Call, c: int, y: int, x: int) -> dict[str, Any]:
        """out = relu2(branch + shortcut): Residual's branch ends in conv2, BasicBlock's in bn2 (after conv2)."""
        block = call.module
        assert call.input is not None
        name = call.name
        conv2 = self.first(f"{name}.conv2")
        branch_end = self.first(f"{name}.bn2") if isinstance(block, BasicBlock) else conv2
        branch = self.explain(conv2, c, y, x, stop=branch_end.output_ref)
        shortcut: dict[str, Any]
        if isinstance(block, BasicBlock) and isinstance(block.shortcut, nn.Conv2d):
            inner = self.explain(self.first(f"{name}.shortcut"), c, y, x)
            shortcut = {"type": "conv", "value": inner["output"], "explained": inner}
        else:
            shortcut = {"type": "identity", "value": float(call.input[c, y, x])}
        total = branch["activation"] + shortcut["value"]
        relu = self.first(f"{name}.relu2")
        after = _elementwise(relu.module, total, c)
        return {
            "type": "residual",
            "branch": {"value": branch["activation"], "explained": branch},
            "shortcut": shortcut,
            "sum": total,
            "activation_function": type(relu.module).__name__,
            "output": after["output"],
        }

    def branches(self, call: _Call) -> list[_Call]:
        """The direct children whose outputs, concatenated on channels, are `call`'s output; [] if it is no concat."""
        if call.leaf or call.output is None:
            return []
        prefix = call.name + "."
        children = [
            c
            for c in self.calls
            if c.name.startswith(prefix) and "." not in c.name[len(prefix) :] and call.start < c.start < call.end
        ]
        if len(children) < 2 or any(c.output is None or c.output.dim() != 3 for c in children):
            return []
        outputs = [c.output for c in children]
        assert all(o is not None for o in outputs)
        if any(o.shape[1:] != call.output.shape[1:] for o in outputs if o is not None):
            return []
        joined = torch.cat([o for o in outputs if o is not None])
        if isinstance(call.module, CONCAT_BLOCKS) or (
            joined.shape == call.output.shape and torch.equal(joined, call.output)
        ):
            return children
        return []

    def concat(self, call: _Call, c: int, y: int, x: int) -> dict[str, Any]:
        offset, parts = 0, []
        chosen = None
        for child in self.branches(call):
            assert child.output is not None
            width = child.output.shape[0]
            parts.append({"branch": child.name, "channels": [offset, offset + width]})
            if chosen is None and offset <= c < offset + width:
                chosen = (child, c - offset)
            offset += width
        assert chosen is not None
        child, inner_channel = chosen
        inner = self.explain(child, inner_channel, y, x, stop=child.output_ref)
        return {
            "type": "concat",
            "branches": parts,
            "branch": child.name,
            "branch_channel": inner_channel,
            "explained": inner,
            "output": inner["activation"],
        }

    def sequence(self, call: _Call, c: int, y: int, x: int) -> dict[str, Any]:
        """A container: its last conv or pool (or block), followed through element-wise modules to its output."""
        prefix = call.name + "."
        inside = [k for k in self.calls if k.name.startswith(prefix) and call.start < k.start < call.end]
        for k in reversed(inside):
            producer = isinstance(k.module, (nn.Conv2d, *POOLS, *RESIDUAL_BLOCKS)) or (
                not k.leaf and bool(self.branches(k))
            )
            if not producer or k.output is None or k.output.shape != call.output.shape:  # type: ignore[union-attr]
                continue
            _, _, reached = self.steps(k, c, y, x, 0.0, stop=call.output_ref)
            if reached:
                inner = self.explain(k, c, y, x, stop=call.output_ref)
                return {"type": "sequence", "inner": k.name, "explained": inner, "output": inner["activation"]}
        raise CnnlabError(
            f"{call.name} ({type(call.module).__name__}) has no conv or pooling layer that makes its output"
        )


def _pooled_pixel(module: nn.Module, inp: torch.Size, out: torch.Size, y: int, x: int) -> tuple[int, int] | None:
    """The first output pixel of a pooling module whose window holds input pixel (y, x), or None (stride > kernel)."""
    height, width = int(inp[-2]), int(inp[-1])
    oy = next((o for o in range(int(out[-2])) if y in _pool_window(module, height, width, o, 0)[0]), None)
    ox = next((o for o in range(int(out[-1])) if x in _pool_window(module, height, width, 0, o)[1]), None)
    return None if oy is None or ox is None else (oy, ox)


def _as_input(trained_or_model: Any, image: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """(model, preprocessed (1, C, H, W) input): uint8 pixels go through a run's own preprocessing."""
    model = getattr(trained_or_model, "model", trained_or_model)
    if not isinstance(model, nn.Module):
        raise CnnlabError(f"explain_pixel takes a model or a loaded run, got {type(trained_or_model).__name__}")
    x = image if image.dim() == 4 else image[None]
    if x.dim() != 4 or len(x) != 1:
        raise CnnlabError(f"explain_pixel explains one image: got input of shape {tuple(image.shape)}")
    if x.dtype == torch.uint8:
        transform = getattr(trained_or_model, "transform", None)
        if transform is None:
            raise CnnlabError(
                "uint8 pixels need the run's preprocessing: pass the loaded run, or a preprocessed float input"
            )
        x = transform()(x)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return model, x.float().to(device)


def explain_pixel(
    trained_or_model: Any, image: torch.Tensor, layer: str, channel: int, y: int, x: int, model_name: str | None = None
) -> dict[str, Any]:
    """How `layer`'s output at (channel, y, x) came about for `image`, as a JSON-able dict.

    `trained_or_model`: a LoadedRun (uint8 pixels go through its preprocessing) or a module (give it the
    preprocessed float input, (1, C, H, W) or (C, H, W)). Keys common to every layer: layer, kind, module, type
    (conv, pool, batchnorm, activation, identity, residual, concat, sequence), channel, y, x, input_shape,
    output_shape, output (recomputed), actual (the real output there), after (the steps that follow: BatchNorm,
    activation, pooling) and activation (the value after them). See the module docstring for each type.
    """
    model, inputs = _as_input(trained_or_model, image)
    get_layer(model, layer, model_name)
    recorder = _Recorder(model, layer)
    was_training = model.training
    model.eval()
    try:
        recorder.run(inputs)
    finally:
        model.train(was_training)
    explainer = _Explainer(recorder.calls)
    calls = [c for c in recorder.calls if c.name == layer and c.end > 0]
    if not calls:
        raise CnnlabError(f"layer {layer!r} did not run for this input; pick a layer from `cnnlab summary`")
    return explainer.explain(calls[0], int(channel), int(y), int(x))


def block_layers(model: nn.Module) -> list[str]:
    """Paths of the residual and Inception blocks: layers whose outputs are additions or concatenations."""
    return [name for name, module in model.named_modules() if isinstance(module, RESIDUAL_BLOCKS + CONCAT_BLOCKS)]
