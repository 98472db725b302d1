"""Magnitude at initialization: the trivial data-free baseline |W|."""
from __future__ import annotations

from ..core.registry import register


@register("magnitude", description="magnitude at init: |W| (data-free)")
def magnitude(model, ctx, cfg):
    return {n: w.detach().abs().float().to(ctx.device) for n, w in ctx.weights(model).items()}
