"""Which weights are prunable, and how they are flattened.

A *prunable layer* is the ``weight`` of a Conv1d/Conv2d/Conv3d or Linear module. Biases, norm
layers and embeddings are never pruned (the same rule for every scoring method). Layers are keyed
by parameter name, e.g. ``layer1.0.conv1.weight``; a weight shared by several modules (tied
weights) is listed once, under the first name ``named_modules`` reaches it by.
"""
from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass

import torch
from torch import nn

PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class PrunableLayer:
    """One prunable weight: its parameter name, owning module name and shape."""

    name: str  # parameter name, e.g. "features.0.weight"
    module_name: str  # e.g. "features.0"
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def rows(self) -> int:
        """Output channels / features (``o`` in the paper)."""
        return self.shape[0]

    @property
    def cols(self) -> int:
        """Fan-in ``d = i * k_h * k_w`` (or ``in_features``)."""
        return self.numel // self.shape[0]


def _matches(name: str, module_name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(module_name, pattern)


def prunable_layers(
    model: nn.Module,
    exclude: tuple[str, ...] | list[str] = (),
    include: tuple[str, ...] | list[str] | None = None,
) -> list[PrunableLayer]:
    """List the prunable layers of ``model`` in module order.

    ``exclude``/``include`` are glob patterns matched against the parameter name or the module name
    (``"fc"``, ``"classifier.*"``, ``"*.downsample.*"``). Two special patterns name positions:
    ``":first"`` and ``":last"`` (the first / last prunable layer, e.g. the stem conv and the
    classifier). Raises ``ValueError`` when nothing prunable is left.
    """
    seen: set[int] = set()
    found: list[PrunableLayer] = []
    for module_name, module in model.named_modules():
        if not isinstance(module, PRUNABLE_TYPES):
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or id(weight) in seen:
            continue
        seen.add(id(weight))
        name = f"{module_name}.weight" if module_name else "weight"
        found.append(PrunableLayer(name, module_name, tuple(weight.shape)))
    if not found:
        raise ValueError(
            f"model {type(model).__name__} has no prunable layers; "
            f"prunable types are {', '.join(t.__name__ for t in PRUNABLE_TYPES)}"
        )
    first, last = found[0].name, found[-1].name

    def hit(layer: PrunableLayer, patterns) -> bool:
        for p in patterns:
            if p == ":first" and layer.name == first or p == ":last" and layer.name == last:
                return True
            if _matches(layer.name, layer.module_name, p):
                return True
        return False

    for p in exclude:  # a typo in an exclude pattern would silently prune the layer it meant
        if not any(hit(layer, (p,)) for layer in found):
            warnings.warn(f"exclude pattern {p!r} matches no prunable layer of {type(model).__name__}")
    kept = [
        layer
        for layer in found
        if (include is None or hit(layer, include)) and not hit(layer, exclude)
    ]
    if not kept:
        raise ValueError(
            f"no prunable layers left after include={list(include) if include else None} "
            f"exclude={list(exclude)}; available: {', '.join(l.name for l in found[:6])}"
            + (" ..." if len(found) > 6 else "")
        )
    return kept


def get_weight(model: nn.Module, name: str) -> torch.Tensor:
    """The parameter (or prune-reparametrized ``weight_orig``) called ``name``."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    orig = getattr(module, attr + "_orig", None)
    return orig if isinstance(orig, torch.Tensor) else getattr(module, attr)


def flat(t: torch.Tensor) -> torch.Tensor:
    """(o, i, *k) -> (o, i*prod(k)); a view where possible."""
    return t.reshape(t.shape[0], -1)


def unflat(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(o, d) -> ``shape`` (the inverse of :func:`flat`)."""
    return t.reshape(shape)
