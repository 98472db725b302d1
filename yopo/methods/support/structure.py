"""Layer structure shared by the kernel-granularity methods: a layer as a bipartite graph of
channels (``kernel_view``), the layer chain (``node_map``), the first prunable module, and the
helpers shared by the expander methods (X-Net, RReg) and by the graph methods (PHEW, NPB).

Expander masks at kernel granularity: X-Net (Prabhu et al. 2018) and RReg (Stewart et al. 2023).

Both treat each prunable layer as a bipartite graph between its output channels and its input
channels (a Linear layer: output and input features), an edge being a whole kernel (all its
``k_h * k_w`` entries kept or pruned together). They are data-free and ignore the weight values.

Degrees. Every layer gets the same density 1 - ``target_sparsity``; the integer edge counts are
chosen by :func:`yopo.core.allocation.apportion` (floors, then +1 where that brings the *global*
kept-weight count closer to the target), at least one edge per output channel. The achieved
(native) sparsity is therefore as close to the target as the degree granularity allows, and is
logged and available as ``yopo.methods.native_sparsity(scores)``.

Scores: see ``yopo.methods.support.encoding`` (mask methods): selected kernels ``1 + r``, the
rest ``r``, ``r`` a seeded U[0,1) value per *kernel* (shared by its entries, so calibrating at a sparsity
other than the native one adds/drops kernels in random order; partial kernels only at the cut).
Calibrating at ``native_sparsity(scores)`` reproduces the expander mask exactly.

Path/node-based data-free masks: PHEW (Patil & Dovrolis 2021) and NPB (Pham et al. 2023).

Graph model (both methods, an approximation stated here once): channels (Linear: features) are
nodes and whole kernels are edges (kernel granularity, as for the expanders). The prunable layers
are taken as a *chain* in module order; the output nodes of layer l feed the input nodes of layer
l+1 directly when the counts agree and proportionally (``j * n_in // n_out``) when they do not
(e.g. a ResNet projection shortcut listed between two convs, or a flatten before a Linear).
Skip connections are therefore not modelled exactly.

Scores: mask-method encoding of ``yopo.methods.support.encoding`` (selected kernels ``1 + r``,
others ``r``); calibrating at ``native_sparsity(scores)`` (global, ``min_keep=0``) reproduces the mask.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from ...core.allocation import apportion
from ...core.layers import PRUNABLE_TYPES, PrunableLayer
from ..yopo.saliency import layer_seed
from .encoding import encode_mask

log = logging.getLogger("yopo.methods")


def kernel_view(layer: PrunableLayer) -> tuple[int, int, int]:
    """(out, in, kernel size) of a prunable layer; a Linear layer has kernel size 1 (an HF Conv1D,
    stored (in, out), too: out is its dim 1). Expander and graph methods treat channels as nodes
    and whole kernels as edges (kernel granularity)."""
    o = layer.rows
    i = layer.shape[0] if layer.transposed else layer.shape[1]
    return o, i, layer.numel // (o * i)


def kernels_to_weight(layer: PrunableLayer, t: torch.Tensor) -> torch.Tensor:
    """An (out, in) per-kernel tensor -> the weight's own shape (kernels expanded, Conv1D transposed)."""
    if layer.transposed:
        return t.t().contiguous()
    o, i = t.shape
    return t.reshape(o, i, *([1] * (len(layer.shape) - 2))).expand(layer.shape).clone()


def node_map(n_from: int, n_to: int) -> torch.Tensor:
    """Index map from the output nodes of one layer to the input nodes of the next in the layer
    chain: the identity when the sizes agree, else proportional (``j * n_to // n_from``)."""
    return torch.arange(n_from) * n_to // n_from


def first_prunable_module(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, PRUNABLE_TYPES):
            return m
    raise ValueError(f"model {type(model).__name__} has no prunable layers")


# ---------------------------------------------------------------------- expanders (X-Net, RReg)

def kernel_budget(layers, sparsity: float, per_row: bool) -> list[int]:
    """Edges per layer (per output row if ``per_row``), apportioned to the global target."""
    views = [kernel_view(l) for l in layers]
    target = round((1.0 - sparsity) * sum(l.numel for l in layers))
    if per_row:
        ideal = [(1.0 - sparsity) * i for o, i, k in views]
        unit = [o * k for o, i, k in views]
        highs = [i for o, i, k in views]
        lows = [1] * len(views)
    else:
        ideal = [(1.0 - sparsity) * o * i for o, i, k in views]
        unit = [k for o, i, k in views]
        highs = [o * i for o, i, k in views]
        lows = [o for o, i, k in views]  # every output channel keeps at least one kernel
    return apportion(ideal, unit, lows, highs, target)


def expander_scores(ctx, kmasks: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    masks, ties = {}, {}
    for l in ctx.layers:
        g = torch.Generator().manual_seed(layer_seed(ctx.seed + 1, l.name))
        o, i, _ = kernel_view(l)
        r = torch.rand(o, i, generator=g)
        masks[l.name] = kernels_to_weight(l, kmasks[l.name])
        ties[l.name] = kernels_to_weight(l, r)
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    log.info("%s: achieved sparsity %.6f", name, 1.0 - kept / total)
    return {n: s.to(ctx.device) for n, s in encode_mask(masks, ties).items()}


# ---------------------------------------------------------------------- graph methods (PHEW, NPB)

def kernel_mask_scores(ctx, kmasks: list[np.ndarray], prefs: list[np.ndarray], name: str):
    """Kernel masks + per-kernel tiebreak in [0, 1) -> encoded scores of the weights' shapes."""
    masks, ties = {}, {}
    for l, km, pr in zip(ctx.layers, kmasks, prefs):
        masks[l.name] = kernels_to_weight(l, torch.from_numpy(km))
        ties[l.name] = kernels_to_weight(l, torch.from_numpy(pr).float())
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    log.info("%s: achieved sparsity %.6f", name, 1.0 - kept / total)
    return {n: s.to(ctx.device) for n, s in encode_mask(masks, ties).items()}


def rank_pref(x: np.ndarray) -> np.ndarray:
    """Normalized ascending rank in [0, 1) of a 2-D array (stable), as a tiebreak preference."""
    flat_ = x.ravel()
    order = np.argsort(flat_, kind="stable")
    r = np.empty(flat_.size, dtype=np.float64)
    r[order] = np.arange(flat_.size)
    return (r / flat_.size).reshape(x.shape)
