"""Network in Network: Lin, Chen & Yan, "Network In Network", ICLR 2014, as in d2l
for 1-channel 224x224 inputs.

A NiN block is a spatial conv followed by 1x1 convs (two in `nin`, one in
`nin-single`); the last block outputs one map per class and a global average pool
turns the maps into logits, so there is no linear layer. ReLU follows every conv
except the very last one (the spec's rule for the last layer; d2l and the paper keep
a ReLU there too).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.recipes import d2l_recipe, fast_recipe
from cnnlab.models.registry import ModelInfo, register_model

# ---- architecture table -------------------------------------------------------------
# NiN blocks as (kernel, stride, padding, out channels); None = the class count.
# "M" = max-pool(3, 2), "D" = dropout.
BLOCKS: list[tuple[int, int, int, int | None] | str] = [
    (11, 4, 0, 96),
    "M",
    (5, 1, 2, 256),
    "M",
    (3, 1, 1, 384),
    "M",
    "D",
    (3, 1, 1, None),
]
cfgs = {"nin": {"one_by_ones": 2}, "nin-single": {"one_by_ones": 1}}


# ---- blocks -------------------------------------------------------------------------
def nin_block(
    c_in: int, c_out: int, kernel: int, stride: int, padding: int, one_by_ones: int, batch_norm: bool, last: bool
) -> nn.Sequential:
    """conv(k, s, p) then `one_by_ones` 1x1 convs, each + ReLU (none after the network's last conv)."""
    convs = [nn.Conv2d(c_in, c_out, kernel, stride, padding)]
    convs += [nn.Conv2d(c_out, c_out, 1) for _ in range(one_by_ones)]
    layers: list[nn.Module] = []
    for i, conv in enumerate(convs):
        layers.append(conv)
        if last and i == len(convs) - 1:
            break
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


# ---- model --------------------------------------------------------------------------
class NiN(nn.Module):
    def __init__(
        self, in_channels: int, num_classes: int, one_by_ones: int = 2, dropout: float = 0.5, batch_norm: bool = False
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, item in enumerate(BLOCKS):
            if isinstance(item, str):  # "M" or "D"
                layers.append(nn.MaxPool2d(3, 2) if item == "M" else nn.Dropout(dropout))
            else:
                kernel, stride, padding, width = item
                c_out = num_classes if width is None else width
                layers.append(
                    nin_block(c_in, c_out, kernel, stride, padding, one_by_ones, batch_norm, last=i == len(BLOCKS) - 1)
                )
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.global_pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.global_pool(self.features(x)), 1)


# ---- metadata -----------------------------------------------------------------------
_PAPER = "Lin, Chen & Yan, Network In Network, ICLR 2014"
_OPTIONS = {
    "dropout": "dropout rate before the last NiN block (default 0.5)",
    "batch_norm": "add BatchNorm after each conv but the last (default false)",
}
# the last max-pool needs 3x3 <- pool 7x7 <- pool 15x15 <- conv1 (H - 11) // 4 + 1 >= 15 <- H >= 67
_MIN_SIZE = 67


def _fast() -> dict:
    """Both variants' fast recipe, a fresh dict each (recipes are never shared)."""
    return fast_recipe(
        "fashion-mnist", epochs=5, lr=0.05, resize=_MIN_SIZE, augment=True, model_options={"batch_norm": True}
    )


model_infos = {
    "nin": ModelInfo(
        name="nin",
        family="nin",
        paper=_PAPER,
        default_input_size=224,
        min_input_size=_MIN_SIZE,
        options=_OPTIONS,
        num_params=1_992_166,
        reference_recipe=d2l_recipe(batch_size=128, lr=0.1, resize=224, init="xavier"),
        reference_result="≈87% test acc (Fashion-MNIST, 10 epochs)",
        fast_recipe=_fast(),
    ),
    "nin-single": ModelInfo(
        name="nin-single",
        family="nin",
        paper=_PAPER,
        default_input_size=224,
        min_input_size=_MIN_SIZE,
        options=_OPTIONS,
        num_params=1_769_112,
        reference_recipe=d2l_recipe(batch_size=64, lr=0.1, resize=224, init="xavier", normalize="0.5,0.5"),
        reference_result="85.74% test acc (Fashion-MNIST, 10 epochs; 33.98% after epoch 1)",
        fast_recipe=_fast(),
    ),
}


# ---- builders -----------------------------------------------------------------------
@register_model
def nin(in_channels: int = 1, num_classes: int = 10, *, dropout: float = 0.5, batch_norm: bool = False) -> NiN:
    return NiN(in_channels, num_classes, **cfgs["nin"], dropout=dropout, batch_norm=batch_norm)


@register_model
def nin_single(in_channels: int = 1, num_classes: int = 10, *, dropout: float = 0.5, batch_norm: bool = False) -> NiN:
    return NiN(in_channels, num_classes, **cfgs["nin-single"], dropout=dropout, batch_norm=batch_norm)
