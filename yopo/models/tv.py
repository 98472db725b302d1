"""torchvision (and optional timm) models, always randomly initialized: nothing is downloaded.

``resnet18/34/50/101`` are torchvision's ImageNet-style ResNets (7x7 stride-2 stem + max-pool);
``cifar_resnet18/34/50/101`` are the same networks with a CIFAR stem (3x3 stride-1 conv, no max-pool).
"""
from __future__ import annotations

import functools

from torch import nn

from . import register_model


@functools.lru_cache(maxsize=1)
def torchvision_names() -> tuple[str, ...]:
    import torchvision
    return tuple(torchvision.models.list_models(module=torchvision.models))


def _replace_stem(model: nn.Module, in_channels: int) -> None:
    """Swap the first conv for one taking ``in_channels`` (same out channels, kernel, stride)."""
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            new = nn.Conv2d(in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding,
                            mod.dilation, mod.groups if mod.groups == 1 else in_channels, mod.bias is not None)
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, new)
            return
    raise ValueError("in_channels != 3 is not supported for this torchvision model (no Conv2d stem found)")


def torchvision_model(name: str, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None, num_classes=...)``."""
    import torchvision
    if name not in torchvision_names():
        raise ValueError(f"model 'tv:{name}' is not a torchvision classification model; "
                         f"e.g. {', '.join(torchvision_names()[:6])} ...")
    kwargs.pop("weights", None)
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        _replace_stem(model, in_channels)
    return model


def timm_model(name: str, num_classes: int = 1000, in_channels: int = 3, **kwargs) -> nn.Module:
    """``timm.create_model(name, pretrained=False, ...)``; a clear error when timm is missing."""
    try:
        import timm
    except ImportError:
        raise ValueError(f"model 'timm:{name}' needs the optional package timm, which is not installed") from None
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)


def _tv_resnet(depth: int, cifar: bool, num_classes: int = 1000, in_channels: int = 3, **kw) -> nn.Module:
    import torchvision
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=num_classes, **kw)
    if cifar:
        model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        _replace_stem(model, in_channels)
    return model


#: the registered models built for ImageNet-resolution inputs (the stride-2 stem and max-pool)
IMAGENET_RESNETS = tuple(f"resnet{d}" for d in (18, 34, 50, 101))

for _depth in (18, 34, 50, 101):
    register_model(f"resnet{_depth}")(lambda num_classes=1000, _d=_depth, **kw: _tv_resnet(_d, False, num_classes, **kw))
    register_model(f"cifar_resnet{_depth}")(
        lambda num_classes=10, _d=_depth, **kw: _tv_resnet(_d, True, num_classes, **kw))
