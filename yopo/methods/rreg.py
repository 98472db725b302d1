"""RReg (Stewart et al. 2023): random regular bipartite expander masks at kernel granularity
(data-free). Degrees, scores and the graph model: :mod:`yopo.methods.support.structure`."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.config import opt, sparsity_rule, validate_fields
from ..core.registry import register
from .support.structure import expander_scores, kernel_budget, kernel_view
from .yopo.saliency import layer_seed


@dataclass(frozen=True)
class RregConfig:
    """RReg: random bipartite graph regular on both sides (up to divisibility), whole kernels."""

    target_sparsity: float = opt(0.9, "sparsity the degrees are chosen for (achieved: nearest possible)",
                                 check=sparsity_rule)
    swaps: int = opt(4, "degree-preserving edge-swap attempts per edge, to randomize the regular graph",
                     low=0, high=100)

    def __post_init__(self):
        validate_fields(self)


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
    budgets = kernel_budget(ctx.layers, cfg.target_sparsity, per_row=False)
    kmasks = {}
    for l, e in zip(ctx.layers, budgets):
        o, i, _ = kernel_view(l)
        kmasks[l.name] = regular_bipartite(o, i, e, cfg.swaps, layer_seed(ctx.seed, l.name))
    return expander_scores(ctx, kmasks, "rreg")
