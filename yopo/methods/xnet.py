"""X-Net (Prabhu et al. 2018): d-left-regular random expander masks at kernel granularity
(data-free). Degrees, scores and the graph model: :mod:`yopo.methods.support.structure`."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.config import opt, sparsity_rule, validate_fields
from ..core.registry import register
from .support.structure import expander_scores, kernel_budget, kernel_view
from .yopo.saliency import layer_seed


@dataclass(frozen=True)
class XnetConfig:
    """X-Net: each output channel connected to d input channels (d-left-regular), whole kernels."""

    target_sparsity: float = opt(0.9, "sparsity the degrees are chosen for (achieved: nearest possible)",
                                 check=sparsity_rule)

    def __post_init__(self):
        validate_fields(self)


@register("xnet", config=XnetConfig, description="X-Net: d-left-regular random expander, kernel granularity (data-free)")
def xnet(model, ctx, cfg: XnetConfig):
    """Output channel j keeps the kernels of ``d_l`` input channels drawn uniformly without
    replacement (seeded per layer); ``d_l`` is the same for all rows of a layer."""
    degrees = kernel_budget(ctx.layers, cfg.target_sparsity, per_row=True)
    kmasks = {}
    for l, d in zip(ctx.layers, degrees):
        o, i, _ = kernel_view(l)
        g = torch.Generator().manual_seed(layer_seed(ctx.seed, l.name))
        pick = torch.rand(o, i, generator=g).argsort(dim=1)[:, :d]
        km = torch.zeros(o, i, dtype=torch.bool)
        km.scatter_(1, pick, True)
        kmasks[l.name] = km
    return expander_scores(ctx, kmasks, "xnet")
