"""Random scores at initialization: the data-free baseline (within-layer random with local
calibration). No options."""
from __future__ import annotations

import torch

from ..core.registry import register
from .yopo.saliency import layer_seed


@register("random", description="random: i.i.d. U[0,1) scores, seeded per layer (data-free)")
def random(model, ctx, cfg):
    # scores drawn per layer from a CPU generator: same seed -> same scores on any device; with
    # local (equal-ratio) calibration this is the classic within-layer random baseline
    out = {}
    for l in ctx.layers:
        g = torch.Generator().manual_seed(layer_seed(ctx.seed, l.name))
        # drawn row-major over (output features, fan-in): the same numbers as rand(shape) for every
        # layer but an HF Conv1D, which gets those of the nn.Linear computing the same function
        out[l.name] = l.from_rows(torch.rand(l.rows, l.cols, generator=g)).to(ctx.device)
    return out
