"""ProsPr (Alizadeh et al. 2022): meta-gradient through a few SGD steps (needs data). Conventions
shared with the other gradient methods: :mod:`yopo.methods.support.gradients`."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..core.config import opt, validate_fields
from ..core.layers import get_weight
from ..core.registry import register
from .support.batches import get_batches
from .support.gradients import double_backward_attention, seeded


@dataclass(frozen=True)
class ProsprConfig:
    """ProsPr (Alizadeh et al. 2022): meta-gradient of the loss after a few SGD steps w.r.t. the mask."""

    steps: int = opt(3, "inner SGD steps differentiated through (original: 3)", low=0, high=100)
    lr: float = opt(0.1, "inner SGD learning rate", low=0.0)
    momentum: float = opt(0.0, "inner SGD momentum (0 = plain SGD)", low=0.0, high=1.0)
    batch_size: int = opt(1024, "examples per batch", low=1)
    same_batch: bool = opt(True, "use one batch for every inner step and the outer loss (--no-same-batch: "
                                 "consecutive batches, one per step plus one for the outer loss)")
    train_mode: bool = opt(True, "BatchNorm uses batch statistics while scoring (--no-train-mode: eval mode)")

    def __post_init__(self):
        validate_fields(self)


@register("prospr", config=ProsprConfig, data_free=False, mutates=True,
          description="ProsPr: |dL(w_M)/dc| through M SGD steps from w*c (needs data)")
def prospr(model, ctx, cfg: ProsprConfig):
    """Scores ``|dL(w_M)/dc|`` at c = 1, where ``w_0 = w * c`` and w_M is reached by ``steps``
    SGD steps (all trainable parameters are updated, the graph is kept through the updates);
    with ``steps=0`` this is SNIP. Non-negative. BatchNorm running statistics of the copy change
    during the inner steps (train mode); the caller's model does not."""
    with seeded(ctx.seed), double_backward_attention():
        model.to(ctx.device)
        model.train(cfg.train_mode)
        names = [l.name for l in ctx.layers]
        params = {k: v.detach() for k, v in model.named_parameters()}
        buffers = dict(model.named_buffers())
        # a prunable weight reached by its *_orig name (torch prune) is looked up through get_weight
        key_of = {}
        for n in names:
            w = get_weight(model, n)
            key_of[n] = next(k for k, v in model.named_parameters() if v is w)
        c = {n: torch.ones_like(params[key_of[n]], requires_grad=True) for n in names}
        masked = {key_of[n]: n for n in names}
        w = {k: (v * c[masked[k]]) if k in masked else v.clone().requires_grad_(True) for k, v in params.items()}
        n_batches = 1 if cfg.same_batch else cfg.steps + 1
        batches = get_batches(ctx.data, n_batches, cfg.batch_size, ctx.device)
        vel = {k: torch.zeros_like(v) for k, v in w.items()}
        for t in range(cfg.steps):
            x, y = batches[0 if cfg.same_batch else t]
            loss = F.cross_entropy(functional_call(model, {**w, **buffers}, (x,)), y)
            # parameters the forward does not use (e.g. an embedding bypassed by inputs_embeds) get 0
            grads = torch.autograd.grad(loss, list(w.values()), create_graph=True, allow_unused=True,
                                        materialize_grads=True)
            new = {}
            for (k, v), g in zip(w.items(), grads):
                vel[k] = cfg.momentum * vel[k] + g
                new[k] = v - cfg.lr * vel[k]
            w = new
        x, y = batches[0 if cfg.same_batch else cfg.steps]
        loss = F.cross_entropy(functional_call(model, {**w, **buffers}, (x,)), y)
        dc = torch.autograd.grad(loss, [c[n] for n in names])
    return {n: d.detach().abs() for n, d in zip(names, dc)}
