"""Inception networks: Szegedy et al., "Going Deeper with Convolutions", CVPR 2015.

`inception-mini` is the 28x28 MNIST tutorial network with two InceptionA blocks
(no activations inside a block). `googlenet` is d2l's GoogLeNet for 1-channel 96x96
inputs: the paper's stem and Inception 3a-5b with the paper's channel splits, without
the auxiliary classifiers, the local response norm and the final dropout.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.blocks import conv_bn_relu
from cnnlab.models.recipes import d2l_recipe, fast_adam_recipe, fast_recipe, tutorial_recipe
from cnnlab.models.registry import ModelInfo, register_model

# ---- architecture tables ------------------------------------------------------------
# InceptionA(c) branch widths: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avgpool -> 1x1
MINI_BRANCH = 16  # the 1x1 convs
MINI_WIDE = 24  # the 5x5 / 3x3 convs and the pool branch; 16 + 24 + 24 + 24 = 88 out
MINI_CONVS = (10, 20)  # conv(c -> 10, 5) before InceptionA(10); conv(88 -> 20, 5) before InceptionA(20)

# GoogLeNet Inception blocks (paper table 1): (1x1, (3x3 reduce, 3x3), (5x5 reduce, 5x5), pool proj);
# "M" = max-pool(3, 2, 1).
GOOGLENET_STAGES: list[tuple[int, tuple[int, int], tuple[int, int], int] | str] = [
    (64, (96, 128), (16, 32), 32),  # 3a -> 256
    (128, (128, 192), (32, 96), 64),  # 3b -> 480
    "M",
    (192, (96, 208), (16, 48), 64),  # 4a -> 512
    (160, (112, 224), (24, 64), 64),  # 4b -> 512
    (128, (128, 256), (24, 64), 64),  # 4c -> 512
    (112, (144, 288), (32, 64), 64),  # 4d -> 528
    (256, (160, 320), (32, 128), 128),  # 4e -> 832
    "M",
    (256, (160, 320), (32, 128), 128),  # 5a -> 832
    (384, (192, 384), (48, 128), 128),  # 5b -> 1024
]


# ---- blocks -------------------------------------------------------------------------
class InceptionA(nn.Module):
    """Four branches concatenated on channels, 88 out; no activations inside."""

    out_channels = MINI_BRANCH + 3 * MINI_WIDE

    def __init__(self, c_in: int):
        super().__init__()
        self.branch1x1 = nn.Conv2d(c_in, MINI_BRANCH, 1)
        self.branch5x5 = nn.Sequential(nn.Conv2d(c_in, MINI_BRANCH, 1), nn.Conv2d(MINI_BRANCH, MINI_WIDE, 5, padding=2))
        self.branch3x3 = nn.Sequential(
            nn.Conv2d(c_in, MINI_BRANCH, 1),
            nn.Conv2d(MINI_BRANCH, MINI_WIDE, 3, padding=1),
            nn.Conv2d(MINI_WIDE, MINI_WIDE, 3, padding=1),
        )
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), nn.Conv2d(c_in, MINI_WIDE, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1x1, self.branch5x5, self.branch3x3, self.branch_pool)
        return torch.cat([branch(x) for branch in branches], dim=1)


def conv_relu(
    c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0, batch_norm: bool = False
) -> nn.Sequential:
    """conv, optional BatchNorm, ReLU, as one module (GoogLeNet nests them: `branch2.0.0` is a conv)."""
    return nn.Sequential(*conv_bn_relu(c_in, c_out, kernel, stride, padding, batch_norm))


class Inception(nn.Module):
    """GoogLeNet block: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | maxpool(3, 1, 1) -> 1x1, each conv + ReLU."""

    def __init__(self, c_in: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int, batch_norm: bool = False):
        super().__init__()
        self.branch1 = conv_relu(c_in, c1, 1, batch_norm=batch_norm)
        self.branch2 = nn.Sequential(
            conv_relu(c_in, c2[0], 1, batch_norm=batch_norm),
            conv_relu(c2[0], c2[1], 3, padding=1, batch_norm=batch_norm),
        )
        self.branch3 = nn.Sequential(
            conv_relu(c_in, c3[0], 1, batch_norm=batch_norm),
            conv_relu(c3[0], c3[1], 5, padding=2, batch_norm=batch_norm),
        )
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_relu(c_in, c4, 1, batch_norm=batch_norm))
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], dim=1)


# ---- models -------------------------------------------------------------------------
class InceptionMini(nn.Module):
    """conv(1->10,5), maxpool 2, ReLU, InceptionA(10), conv(88->20,5), maxpool 2, ReLU, InceptionA(20), fc(1408->10)."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        c1, c2 = MINI_CONVS
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            InceptionA(c1),
            nn.Conv2d(InceptionA.out_channels, c2, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            InceptionA(c2),
        )
        self.head = nn.Linear(InceptionA.out_channels * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


class GoogLeNet(nn.Module):
    """Stem, Inception 3a-5b, global average pool, fc(1024 -> classes).

    With 1 input channel and 10 classes it has 5,977,530 parameters: the stem's
    convs 7x7x1x64 + 1x1x64x64 + 3x3x64x192 (+ biases) = 118,144; the nine
    Inception blocks with the paper's splits in GOOGLENET_STAGES = 5,849,136 (3a
    alone: 192x64 + 192x96 + 9x96x128 + 192x16 + 25x16x32 + 192x32 + biases =
    163,696); fc(1024 -> 10) = 10,250. Every conv has a bias, as in d2l.
    """

    def __init__(self, in_channels: int, num_classes: int, batch_norm: bool = False):
        super().__init__()
        stem = nn.Sequential(
            conv_relu(in_channels, 64, 7, 2, 3, batch_norm),
            nn.MaxPool2d(3, 2, 1),
            conv_relu(64, 64, 1, batch_norm=batch_norm),
            conv_relu(64, 192, 3, padding=1, batch_norm=batch_norm),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks: list[nn.Module] = []
        c_in = 192
        for item in GOOGLENET_STAGES:
            if isinstance(item, str):  # "M"
                blocks.append(nn.MaxPool2d(3, 2, 1))
                continue
            block = Inception(c_in, *item, batch_norm=batch_norm)
            blocks.append(block)
            c_in = block.out_channels
        self.features = nn.Sequential(*stem, *blocks)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.global_pool(self.features(x)), 1))


