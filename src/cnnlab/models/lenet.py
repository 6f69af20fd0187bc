"""LeNet-5 as in d2l: LeCun et al., "Gradient-based learning applied to document
recognition", Proc. IEEE 1998, with sigmoid activations and average pooling.

`batch_norm=True` is d2l's BN-LeNet: BatchNorm before every sigmoid, after the
convs and the two hidden linear layers.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.recipes import d2l_recipe, fast_recipe
from cnnlab.models.registry import ModelInfo, register_model

# ---- architecture table -------------------------------------------------------------
CONVS = ((6, 5, 2), (16, 5, 0))  # (out channels, kernel, padding), each + sigmoid + avgpool(2, 2)
HIDDEN = (120, 84)  # fc(400->120), fc(120->84), each + sigmoid, then fc(84->classes)


# ---- model --------------------------------------------------------------------------
class LeNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, batch_norm: bool = False):
        super().__init__()
        features: list[nn.Module] = []
        c_in = in_channels
        for c_out, kernel, padding in CONVS:
            features.append(nn.Conv2d(c_in, c_out, kernel, padding=padding))
            if batch_norm:
                features.append(nn.BatchNorm2d(c_out))
            features += [nn.Sigmoid(), nn.AvgPool2d(2, 2)]
            c_in = c_out
        self.features = nn.Sequential(*features)
        classifier: list[nn.Module] = []
        n_in = CONVS[-1][0] * 5 * 5
        for n_out in HIDDEN:
            classifier.append(nn.Linear(n_in, n_out))
            if batch_norm:
                classifier.append(nn.BatchNorm1d(n_out))
            classifier.append(nn.Sigmoid())
            n_in = n_out
        classifier.append(nn.Linear(n_in, num_classes))
        self.classifier = nn.Sequential(*classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


# ---- metadata -----------------------------------------------------------------------
model_infos = {
    "lenet": ModelInfo(
        name="lenet",
        family="lenet",
        paper="LeCun et al., Gradient-based learning applied to document recognition, Proc. IEEE 1998",
        # 28..31 -> conv p2 28..31 -> pool 14..15 -> conv 10..11 -> pool 5: the 5x5x16 = 400 features fc1 takes
        default_input_size=28,
        min_input_size=28,
        max_input_size=31,
        options={"batch_norm": "add BatchNorm before every sigmoid, as d2l's BN-LeNet (default false)"},
        num_params=61_706,
        # fp32 channels-last: a 1-epoch run took 4.35 s against 4.69 s in NCHW (3 pairs, whole process); bf16 was slower
        reference_recipe=d2l_recipe(batch_size=256, lr=0.9, init="xavier", channels_last=True),
        reference_result="~78-82% test acc (Fashion-MNIST, 10 epochs)",
        # fp32 NCHW: bf16 and channels-last ran slower with BN
        fast_recipe=fast_recipe(
            "fashion-mnist", epochs=5, lr=0.1, model_options={"batch_norm": True}, channels_last=False, precision="fp32"
        ),
    ),
}


# ---- builders -----------------------------------------------------------------------
@register_model
def lenet(in_channels: int = 1, num_classes: int = 10, *, batch_norm: bool = False) -> LeNet:
    return LeNet(in_channels, num_classes, batch_norm=batch_norm)
