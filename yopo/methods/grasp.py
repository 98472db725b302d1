"""GraSP (Wang et al. 2020): Hessian-gradient product on one batch (needs data). Conventions
shared with the other gradient methods: :mod:`yopo.methods.support.gradients`."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.config import opt, validate_fields
from ..core.registry import register
from .support.batches import get_batch
from .support.gradients import double_backward_attention, loss, prepare, seeded


@dataclass(frozen=True)
class GraspConfig:
    """GraSP (Wang et al. 2020): Hessian-gradient product with temperature T = 200."""

    batch_size: int = opt(1024, "examples in the single scoring batch (paper App. E: 1024)", low=1)
    temperature: float = opt(200.0, "logits are divided by T before the loss (original: 200)", low=0.0, low_open=True)
    train_mode: bool = opt(True, "BatchNorm uses batch statistics while scoring (--no-train-mode: eval mode)")

    def __post_init__(self):
        validate_fields(self)


@register("grasp", config=GraspConfig, data_free=False, mutates=True,
          description="GraSP: theta * Hg (keep-high form of the paper's -theta*Hg, remove-high) (needs data)")
def grasp(model, ctx, cfg: GraspConfig):
    """GraSP saliency, returned in yopo's *higher = keep* convention.

    Sign convention. The GraSP paper defines ``S(-theta) = -theta * Hg`` (H the Hessian, g the
    gradient of the temperature-scaled loss) and *removes the weights with the largest S*: their
    removal reduces the gradient norm least (or increases it). The official code does exactly
    that (it keeps entries with ``-theta*Hg`` at or below the cut). yopo keeps the highest scores,
    so this method returns ``-S = theta * Hg``: keeping the highest ``theta * Hg`` is the same
    mask as removing the highest ``-theta * Hg``. Scores are signed (not non-negative).

    Hg is computed exactly by double backward: ``Hg = d/dw (g_detached . dL/dw)`` on the same
    batch. Unlike the official code, Linear layers are not re-initialized before scoring (the
    caller's initialization is what gets scored, as for every other method).
    """
    with seeded(ctx.seed), double_backward_attention():
        weights = prepare(model, ctx, cfg.train_mode)
        params = list(weights.values())
        x, y = get_batch(ctx.data, cfg.batch_size, ctx.device)
        g = torch.autograd.grad(loss(model, x, y, cfg.temperature), params)
        grad_f = torch.autograd.grad(loss(model, x, y, cfg.temperature), params, create_graph=True)
        z = sum((gi.detach() * fi).sum() for gi, fi in zip(g, grad_f))
        hg = torch.autograd.grad(z, params)
    return {n: (w * h).detach() for (n, w), h in zip(weights.items(), hg)}
