"""VGG: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015, as in d2l for 1-channel 224x224 inputs.

`width` divides every conv channel count (d2l trains VGG-11 with width 4 on
Fashion-MNIST); the hidden linear layers stay 4096 wide. As in torchvision, an
adaptive average pool to 7x7 sits before the classifier: an exact identity at
224..231, and it lets any input of 32x32 or more through.
"""

from __future__ import annotations

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.blocks import PooledMLPNet, conv_bn_relu
from cnnlab.models.recipes import d2l_recipe, fast_recipe
from cnnlab.models.registry import ModelInfo, register_model

# ---- architecture table -------------------------------------------------------------
# 3x3 p1 conv widths, "M" = max-pool(2, 2)
cfgs: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
}
POOLED_SIZE = 7  # 224 / 2**5
HIDDEN = 4096


# ---- model --------------------------------------------------------------------------
class VGG(PooledMLPNet):
    def __init__(
        self,
        cfg: list[int | str],
        in_channels: int,
        num_classes: int,
        width: int = 1,
        dropout: float = 0.5,
        batch_norm: bool = False,
    ):
        narrowest = min(c for c in cfg if isinstance(c, int))
        if width > narrowest:
            raise CnnlabError(
                f"option 'width' of VGG must be between 1 and {narrowest} "
                f"(it divides every conv width, the narrowest is {narrowest}), got {width}"
            )
        layers: list[nn.Module] = []
        c_in = in_channels
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            c_out = int(item) // width
            layers += conv_bn_relu(c_in, c_out, 3, padding=1, batch_norm=batch_norm)
            c_in = c_out
        super().__init__(layers, c_in, POOLED_SIZE, HIDDEN, num_classes, dropout)


# ---- metadata -----------------------------------------------------------------------
model_infos = {
    "vgg11": ModelInfo(
        name="vgg11",
        family="vgg",
        paper="Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015",
        default_input_size=224,
        min_input_size=32,  # five 2x2 max-pools: 32 -> 1
        options={
            "width": "divide every conv channel count by this (default 1; the reference recipe uses 4)",
            "dropout": "dropout rate after the two hidden linear layers (default 0.5)",
            "batch_norm": "add BatchNorm after each conv (default false)",
        },
        num_params=128_806_154,  # width 1; the reference recipe's width 4 gives 43,093,322
        reference_recipe=d2l_recipe(batch_size=128, lr=0.05, resize=224, model_options={"width": 4}),
        reference_result="≈91-92% test acc (Fashion-MNIST, width 4, 10 epochs)",
        fast_recipe=fast_recipe(
            "fashion-mnist", epochs=5, lr=0.05, resize=64, augment=True, model_options={"width": 4, "batch_norm": True}
        ),
    ),
}


# ---- builders -----------------------------------------------------------------------
@register_model
def vgg11(
    in_channels: int = 1, num_classes: int = 10, *, width: int = 1, dropout: float = 0.5, batch_norm: bool = False
) -> VGG:
    return VGG(cfgs["vgg11"], in_channels, num_classes, width=width, dropout=dropout, batch_norm=batch_norm)
