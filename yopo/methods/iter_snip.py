"""Iterative SNIP / FORCE-style (de Jorge et al. 2021) to a target sparsity (needs data).
Conventions shared with the other gradient methods: :mod:`yopo.methods.support.gradients`."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.config import opt, sparsity_rule, validate_fields
from ..core.registry import register
from .support.batches import get_batch
from .support.encoding import IterativeEncoder
from .support.gradients import loss, prepare, seeded
from .support.encoding import MAX_ROUNDS
from .support.schedules import SCHEDULES


@dataclass(frozen=True)
class IterSnipConfig:
    """Iterative SNIP / FORCE (de Jorge et al. 2021): SNIP re-scored on the masked net over a schedule."""

    target_sparsity: float = opt(0.9, "final sparsity of the native schedule (calibrate at the same value "
                                      "to get the method's own mask)", check=sparsity_rule)
    iters: int = opt(10, "pruning rounds K (FORCE uses 10-100)", low=1, high=MAX_ROUNDS)
    schedule: str = opt("exponential", "sparsity after round k: exponential 1-(1-s)^(k/K), or linear s*k/K",
                        tuple(SCHEDULES))
    revive: bool = opt(False, "let pruned weights come back in later rounds (FORCE); default: no (Iter-SNIP)")
    batch_size: int = opt(1024, "examples in the scoring batch (the same batch every round)", low=1)
    train_mode: bool = opt(True, "BatchNorm uses batch statistics while scoring (--no-train-mode: eval mode)")

    def __post_init__(self):
        validate_fields(self)


@register("iter_snip", config=IterSnipConfig, data_free=False, mutates=True,
          description="iterative SNIP (FORCE-style schedule) to target_sparsity (needs data)")
def iter_snip(model, ctx, cfg: IterSnipConfig):
    """Round k: weights are ``w0 * m`` (m the current mask), score ``|dL/d(w*m) * w0|`` (the
    gradient w.r.t. the mask, as in FORCE), keep the best ``round((1 - s_k) * n)`` entries pooled
    over layers (exact count, ties by position), pruned entries excluded unless ``revive``.
    Returned scores use the iterative encoding of ``yopo.methods.support.encoding``: calibrating at
    ``target_sparsity`` (global mode, min_keep=0) gives exactly the schedule's final mask."""
    with seeded(ctx.seed):
        weights = prepare(model, ctx, cfg.train_mode)
        w0 = {n: w.detach().clone() for n, w in weights.items()}
        x, y = get_batch(ctx.data, cfg.batch_size, ctx.device)
        enc = IterativeEncoder(ctx.layers, cfg.iters, ctx.device)
        for s_k in SCHEDULES[cfg.schedule](cfg.target_sparsity, cfg.iters):
            masks = enc.split(enc.alive)
            with torch.no_grad():
                for n, w in weights.items():
                    w.copy_(w0[n] * masks[n])
            grads = torch.autograd.grad(loss(model, x, y), list(weights.values()))
            key = torch.cat([(g * w0[n]).abs().flatten() for n, g in zip(weights, grads)])
            enc.step(key, s_k, revive=cfg.revive)
    return enc.scores()
