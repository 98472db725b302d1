"""YOPO, the flagship method: the once-only, data-free saliency S = | |W| - VH | from a rank-r NMF
of each layer's |W| (``saliency``: :class:`YopoConfig`, :func:`yopo_saliency`) and the batched NMF
engine it runs on (``nmf``). Importing this package registers the scoring method ``"yopo"``."""
from __future__ import annotations

from ...core.registry import register
from .saliency import YopoConfig, yopo_saliency

__all__ = ["YopoConfig", "yopo_saliency"]


@register("yopo", config=YopoConfig, description="YOPO: |  |W| - VH | from a rank-r NMF of |W| (data-free)")
def yopo(model, ctx, cfg: YopoConfig):
    # factor each weight as its (output features, fan-in) matrix (an HF Conv1D is stored (in, out))
    layers = {l.name: l for l in ctx.layers}
    mats = {n: layers[n].to_rows(w) for n, w in ctx.weights(model).items()}
    S = yopo_saliency(mats, cfg, seed=ctx.seed, device=ctx.device)
    scores = {n: layers[n].from_rows(s) for n, s in S.items()}
    if cfg.paths:
        from .paths import path_flow
        scores = path_flow(model, ctx, scores, cfg)
    return scores
