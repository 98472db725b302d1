"""CIFAR-style VGG with BatchNorm (as used in the PaI literature): conv stack, global pooling,
one linear classifier. ``width`` scales every conv's channels (e.g. ``vgg11(width=0.5)`` has a
quarter of the FLOPs: the VGG family at a cost a CPU benchmark can afford)."""
from __future__ import annotations

from torch import nn

from ..core.validate import check_float
from . import register_model

CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class CifarVGG(nn.Module):
    def __init__(self, cfg: list, num_classes: int = 10, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        check_float("width", width, 0.0, low_open=True)
        layers, cin = [], in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                v = max(1, round(v * width))
                layers += [nn.Conv2d(cin, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


for _name, _cfg in CONFIGS.items():
    register_model(_name)(lambda num_classes=10, _c=_cfg, **kw: CifarVGG(_c, num_classes, **kw))
