"""The iterative flow-pruning loop shared by SynFlow and YOPO's path-flow structure: K rounds of
"score every unpruned weight by |dR/dw * w| on the linearized net, keep the best entries pooled
over layers", R = sum of the net's outputs on an all-ones input. The outcome is encoded as scores
(:class:`yopo.methods.support.encoding.IterativeEncoder`), so calibrating at the target sparsity
in global mode with ``min_keep=0`` returns the flow's own mask, and lower sparsities the masks of
earlier rounds (nested)."""
from __future__ import annotations

import torch
from torch import nn

from .encoding import IterativeEncoder
from .schedules import SCHEDULES


def iterative_flow(net: nn.Module, weights: dict[str, torch.Tensor], layers, *, target: float, rounds: int,
                   schedule: str, input_shape: tuple[int, ...], device, dtype=torch.float64,
                   reconnect: bool = False) -> dict[str, torch.Tensor]:
    """Run the rounds on ``net`` (already linearized: nonnegative, eval mode) whose prunable
    weights are the leaf tensors ``weights`` (they are zeroed in place as rounds prune them).
    Returns the encoded scores {name: tensor of the weight's shape}.

    ``reconnect``: reorder each layer's *pruned* entries so that those that would lie on an
    input-output path of the final mask (positive flow if revived: an alive input unit to an alive
    output unit) come first. The multiset of scores per layer is unchanged, so every allocation
    (per-layer counts at every sparsity) is the same; only which pruned entries a layer gets back,
    when a floor or ``min_keep`` forces some in, or at a lower sparsity, changes: weights on paths
    instead of stranded ones."""
    original = {n: w.detach().clone() for n, w in weights.items()} if reconnect else None
    for p in net.parameters():
        p.requires_grad_(False)
    for w in weights.values():
        w.requires_grad_(True)
    ones = torch.ones((1,) + tuple(input_shape), dtype=dtype, device=device)
    enc = IterativeEncoder(layers, rounds, device)
    for s_k in SCHEDULES[schedule](target, rounds):
        masks = enc.split(enc.alive)
        with torch.no_grad():  # masks only shrink (no revival): zeroing in place is enough
            for n, w in weights.items():
                w.mul_(masks[n])
        out = net(ones)
        R = (out if isinstance(out, torch.Tensor) else out[0]).sum()
        grads = torch.autograd.grad(R, list(weights.values()))
        key = torch.cat([g.mul_(w.detach()).abs_().flatten() for w, g in zip(weights.values(), grads)])
        enc.step(key, s_k)
    scores = enc.scores()
    if reconnect:
        scores = _reconnect(net, weights, original, scores, enc.split(enc.alive), ones)
    return scores


def _reconnect(net, weights, original, scores, alive, ones) -> dict[str, torch.Tensor]:
    """See ``reconnect`` in :func:`iterative_flow`."""
    with torch.no_grad():
        for n, w in weights.items():
            w.copy_(original[n] * alive[n])
    out = net(ones)
    R = (out if isinstance(out, torch.Tensor) else out[0]).sum()
    grads = torch.autograd.grad(R, list(weights.values()))
    result = {}
    for (n, s), g in zip(scores.items(), grads):
        s = s.clone()
        dead = ~alive[n]
        if dead.any():
            flat_s, flat_dead = s.flatten(), dead.flatten()
            values = torch.sort(flat_s[flat_dead], descending=True).values  # this layer's pruned scores
            potential = (g * original[n]).flatten()[flat_dead].double()
            # new order of the pruned entries: on a path of the final mask first (by the flow they
            # would carry), then the rest in their old order; stable sorts keep ties by position
            old_rank = torch.argsort(torch.argsort(flat_s[flat_dead].double(), descending=True, stable=True))
            key = torch.where(potential > 0, potential, -1.0 - old_rank.double())
            order = torch.argsort(key, descending=True, stable=True)
            new = torch.empty_like(values)
            new[order] = values
            flat_s[flat_dead] = new
            s = flat_s.reshape(s.shape)
        result[n] = s
    return result
