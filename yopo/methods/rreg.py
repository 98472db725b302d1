"""Expander masks at kernel granularity: X-Net (Prabhu et al. 2018) and RReg (Stewart et al. 2023).

Both treat each prunable layer as a bipartite graph between its output channels and its input
channels (a Linear layer: output and input features), an edge being a whole kernel (all its
``k_h * k_w`` entries kept or pruned together). They are data-free and ignore the weight values.

Degrees. Every layer gets the same density 1 - ``target_sparsity``; the integer edge counts are
chosen by :func:`yopo.methods.common.apportion` (floors, then +1 where that brings the *global*
kept-weight count closer to the target), at least one edge per output channel. The achieved
(native) sparsity is therefore as close to the target as the degree granularity allows, and is
logged and available as ``yopo.methods.common.native_sparsity(scores)``.

Scores: see ``yopo.methods.common`` (mask methods): selected kernels ``1 + r``, the rest ``r``,
``r`` a seeded U[0,1) value per *kernel* (shared by its entries, so calibrating at a sparsity
other than the native one adds/drops kernels in random order; partial kernels only at the cut).
Calibrating at ``native_sparsity(scores)`` reproduces the expander mask exactly.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..config import opt
from ..registry import register
from ..saliency import layer_seed
from ..validate import check_int
from .common import apportion, check_common, encode_mask, kernel_view

log = logging.getLogger("yopo.methods")


@dataclass(frozen=True)
class XnetConfig:
    """X-Net: each output channel connected to d input channels (d-left-regular), whole kernels."""

    target_sparsity: float = opt(0.9, "sparsity the degrees are chosen for (achieved: nearest possible)")

    def validate(self):
        check_common(self.target_sparsity)
        return self


@dataclass(frozen=True)
class RregConfig:
    """RReg: random bipartite graph regular on both sides (up to divisibility), whole kernels."""

    target_sparsity: float = opt(0.9, "sparsity the degrees are chosen for (achieved: nearest possible)")
    swaps: int = opt(4, "degree-preserving edge-swap attempts per edge, to randomize the regular graph")

    def validate(self):
        check_common(self.target_sparsity)
        check_int("swaps", self.swaps, 0, 100)
        return self


def _kernel_budget(layers, sparsity: float, per_row: bool) -> list[int]:
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


def _expand(kmask: torch.Tensor, shape) -> torch.Tensor:
    """(o, i) kernel mask -> mask of the weight's shape."""
    o, i = kmask.shape
    return kmask.reshape(o, i, *([1] * (len(shape) - 2))).expand(shape).clone()


def _scores(ctx, kmasks: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    masks, ties = {}, {}
    for l in ctx.layers:
        g = torch.Generator().manual_seed(layer_seed(ctx.seed + 1, l.name))
        r = torch.rand(l.shape[0], l.shape[1], generator=g)
        masks[l.name] = _expand(kmasks[l.name], l.shape)
        ties[l.name] = _expand(r, l.shape)
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    log.info("%s: achieved sparsity %.6f", name, 1.0 - kept / total)
    return {n: s.to(ctx.device) for n, s in encode_mask(masks, ties).items()}


@register("xnet", config=XnetConfig, description="X-Net: d-left-regular random expander, kernel granularity (data-free)")
def xnet(model, ctx, cfg: XnetConfig):
    """Output channel j keeps the kernels of ``d_l`` input channels drawn uniformly without
    replacement (seeded per layer); ``d_l`` is the same for all rows of a layer."""
    degrees = _kernel_budget(ctx.layers, cfg.target_sparsity, per_row=True)
    kmasks = {}
    for l, d in zip(ctx.layers, degrees):
        o, i, _ = kernel_view(l)
        g = torch.Generator().manual_seed(layer_seed(ctx.seed, l.name))
        pick = torch.rand(o, i, generator=g).argsort(dim=1)[:, :d]
        km = torch.zeros(o, i, dtype=torch.bool)
        km.scatter_(1, pick, True)
        kmasks[l.name] = km
    return _scores(ctx, kmasks, "xnet")


def regular_bipartite(o: int, i: int, edges: int, swaps: int, seed: int) -> torch.Tensor:
    """A random (o x i) bipartite graph with ``edges`` edges whose output degrees differ by at most
    one and whose input degrees differ by at most one (both sides regular when divisibility
    allows). Built as a circulant band (row r takes the next d_r inputs around the input ring, so
    input degrees are floor/ceil of edges/i), then randomized by ``swaps`` degree-preserving edge
    swaps per edge ((a,b),(c,d) -> (a,d),(c,b) when both new edges are absent) and random
    relabelling of both sides. Returns a bool (o, i) adjacency matrix."""
    if not max(o, 1) <= edges <= o * i:
        raise ValueError(f"edges={edges} is out of range; allowed: [{o}, {o * i}]")
    g = torch.Generator().manual_seed(seed)
    base, extra = divmod(edges, o)
    deg = [base + (1 if r < extra else 0) for r in range(o)]
    adj = [set() for _ in range(o)]
    pos = 0
    for r in range(o):
        for t in range(deg[r]):
            adj[r].add((pos + t) % i)
        pos += deg[r]
    if swaps and 0 < edges < o * i:
        edge_list = [(r, c) for r in range(o) for c in sorted(adj[r])]
        n = len(edge_list)
        attempts = swaps * n
        picks = torch.randint(0, n, (attempts, 2), generator=g).tolist()
        for e1, e2 in picks:
            a, b = edge_list[e1]
            c, d = edge_list[e2]
            if a == c or b == d or d in adj[a] or b in adj[c]:
                continue
            adj[a].remove(b)
            adj[c].remove(d)
            adj[a].add(d)
            adj[c].add(b)
            edge_list[e1] = (a, d)
            edge_list[e2] = (c, b)
    m = torch.zeros(o, i, dtype=torch.bool)
    rows = [r for r in range(o) for _ in adj[r]]
    cols = [c for r in range(o) for c in adj[r]]
    if rows:
        m[rows, cols] = True
    pr = torch.randperm(o, generator=g)
    pc = torch.randperm(i, generator=g)
    return m[pr][:, pc]


@register("rreg", config=RregConfig, description="RReg: random regular bipartite expander, kernel granularity (data-free)")
def rreg(model, ctx, cfg: RregConfig):
    """Per layer, ``E_l`` kernels (apportioned to the global target, at least one per output
    channel) placed by :func:`regular_bipartite`: output and input degrees each differ by at
    most one."""
    budgets = _kernel_budget(ctx.layers, cfg.target_sparsity, per_row=False)
    kmasks = {}
    for l, e in zip(ctx.layers, budgets):
        o, i, _ = kernel_view(l)
        kmasks[l.name] = regular_bipartite(o, i, e, cfg.swaps, layer_seed(ctx.seed, l.name))
    return _scores(ctx, kmasks, "rreg")
