"""Wide ResNets for CIFAR (Zagoruyko & Komodakis 2016): pre-activation wide basic blocks,
depth = 6n + 4, widths 16k/32k/64k, 1x1 conv shortcuts where the shape changes."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from . import register_model


class WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = F.relu(self.bn2(o))
        if self.dropout > 0:
            o = F.dropout(o, self.dropout, self.training)
        return self.conv2(o) + skip


class WideResNet(nn.Module):
    def __init__(self, depth: int = 28, widen: int = 10, num_classes: int = 10, dropout: float = 0.0,
                 in_channels: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"depth={depth} is not allowed; WRN depth must be 6n+4 (16, 22, 28, 40)")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages, cin = [], widths[0]
        for i, cout in enumerate(widths[1:]):
            blocks = []
            for j in range(n):
                blocks.append(WideBlock(cin, cout, 2 if (i > 0 and j == 0) else 1, dropout))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        o = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        o = F.adaptive_avg_pool2d(F.relu(self.bn(o)), 1).flatten(1)
        return self.fc(o)


for _d, _k in ((28, 10), (16, 8), (28, 2), (40, 4)):
    register_model(f"wrn{_d}_{_k}")(
        lambda num_classes=10, _d=_d, _k=_k, **kw: WideResNet(_d, _k, num_classes, **kw))
