"""Models by name. ``get_model("resnet20", num_classes=10)``; ``available_models()`` lists them."""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..validate import check_choice

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    def deco(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        return fn
    return deco


def _load_builtin() -> None:
    from . import cifar_resnet, cifar_vgg  # noqa: F401


def available_models() -> list[str]:
    _load_builtin()
    return sorted(_MODELS)


def get_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """Build a freshly initialized model (seed torch first for a reproducible init)."""
    _load_builtin()
    check_choice("model", name, sorted(_MODELS))
    return _MODELS[name](num_classes=num_classes, **kwargs)
