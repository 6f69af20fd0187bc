"""Residual networks: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.

`resnet-mini` is the 28x28 MNIST tutorial network with two plain residual blocks
(no BatchNorm). `resnet18` is d2l's ResNet-18 for 1-channel 96x96 inputs: a 7x7
stem with BatchNorm, four stages of two basic blocks, global average pool, fc.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.recipes import d2l_recipe, fast_adam_recipe, fast_recipe, tutorial_recipe
from cnnlab.models.registry import ModelInfo, register_model

# ---- architecture tables ------------------------------------------------------------
MINI_CONVS = (16, 32)  # conv(c_in -> 16, 5) before Residual(16); conv(16 -> 32, 5) before Residual(32)
cfgs = {"resnet18": {"blocks": (2, 2, 2, 2), "widths": (64, 128, 256, 512)}}


# ---- blocks -------------------------------------------------------------------------
class Residual(nn.Module):
    """y = ReLU(conv3x3(x)); y = conv3x3(y); out = ReLU(x + y). Channels and size unchanged."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.relu1(self.conv1(x)))
        return self.relu2(x + y)


class BasicBlock(nn.Module):
    """d2l's basic block: two 3x3 conv + BN, and a 1x1 conv shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


# ---- models -------------------------------------------------------------------------
class ResNetMini(nn.Module):
    """conv(1->16,5), maxpool 2, ReLU, Residual(16), conv(16->32,5), maxpool 2, ReLU, Residual(32), fc(512->10).

    The tutorial applies the ReLU before the pool: ReLU is monotone, so the two orders compute the same
    outputs and gradients, and pooling first runs the ReLU on a quarter of the values.
    """

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        c1, c2 = MINI_CONVS
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            Residual(c1),
            nn.Conv2d(c1, c2, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            Residual(c2),
        )
        self.head = nn.Linear(c2 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


class ResNet(nn.Module):
    """Stem conv 7x7/2 + BN + ReLU + maxpool 3/2, stages of BasicBlocks (stride 2 from stage 2), GAP, fc.

    ResNet-18 with 1 input channel and 10 classes has 11,178,378 parameters: the
    usual 11,175,370 of a bias-free ResNet-18 with BatchNorm'd 1x1 shortcuts
    (torchvision's layout), plus 4,800 conv biases (every conv has one, as in d2l),
    minus 1,792 for the three shortcut BatchNorms d2l does not have.
    """

    def __init__(self, in_channels: int, num_classes: int, blocks: tuple[int, ...], widths: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 7, 2, 3),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        stages: list[nn.Module] = []
        c_in = widths[0]
        for i, (count, c_out) in enumerate(zip(blocks, widths)):
            first_stride = 1 if i == 0 else 2
            stage = [BasicBlock(c_in if j == 0 else c_out, c_out, first_stride if j == 0 else 1) for j in range(count)]
            stages.append(nn.Sequential(*stage))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(self.global_pool(x), 1))


# ---- metadata -----------------------------------------------------------------------
_PAPER = "He, Zhang, Ren & Sun, Deep Residual Learning for Image Recognition, CVPR 2016"

model_infos = {
    "resnet-mini": ModelInfo(
        name="resnet-mini",
        family="resnet",
        paper=_PAPER + " (MNIST tutorial network)",
        # 28..31 -> conv 24..27 -> pool 12..13 -> conv 8..9 -> pool 4: the 4x4x32 = 512 features fc takes
        default_input_size=28,
        min_input_size=28,
        max_input_size=31,
        options={},
        num_params=41_514,
        reference_recipe=tutorial_recipe(epochs=10),
        reference_result="~99% test acc (MNIST, 10 epochs)",
        fast_recipe=fast_adam_recipe("mnist", epochs=3, lr=0.003),
    ),
    "resnet18": ModelInfo(
        name="resnet18",
        family="resnet",
        paper=_PAPER,
        # 7x7 s2 p3 stem, 3x3 s2 p1 max-pool and strided 3x3 p1 / 1x1 convs map even 1x1 to 1x1; the pool is global
        default_input_size=96,
        min_input_size=1,
        options={},
        num_params=11_178_378,  # derived in ResNet's docstring (the spec says "≈11.2 M")
        reference_recipe=d2l_recipe(batch_size=256, lr=0.05, resize=96),
        reference_result="≈90-91% test acc (Fashion-MNIST, 10 epochs)",
        fast_recipe=fast_recipe("fashion-mnist", epochs=5, lr=0.05, resize=64, augment=True),
    ),
}


# ---- builders -----------------------------------------------------------------------
@register_model
def resnet_mini(in_channels: int = 1, num_classes: int = 10) -> ResNetMini:
    return ResNetMini(in_channels, num_classes)


@register_model
def resnet18(in_channels: int = 1, num_classes: int = 10) -> ResNet:
    return ResNet(in_channels, num_classes, **cfgs["resnet18"])
