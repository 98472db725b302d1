"""Small nets for the offline demo data: MNIST-1D (length-40 signals) and sklearn digits (8x8)."""
from __future__ import annotations

import torch
from torch import nn

from . import register_model


class MLP(nn.Module):
    """Flatten, then Linear-ReLU blocks and a linear classifier."""

    def __init__(self, input_size: int, hidden: tuple[int, ...], num_classes: int):
        super().__init__()
        layers, d = [], input_size
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(inplace=True)]
            d = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(d, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x.flatten(1)))


class Conv1dNet(nn.Module):
    """Three strided Conv1d-ReLU layers and a linear classifier (MNIST-1D)."""

    def __init__(self, input_size: int = 40, channels: int = 32, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.features = nn.Sequential(
            nn.Conv1d(in_channels, channels, 5, stride=2, padding=2), nn.ReLU(inplace=True),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        )
        length = input_size
        for _ in range(3):
            length = (length - 1) // 2 + 1
        self.classifier = nn.Linear(channels * length, num_classes)

    def forward(self, x):
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.classifier(self.features(x).flatten(1))


class DigitsCNN(nn.Module):
    """Two 3x3 conv layers, one 2x2 max-pool, a linear classifier (8x8 digits)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 8, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(2 * width * (input_size // 2) ** 2, num_classes)

    def forward(self, x):
        if x.dim() == 2:
            side = int(round(x.shape[1] ** 0.5))
            x = x.view(x.shape[0], 1, side, side)
        return self.classifier(self.features(x).flatten(1))


@register_model("mlp_mnist1d")
def mlp_mnist1d(num_classes=10, input_size=40, hidden=(100, 100), in_channels=1):
    return MLP(input_size * in_channels, tuple(hidden), num_classes)


@register_model("conv1d_mnist1d")
def conv1d_mnist1d(num_classes=10, input_size=40, channels=32, in_channels=1):
    return Conv1dNet(input_size, channels, num_classes, in_channels)


@register_model("mlp_digits")
def mlp_digits(num_classes=10, input_size=64, hidden=(128, 64), in_channels=1):
    return MLP(input_size * in_channels, tuple(hidden), num_classes)


@register_model("cnn_digits")
def cnn_digits(num_classes=10, in_channels=1, input_size=8, width=16):
    return DigitsCNN(num_classes, in_channels, input_size, width)
