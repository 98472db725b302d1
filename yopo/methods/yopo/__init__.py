"""YOPO, the flagship method: the once-only, data-free saliency S = | |W| - VH | from a rank-r NMF
of each layer's |W| (``saliency``: :class:`YopoConfig`, :func:`yopo_saliency`) and the batched NMF
engine it runs on (``nmf``). Importing this package registers the scoring method ``"yopo"``."""
from __future__ import annotations

from ...core.registry import register
from .saliency import YopoConfig, yopo_saliency

__all__ = ["YopoConfig", "yopo_saliency"]


@register("yopo", config=YopoConfig, description="YOPO: |  |W| - VH | from a rank-r NMF of |W| (data-free)")
def yopo(model, ctx, cfg: YopoConfig):
    return yopo_saliency(ctx.weights(model), cfg, seed=ctx.seed, device=ctx.device)