# ---- metadata -----------------------------------------------------------------------
_PAPER = "Szegedy et al., Going Deeper with Convolutions, CVPR 2015"

model_infos = {
    "inception-mini": ModelInfo(
        name="inception-mini",
        family="inception",
        paper=_PAPER + " (MNIST tutorial network)",
        # 28..31 -> conv 24..27 -> pool 12..13 -> conv 8..9 -> pool 4: the 4x4x88 = 1408 features fc takes
        default_input_size=28,
        min_input_size=28,
        max_input_size=31,
        options={},
        num_params=97_298,
        reference_recipe=tutorial_recipe(epochs=10),
        reference_result="accuracy curve reaches ~98-99% (MNIST, 10 epochs)",
        fast_recipe=fast_adam_recipe("mnist", epochs=3, lr=0.003),
    ),
    "googlenet": ModelInfo(
        name="googlenet",
        family="inception",
        paper=_PAPER,
        # 7x7 s2 p3 convs and 3x3 s2 p1 max-pools map even a 1x1 input to 1x1, and the pool is global
        default_input_size=96,
        min_input_size=1,
        options={"batch_norm": "add BatchNorm after each conv (default false)"},
        num_params=5_977_530,  # derived in GoogLeNet's docstring (the spec says "≈6.0 M")
        reference_recipe=d2l_recipe(batch_size=128, lr=0.1, resize=96),
        reference_result="≈89-90% test acc (Fashion-MNIST, 10 epochs)",
        fast_recipe=fast_recipe(
            "fashion-mnist", epochs=5, lr=0.05, resize=64, augment=True, model_options={"batch_norm": True}
        ),
    ),
}


# ---- builders -----------------------------------------------------------------------
@register_model
def inception_mini(in_channels: int = 1, num_classes: int = 10) -> InceptionMini:
    return InceptionMini(in_channels, num_classes)


@register_model
def googlenet(in_channels: int = 1, num_classes: int = 10, *, batch_norm: bool = False) -> GoogLeNet:
    return GoogLeNet(in_channels, num_classes, batch_norm=batch_norm)
