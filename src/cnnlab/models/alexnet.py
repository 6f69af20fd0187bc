"""AlexNet as in d2l for 1-channel 224x224 inputs: Krizhevsky, Sutskever & Hinton,
"ImageNet Classification with Deep Convolutional Neural Networks", NeurIPS 2012.

At 224 the conv stack ends in 256x5x5 = 6400 features. As in torchvision, an
adaptive average pool to 5x5 sits before the classifier: at 193..224 it is an exact
identity, and it lets any input of 65x65 or more through (65 is the smallest size
for which the last max-pool still sees a 3x3 window).
"""

from __future__ import annotations

from torch import nn

from cnnlab.models.blocks import PooledMLPNet, conv_bn_relu
from cnnlab.models.recipes import d2l_recipe, fast_recipe
from cnnlab.models.registry import ModelInfo, register_model

# ---- architecture table -------------------------------------------------------------
# (out channels, kernel, stride, padding, then max-pool(3, 2)?)
CONVS = (
    (96, 11, 4, 1, True),
    (256, 5, 1, 2, True),
    (384, 3, 1, 1, False),
    (384, 3, 1, 1, False),
    (256, 3, 1, 1, True),
)
POOLED_SIZE = 5  # 224 -> conv 54 -> pool 26 -> pool 12 -> pool 5
HIDDEN = 4096


# ---- model --------------------------------------------------------------------------
class AlexNet(PooledMLPNet):
    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.5, batch_norm: bool = False):
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out, kernel, stride, padding, pool in CONVS:
            layers += conv_bn_relu(c_in, c_out, kernel, stride, padding, batch_norm)
            if pool:
                layers.append(nn.MaxPool2d(3, 2))
            c_in = c_out
        super().__init__(layers, c_in, POOLED_SIZE, HIDDEN, num_classes, dropout)


# ---- metadata -----------------------------------------------------------------------
model_infos = {
    "alexnet": ModelInfo(
        name="alexnet",
        family="alexnet",
        paper="Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep CNNs, NeurIPS 2012",
        # the last max-pool needs 3x3 <- pool 7x7 <- pool 15x15 <- conv1 (H + 2 - 11) // 4 + 1 >= 15 <- H >= 65
        default_input_size=224,
        min_input_size=65,
        options={
            "dropout": "dropout rate after the two hidden linear layers (default 0.5)",
            "batch_norm": "add BatchNorm after each conv (default false)",
        },
        num_params=46_764_746,
        reference_recipe=d2l_recipe(batch_size=128, lr=0.01, resize=224, init="xavier"),
        reference_result="≈88% test acc (Fashion-MNIST, 10 epochs)",
        fast_recipe=fast_recipe(
            "fashion-mnist", epochs=5, lr=0.05, resize=65, augment=True, model_options={"batch_norm": True}
        ),
    ),
}


# ---- builders -----------------------------------------------------------------------
@register_model
def alexnet(in_channels: int = 1, num_classes: int = 10, *, dropout: float = 0.5, batch_norm: bool = False) -> AlexNet:
    return AlexNet(in_channels, num_classes, dropout=dropout, batch_norm=batch_norm)
