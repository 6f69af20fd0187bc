"""Layers that more than one model family builds the same way."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(
    c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0, batch_norm: bool = False
) -> list[nn.Module]:
    """conv, BatchNorm when asked, ReLU: a list, so a caller's Sequential keeps flat layer indices."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, padding)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU())
    return layers


class PooledMLPNet(nn.Module):
    """`features`, an adaptive average pool to pooled x pooled, flatten, then AlexNet's and VGG's classifier:
    fc(->hidden), ReLU, dropout, fc(hidden->hidden), ReLU, dropout, fc(hidden->classes).

    The pool fixes the classifier's input whatever the input size (torchvision's way); at the size the
    network was designed for it is an identity. AlexNet and VGG subclass it with their conv stacks.
    """

    def __init__(
        self, features: list[nn.Module], channels: int, pooled: int, hidden: int, num_classes: int, dropout: float
    ):
        super().__init__()
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(pooled)
        self.classifier = nn.Sequential(
            nn.Linear(channels * pooled * pooled, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
