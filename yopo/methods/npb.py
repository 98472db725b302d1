"""NPB (Pham et al. 2023), approximated: greedy node-path balancing per layer, kernel granularity
(data-free). Graph model and scores: :mod:`yopo.methods.support.structure`."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.allocation import apportion, erk_densities
from ..core.config import opt, sparsity_rule, validate_fields
from ..core.registry import register
from .support.structure import kernel_mask_scores, kernel_view, node_map, rank_pref


@dataclass(frozen=True)
class NpbConfig:
    """NPB (approximate): layerwise balance of effective paths and effective nodes."""

    target_sparsity: float = opt(0.9, "global sparsity; split over layers by `allocation`", check=sparsity_rule)
    allocation: str = opt("erk", "layer densities: Erdos-Renyi-Kernel or uniform", ("erk", "uniform"))
    path_weight: float = opt(0.5, "after node coverage, edge preference = path_weight * (normalized log "
                                  "paths into the input node) + (1 - path_weight) * seeded U[0,1)", low=0.0, high=1.0)

    def __post_init__(self):
        validate_fields(self)


def _logsumexp_rows(m: np.ndarray, lp: np.ndarray) -> np.ndarray:
    """log sum_j m[r, j] * exp(lp[j]) per row r (-inf for empty rows)."""
    finite = np.isfinite(lp)
    if not finite.any():
        return np.full(m.shape[0], -np.inf)
    top = lp[finite].max()
    w = np.where(finite, np.exp(lp - top, where=finite, out=np.zeros_like(lp)), 0.0)
    s = m.astype(np.float64) @ w
    with np.errstate(divide="ignore"):
        return np.log(s) + top


@register("npb", config=NpbConfig,
          description="NPB (approx.): greedy node-path balancing per layer, kernel granularity (data-free)")
def npb(model, ctx, cfg: NpbConfig):
    """Approximation of NPB (the original solves a mixed-integer program per layer, not available
    offline). Layers are processed in chain order with kernel budgets ``E_l`` from the layer
    densities (ERK by default) apportioned to the global target (>= one kernel per output):

    1. *Effective nodes*: with A the input nodes that carry paths (all inputs of the first layer),
       ordered by log path count (desc), edges ``(t mod o, A[t mod |A|])`` for
       t < max(o, |A|) make every output node and every active input node effective, as far
       as ``E_l`` allows.
    2. *Effective paths*: the remaining budget goes to each output row in turn (round-robin, so
       out-degrees stay balanced), each row taking its best unused active inputs by
       ``path_weight * normalized log-paths + (1 - path_weight) * U[0,1)``.

    Log path counts propagate along the chain: ``lp_out[r] = logsumexp_j(lp_in[j] + log k)`` over
    kept kernels (k entries per kernel). Kernel preference (tiebreak) = the same edge key."""
    dens = erk_densities(ctx.layers, cfg.target_sparsity) if cfg.allocation == "erk" \
        else [1.0 - cfg.target_sparsity] * len(ctx.layers)
    views = [kernel_view(l) for l in ctx.layers]
    target = round((1.0 - cfg.target_sparsity) * sum(l.numel for l in ctx.layers))
    budgets = apportion([d * o * i for d, (o, i, k) in zip(dens, views)], [k for o, i, k in views],
                        [o for o, i, k in views], [o * i for o, i, k in views], target)
    rng = np.random.Generator(np.random.PCG64(ctx.seed))
    kmasks, prefs = [], []
    lp = np.zeros(views[0][1])  # one path reaches each input of the first layer
    for idx, ((o, i, k), E) in enumerate(zip(views, budgets)):
        if idx > 0:
            prev_o = views[idx - 1][0]
            mp = node_map(prev_o, i).numpy()
            new = np.full(i, -np.inf)
            # proportional map: several outputs may land on one input; their paths add up
            for j in range(prev_o):
                new[mp[j]] = np.logaddexp(new[mp[j]], lp[j])
            if prev_o < i:  # inputs not hit by the map inherit the nearest mapped output's paths
                src = np.minimum((np.arange(i) * prev_o) // i, prev_o - 1)
                new = np.where(np.isfinite(new), new, lp[src])
            lp = new
        active = np.flatnonzero(np.isfinite(lp))
        if active.size == 0:
            active = np.arange(i)
        lpa = lp[active]
        order = active[np.argsort(-lpa, kind="stable")]
        m = np.zeros((o, i), dtype=bool)
        cover = min(E, max(o, order.size))
        t = np.arange(cover)
        m[t % o, order[t % order.size]] = True
        used = int(m.sum())
        fin = lp[np.isfinite(lp)]
        span = (fin.max() - fin.min()) if fin.size else 0.0
        norm_lp = np.where(np.isfinite(lp), (lp - (fin.min() if fin.size else 0.0)) / (span if span > 0 else 1.0), -1.0)
        key = cfg.path_weight * norm_lp[None, :] + (1.0 - cfg.path_weight) * rng.random((o, i))
        key = np.where(np.isfinite(lp)[None, :], key, key - 2.0)  # inactive inputs last
        rest = E - used
        if rest > 0:
            cand = np.where(m, -np.inf, key)
            row_order = np.argsort(-cand, axis=1, kind="stable")
            free = (~m).sum(axis=1)
            # round-robin: row r gets its next-best edge at pass p; take passes until the budget
            take = np.zeros(o, dtype=np.int64)
            while rest > 0:
                room = take < free
                if not room.any():
                    break
                rows = np.flatnonzero(room)[:rest]
                take[rows] += 1
                rest -= rows.size
            for r in range(o):
                if take[r]:
                    m[r, row_order[r, : take[r]]] = True
        kmasks.append(m)
        prefs.append(rank_pref(key))
        lp = _logsumexp_rows(m, lp + math.log(k))
    return kernel_mask_scores(ctx, kmasks, prefs, "npb")
