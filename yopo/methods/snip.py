"""SNIP (Lee et al. 2019): connection sensitivity on one batch (needs data). Conventions shared
with the other gradient methods: :mod:`yopo.methods.support.gradients`."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.config import opt, validate_fields
from ..core.registry import register
from .support.batches import get_batch
from .support.gradients import loss, prepare, seeded


@dataclass(frozen=True)
class SnipConfig:
    """SNIP (Lee et al. 2019): connection sensitivity |dL/dc| = |g * w| on one batch."""

    batch_size: int = opt(1024, "examples in the single scoring batch (paper App. E: 1024)", low=1)
    train_mode: bool = opt(True, "BatchNorm uses batch statistics while scoring (--no-train-mode: eval mode)")

    def __post_init__(self):
        validate_fields(self)


@register("snip", config=SnipConfig, data_free=False, mutates=True,
          description="SNIP: |g * w| on one batch (needs data)")
def snip(model, ctx, cfg: SnipConfig):
    """Scores ``|dL/dw * w|`` (= |dL/dc| at the all-ones mask c), non-negative."""
    with seeded(ctx.seed):
        weights = prepare(model, ctx, cfg.train_mode)
        x, y = get_batch(ctx.data, cfg.batch_size, ctx.device)
        grads = torch.autograd.grad(loss(model, x, y), list(weights.values()))
    return {n: (g * w).detach().abs() for (n, w), g in zip(weights.items(), grads)}
