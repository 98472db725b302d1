"""YOPO itself and the two trivial data-free baselines (magnitude and random at init)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..registry import register
from ..saliency import YopoConfig, layer_seed, yopo_saliency


@register("yopo", config=YopoConfig, description="YOPO: |  |W| - VH | from a rank-r NMF of |W| (data-free)")
def yopo(model, ctx, cfg: YopoConfig):
    return yopo_saliency(ctx.weights(model), cfg, seed=ctx.seed, device=ctx.device)


@register("magnitude", description="magnitude at init: |W| (data-free)")
def magnitude(model, ctx, cfg):
    return {n: w.detach().abs().float().to(ctx.device) for n, w in ctx.weights(model).items()}


@dataclass(frozen=True)
class RandomConfig:
    def validate(self):
        return self


@register("random", config=RandomConfig, description="random: i.i.d. U[0,1) scores, seeded per layer (data-free)")
def random(model, ctx, cfg):
    # scores drawn per layer from a CPU generator: same seed -> same scores on any device; with
    # local (equal-ratio) calibration this is the classic within-layer random baseline
    out = {}
    for l in ctx.layers:
        g = torch.Generator().manual_seed(layer_seed(ctx.seed, l.name))
        out[l.name] = torch.rand(l.shape, generator=g).to(ctx.device)
    return out
