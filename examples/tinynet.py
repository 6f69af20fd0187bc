"""Your own network for cnnlab: an nn.Module class taking `in_channels` and `num_classes`.

cnnlab summary examples/tinynet.py:TinyNet
cnnlab train examples/tinynet.py:TinyNet --dataset examples/shapes
"""

from torch import nn


class TinyNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),  # any input size from 2x2 pixels up
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))
