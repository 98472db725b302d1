"""Path/node-based data-free masks: PHEW (Patil & Dovrolis 2021) and NPB (Pham et al. 2023).

Graph model (both methods, an approximation stated here once): channels (Linear: features) are
nodes and whole kernels are edges (kernel granularity, as for the expanders). The prunable layers
are taken as a *chain* in module order; the output nodes of layer l feed the input nodes of layer
l+1 directly when the counts agree and proportionally (``j * n_in // n_out``) when they do not
(e.g. a ResNet projection shortcut listed between two convs, or a flatten before a Linear).
Skip connections are therefore not modelled exactly.

Scores: mask-method encoding of ``yopo.methods.common`` (selected kernels ``1 + r``, others
``r``); calibrating at ``native_sparsity(scores)`` (global, ``min_keep=0``) reproduces the mask.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..config import opt
from ..registry import register
from ..validate import check_choice, check_int
from .common import apportion, check_common, check_prob, encode_mask, erk_densities, kernel_view, node_map

log = logging.getLogger("yopo.methods")


def _kernel_norms(model, ctx) -> list[np.ndarray]:
    """|W| summed over each kernel: (o, i) float64 arrays (the edge weights)."""
    out = []
    for name, w in ctx.weights(model).items():
        a = w.detach().abs().double().cpu()
        out.append(a.reshape(a.shape[0], a.shape[1], -1).sum(-1).numpy())
    return out


def _finish(ctx, kmasks: list[np.ndarray], prefs: list[np.ndarray], name: str):
    """Kernel masks + per-kernel tiebreak in [0, 1) -> encoded scores of the weights' shapes."""
    masks, ties = {}, {}
    for l, km, pr in zip(ctx.layers, kmasks, prefs):
        o, i, _ = kernel_view(l)
        view = (o, i) + (1,) * (len(l.shape) - 2)
        masks[l.name] = torch.from_numpy(km).reshape(view).expand(l.shape).clone()
        ties[l.name] = torch.from_numpy(pr).float().reshape(view).expand(l.shape).clone()
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    log.info("%s: achieved sparsity %.6f", name, 1.0 - kept / total)
    return {n: s.to(ctx.device) for n, s in encode_mask(masks, ties).items()}


def _rank_pref(x: np.ndarray) -> np.ndarray:
    """Normalized ascending rank in [0, 1) of a 2-D array (stable), as a tiebreak preference."""
    flat_ = x.ravel()
    order = np.argsort(flat_, kind="stable")
    r = np.empty(flat_.size, dtype=np.float64)
    r[order] = np.arange(flat_.size)
    return (r / flat_.size).reshape(x.shape)


# -------------------------------------------------------------------------------------------- PHEW

@dataclass(frozen=True)
class PhewConfig:
    """PHEW: biased random walks (input->output and output->input, alternating) until the budget."""

    target_sparsity: float = opt(0.9, "walks stop once this sparsity is reached (achieved: within one kernel)")
    walkers: int = opt(256, "walks simulated together per batch (speed only: walks are accepted in order)")

    def validate(self):
        check_common(self.target_sparsity)
        check_int("walkers", self.walkers, 1)
        return self


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
    return _finish(ctx, kmask, [_rank_pref(n) for n in norms], "phew")


# --------------------------------------------------------------------------------------------- NPB

@dataclass(frozen=True)
class NpbConfig:
    """NPB (approximate): layerwise balance of effective paths and effective nodes."""

    target_sparsity: float = opt(0.9, "global sparsity; split over layers by `allocation`")
    allocation: str = opt("erk", "layer densities: Erdos-Renyi-Kernel or uniform", ("erk", "uniform"))
    path_weight: float = opt(0.5, "after node coverage, edge preference = path_weight * (normalized log "
                                  "paths into the input node) + (1 - path_weight) * seeded U[0,1)")

    def validate(self):
        check_common(self.target_sparsity)
        check_choice("allocation", self.allocation, ("erk", "uniform"))
        check_prob("path_weight", self.path_weight)
        return self


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
        prefs.append(_rank_pref(key))
        lp = _logsumexp_rows(m, lp + math.log(k))
    return _finish(ctx, kmasks, prefs, "npb")
