"""Tiny baselines on 28x28 inputs: `mlp-tiny` and `cnn-tiny` (the pixel-permutation
pair: nearly equal parameter counts, one with and one without convolution) and
`convnet`, a two-conv network with Gaussian init.

Each ends in a linear layer of fixed width after the flatten, so each takes only a
narrow band of input sizes around 28 (see `max_input_size`).

The conv nets pool before the ReLU, as the tutorials they come from do. ReLU is monotone,
so this is the same function, gradients included, as ReLU before the pool; it runs the
ReLU on a quarter of the values (convnet in bf16 trains 1.3-1.5x faster on a CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.recipes import FULL_SPEED, fast_adam_recipe, fast_recipe, recipe, tutorial_recipe
from cnnlab.models.registry import ModelInfo, register_model

# ---- architecture table -------------------------------------------------------------
MLP_HIDDEN = (8, 8)  # fc(784->8), fc(8->8), fc(8->10)
CNN_TINY_CHANNELS = (6, 6)  # conv 5x5 each, then fc(96->50), fc(50->10)
CNN_TINY_HIDDEN = 50
CONVNET_CHANNELS = (8, 16)  # conv 3x3 p1 each, then fc(784->10)
CONVNET_INIT_STD = 0.01


# ---- models -------------------------------------------------------------------------
class MLPTiny(nn.Module):
    """flatten, fc(784->8), ReLU, fc(8->8), ReLU, fc(8->10), log-softmax."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int = 28):
        super().__init__()
        widths = (in_channels * image_size * image_size, *MLP_HIDDEN)
        self.features = nn.Sequential()
        for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
            self.features.add_module(f"fc{i + 1}", nn.Linear(n_in, n_out))
            self.features.add_module(f"relu{i + 1}", nn.ReLU())
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.head(self.features(torch.flatten(x, 1))), dim=1)


class CNNTiny(nn.Module):
    """conv(1->6,5), maxpool 2, ReLU, conv(6->6,5), maxpool 2, ReLU, fc(96->50), ReLU, fc(50->10), log-softmax."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        c1, c2 = CNN_TINY_CHANNELS
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5),
            nn.MaxPool2d(2, 2),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 5),
            nn.MaxPool2d(2, 2),
            nn.ReLU(),
        )
        self.fc = nn.Linear(c2 * 4 * 4, CNN_TINY_HIDDEN)
        self.relu = nn.ReLU()
        self.head = nn.Linear(CNN_TINY_HIDDEN, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.fc(torch.flatten(self.features(x), 1)))
        return F.log_softmax(self.head(x), dim=1)


class ConvNet(nn.Module):
    """conv(1->8,3,1,1), maxpool 2, ReLU, conv(8->16,3,1,1), maxpool 2, ReLU, fc(784->10).

    Weights N(0, 0.01) and biases 0, as in the reference. `batch_norm` adds a
    BatchNorm after each conv (the modern variant; BN keeps PyTorch's init).
    """

    def __init__(self, in_channels: int, num_classes: int, batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_channels, *CONVNET_CHANNELS), CONVNET_CHANNELS):
            layers.append(nn.Conv2d(c_in, c_out, 3, 1, 1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers += [nn.MaxPool2d(2, 2), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(CONVNET_CHANNELS[-1] * 7 * 7, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(module.weight, 0.0, CONVNET_INIT_STD)
                if module.bias is not None:  # every layer here has one
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


# ---- metadata -----------------------------------------------------------------------
_TUTORIAL = "PyTorch MNIST tutorial baselines (the pixel-permutation experiment)"
_BATCH_NORM = "add BatchNorm after each conv (default false: the reference has none)"
# mlp-tiny and cnn-tiny stay in fp32: their matrices are too small for bf16 to pay on a CPU (mlp-tiny
# ran 3x slower); cnn-tiny's reference epoch takes 1.89 s in fp32 channels-last against 2.31 s in NCHW, and bf16
# was no faster (benchmarks/results/reference_speed.md).
model_infos = {
    "mlp-tiny": ModelInfo(
        name="mlp-tiny",
        family="mlp",
        paper=_TUTORIAL,
        default_input_size=28,
        min_input_size=28,
        max_input_size=28,  # fc(784->8) takes exactly 28x28
        options={},
        num_params=6_442,
        reference_recipe=tutorial_recipe(epochs=1, channels_last=False, precision="fp32"),
        reference_result="88% test acc (MNIST, 1 epoch); 85% with a fixed pixel permutation",
        fast_recipe=fast_adam_recipe("mnist", epochs=3, lr=0.01, channels_last=False, precision="fp32"),
    ),
    "cnn-tiny": ModelInfo(
        name="cnn-tiny",
        family="cnn",
        paper=_TUTORIAL,
        # 28..31 -> conv 24..27 -> pool 12..13 -> conv 8..9 -> pool 4: the 4x4x6 = 96 features fc1 takes
        default_input_size=28,
        min_input_size=28,
        max_input_size=31,
        options={},
        num_params=6_422,
        reference_recipe=tutorial_recipe(epochs=1, precision="fp32"),
        reference_result="96% test acc (MNIST, 1 epoch); 80% with a fixed pixel permutation",
        fast_recipe=fast_adam_recipe("mnist", epochs=3, lr=0.01, precision="fp32"),
    ),
    "convnet": ModelInfo(
        name="convnet",
        family="cnn",
        paper="a two-conv MNIST network with N(0, 0.01) init",
        # 28..31 -> pool 14..15 -> pool 7: the 7x7x16 = 784 features fc takes
        default_input_size=28,
        min_input_size=28,
        max_input_size=31,
        options={"batch_norm": _BATCH_NORM},
        num_params=9_098,
        # bf16 channels-last: 1.46 s an epoch against fp32 NCHW's 2.94 s (benchmarks/results/reference_speed.md)
        reference_recipe=recipe("mnist", epochs=10, batch_size=128, lr=0.05, normalize="none", seed=1, **FULL_SPEED),
        reference_result="97.97% test acc (MNIST, 10 epochs)",
        fast_recipe=fast_recipe("mnist", epochs=3, lr=0.1, model_options={"batch_norm": True}),
    ),
}


# ---- builders -----------------------------------------------------------------------
@register_model
def mlp_tiny(in_channels: int = 1, num_classes: int = 10) -> MLPTiny:
    return MLPTiny(in_channels, num_classes)


@register_model
def cnn_tiny(in_channels: int = 1, num_classes: int = 10) -> CNNTiny:
    return CNNTiny(in_channels, num_classes)


@register_model
def convnet(in_channels: int = 1, num_classes: int = 10, *, batch_norm: bool = False) -> ConvNet:
    return ConvNet(in_channels, num_classes, batch_norm=batch_norm)
