"""PHEW (Patil & Dovrolis 2021): magnitude-biased random walks, kernel granularity (data-free).
Graph model and scores: :mod:`yopo.methods.support.structure`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.config import opt, sparsity_rule, validate_fields
from ..core.registry import register
from .support.structure import kernel_mask_scores, kernel_view, node_map, rank_pref


def _kernel_norms(model, ctx) -> list[np.ndarray]:
    """|W| summed over each kernel: (o, i) float64 arrays (the edge weights)."""
    out = []
    for l, w in zip(ctx.layers, ctx.weights(model).values()):
        o, i, _ = kernel_view(l)
        a = l.to_rows(w.detach()).abs().double().cpu()
        out.append(a.reshape(o, i, -1).sum(-1).numpy())
    return out


@dataclass(frozen=True)
class PhewConfig:
    """PHEW: biased random walks (input->output and output->input, alternating) until the budget."""

    target_sparsity: float = opt(0.9, "walks stop once this sparsity is reached (achieved: within one kernel)",
                                 check=sparsity_rule)
    walkers: int = opt(256, "walks simulated together per batch (speed only: walks are accepted in order)",
                      low=1)

    def __post_init__(self):
        validate_fields(self)


@register("phew", config=PhewConfig, description="PHEW: magnitude-biased random walks, kernel granularity (data-free)")
def phew(model, ctx, cfg: PhewConfig):
    """Walks alternate direction. A forward walk starts at a uniformly drawn input node of the
    first layer and at each layer moves from input node j to output node r with probability
    proportional to the kernel magnitude ``sum|W[r, j]|``; a backward walk starts at a uniformly
    drawn output node of the last layer and moves from output r to input j with probability
    proportional to the same magnitudes. Every kernel a walk traverses is kept. Walks are added in
    order until the kept weights reach ``round((1 - target_sparsity) * n)``; the walk that crosses
    the budget stops at the crossing kernel, so the result overshoots by less than one kernel.
    Seeded by ``ctx.seed`` (numpy PCG64). Kernel preference (tiebreak) = kernel magnitude rank."""
    norms = _kernel_norms(model, ctx)
    L = len(norms)
    ksize = [kernel_view(l)[2] for l in ctx.layers]
    total = sum(l.numel for l in ctx.layers)
    budget = max(1, round((1.0 - cfg.target_sparsity) * total))
    # cumulative transition tables: forward rows over outputs for each input, backward over inputs
    fwd = [np.cumsum(n.T + 1e-300, axis=1) for n in norms]  # (i, o)
    bwd = [np.cumsum(n + 1e-300, axis=1) for n in norms]  # (o, i)
    maps_next = [node_map(norms[l].shape[0], norms[l + 1].shape[1]).numpy() for l in range(L - 1)]
    maps_prev = [node_map(norms[l].shape[1], norms[l - 1].shape[0]).numpy() for l in range(1, L)]
    rng = np.random.Generator(np.random.PCG64(ctx.seed))
    kmask = [np.zeros(n.shape, dtype=bool) for n in norms]
    kept = 0

    def sample(table, rows, u):
        c = table[rows]  # (B, n)
        return np.minimum((c < (u * c[:, -1])[:, None]).sum(axis=1), c.shape[1] - 1)

    while kept < budget:
        B = cfg.walkers
        # simulate B walks of each direction; accept them in order, alternating direction
        paths_f = np.empty((B, L), dtype=np.int64), np.empty((B, L), dtype=np.int64)
        node = rng.integers(0, norms[0].shape[1], size=B)
        for l in range(L):
            out = sample(fwd[l], node, rng.random(B))
            paths_f[0][:, l], paths_f[1][:, l] = out, node
            if l + 1 < L:
                node = maps_next[l][out]
        paths_b = np.empty((B, L), dtype=np.int64), np.empty((B, L), dtype=np.int64)
        node = rng.integers(0, norms[-1].shape[0], size=B)
        for l in range(L - 1, -1, -1):
            inp = sample(bwd[l], node, rng.random(B))
            paths_b[0][:, l], paths_b[1][:, l] = node, inp
            if l > 0:
                node = maps_prev[l - 1][inp]
        for b in range(B):  # forward walk b, then backward walk b
            for paths, order in ((paths_f, range(L)), (paths_b, range(L - 1, -1, -1))):
                for l in order:
                    r, j = paths[0][b, l], paths[1][b, l]
                    if not kmask[l][r, j]:
                        kmask[l][r, j] = True
                        kept += ksize[l]
                        if kept >= budget:
                            break
                if kept >= budget:
                    break
            if kept >= budget:
                break
    return kernel_mask_scores(ctx, kmask, [rank_pref(n) for n in norms], "phew")
