"""Models by name.

``get_model("resnet20", num_classes=10)`` builds a freshly initialized model (seed torch first);
``build(name, num_classes, init="kaiming_normal", seed=0)`` also seeds and applies an init scheme,
so the same (name, num_classes, init, seed) gives bit-identical weights. ``available_models()``
lists the registered names.

Names:

* CIFAR-style (3x3 stem, 32x32 inputs): ``resnet20/32/44/56/110`` (``width=``), ``vgg11/13/16/19``
  (BN, global pooling), ``wrn28_10`` (and ``wrn16_8``, ``wrn28_2``, ``wrn40_4``; ``dropout=``),
  ``cifar_resnet18/34/50/101`` (torchvision ResNet with a 3x3 stride-1 stem and no max-pool).
* ImageNet-style (torchvision, random init, never downloads weights): ``resnet18/34/50/101``.
* Any torchvision classification model: ``tv:<name>`` (``tv:mobilenet_v2``, ``tv:vgg16_bn``), and
  unknown names fall back to ``torchvision.models`` when it has them.
* timm (optional): ``timm:<name>``; a clear error when timm is not installed.
* Small demo nets: ``mlp_mnist1d``, ``conv1d_mnist1d`` (inputs (N, 40) or (N, 1, 40)),
  ``mlp_digits``, ``cnn_digits`` (sklearn digits, inputs (N, 1, 8, 8)).

Common keywords: ``in_channels`` (input channels) and, for the MLPs/Conv1d nets, ``input_size``.
"""
from __future__ import annotations

import math

from typing import Callable

import torch
from torch import nn

from ..core.validate import check_choice

_MODELS: dict[str, Callable[..., nn.Module]] = {}

INITS = ("default", "kaiming_normal", "xavier_normal", "normal")


def register_model(name: str):
    def deco(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        return fn
    return deco


def _load_builtin() -> None:
    from . import cifar_resnet, cifar_vgg, small, tv, wrn  # noqa: F401


def available_models() -> list[str]:
    """Registered names (``tv:<name>`` and ``timm:<name>`` work too but are not listed)."""
    _load_builtin()
    return sorted(_MODELS)


def get_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build a freshly initialized model (seed torch first for a reproducible init)."""
    _load_builtin()
    if not isinstance(name, str) or not name:
        raise ValueError(f"model={name!r} must be a non-empty string")
    if name.startswith("tv:"):
        from .tv import torchvision_model
        return torchvision_model(name[3:], num_classes, **kwargs)
    if name.startswith("timm:"):
        from .tv import timm_model
        return timm_model(name[5:], num_classes, **kwargs)
    if name not in _MODELS:
        from .tv import torchvision_names
        if name in torchvision_names():
            from .tv import torchvision_model
            return torchvision_model(name, num_classes, **kwargs)
        check_choice("model", name, sorted(_MODELS) + ["tv:<torchvision name>", "timm:<timm name>"])
    return _MODELS[name](num_classes=num_classes, **kwargs)


FLAT_INPUT_MODELS = ("mlp_mnist1d", "conv1d_mnist1d", "mlp_digits")


def input_kwargs(model: str, input_shape) -> dict:
    """Constructor keywords that fit ``model`` to samples of ``input_shape`` (no batch dim): the
    flattened size for the MLP/Conv1d demo nets, the channel count for non-RGB images."""
    shape = tuple(int(v) for v in input_shape)
    if model in FLAT_INPUT_MODELS:
        return {"input_size": math.prod(shape)}
    if len(shape) == 3 and shape[0] != 3:
        return {"in_channels": shape[0]}
    return {}


def _width_keywords() -> dict[str, Callable[[float], dict]]:
    """How a channel multiplier maps to each family's constructor keyword, over the names the model
    modules register: the CIFAR ResNets and the digits CNN take a base channel count (16 at full
    width), the CIFAR VGGs a multiplier."""
    _load_builtin()
    from .cifar_resnet import DEPTHS
    from .cifar_vgg import CONFIGS

    def base(m):
        return {"width": max(1, round(16 * m))}

    def mult(m):
        return {"width": float(m)}

    return {**{f"resnet{d}": base for d in DEPTHS}, "cnn_digits": base, **{name: mult for name in CONFIGS}}


def width_kwargs(model: str, multiplier: float | None) -> dict:
    """Constructor keywords that scale ``model``'s channels by ``multiplier`` (``None`` or 1: none).
    ``width_kwargs("vgg11", 0.25)`` -> ``{"width": 0.25}``; ``width_kwargs("resnet20", 0.5)`` ->
    ``{"width": 8}`` (base channels). A model without a width setting is an error, not ignored."""
    if multiplier is None:
        return {}
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or not multiplier > 0:
        raise ValueError(f"model_width={multiplier!r} must be a number > 0 (a channel multiplier)")
    keywords = _width_keywords()
    if model not in keywords:
        raise ValueError(f"model_width={multiplier!r}: model {model!r} has no width setting; models with one: "
                         f"{', '.join(sorted(keywords))}")
    if multiplier == 1:
        return {}
    return keywords[model](multiplier)


def imagenet_resolution(name: str) -> bool:
    """Whether ``name`` is built for ImageNet-resolution inputs (224 x 224): the torchvision and
    timm models (``resnet18/34/50/101`` are torchvision's). A 32 x 32 input would shrink their
    last stages to 1 x 1, where only the centre tap of a 3 x 3 kernel sees the image."""
    _load_builtin()
    if not isinstance(name, str):
        return False
    if name.startswith(("tv:", "timm:")):
        return True
    from .tv import IMAGENET_RESNETS, torchvision_names

    if name in _MODELS:
        return name in IMAGENET_RESNETS
    return name in torchvision_names()


def check_model(name: str) -> None:
    """Raise the one-line ``ValueError`` of :func:`get_model` for a name that names no model."""
    _load_builtin()
    if isinstance(name, str) and (name.startswith(("tv:", "timm:")) or name in _MODELS):
        return
    from .tv import torchvision_names
    if name in torchvision_names():
        return
    check_choice("model", name, sorted(_MODELS) + ["tv:<torchvision name>", "timm:<timm name>"])


@torch.no_grad()
def init_weights(model: nn.Module, init: str = "kaiming_normal", std: float = 0.01) -> nn.Module:
    """Re-initialize ``model`` in place with the global torch RNG (seed it first).

    Conv/Linear weights: ``kaiming_normal`` (He, fan_in, ReLU gain), ``xavier_normal`` (Glorot) or
    ``normal`` (N(0, std^2), std=0.01); their biases are set to 0. Norm layers get weight 1, bias 0.
    ``default`` leaves PyTorch's (or the model's own) initialization untouched.
    """
    check_choice("init", init, INITS)
    if init == "default":
        return model
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            if init == "kaiming_normal":
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif init == "xavier_normal":
                nn.init.xavier_normal_(m.weight)
            else:
                nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    return model


def build(name: str, num_classes: int = 10, *, init: str = "default", seed: int | None = None,
          **kwargs) -> nn.Module:
    """Seeded build: ``torch.manual_seed(seed)`` (when given), construct, apply ``init``.

    The same arguments give bit-identical weights. Note that seeding sets the *global* torch RNG,
    as a training script does anyway.
    """
    check_choice("init", init, INITS)
    if seed is not None:
        torch.manual_seed(seed)
    model = get_model(name, num_classes=num_classes, **kwargs)
    return init_weights(model, init)
