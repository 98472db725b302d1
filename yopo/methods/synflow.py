"""SynFlow (Tanaka et al. 2020): iterative synaptic-flow pruning, data-free."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.config import opt, sparsity_rule, validate_fields
from ..core.layers import get_weight
from ..core.registry import register
from .support.encoding import MAX_ROUNDS
from .support.flow import iterative_flow
from .support.schedules import SCHEDULES
from .support.structure import first_prunable_module


@dataclass(frozen=True)
class SynflowConfig:
    """SynFlow: K rounds of |dR/dw * w| on the linearized (|w|, all-ones input) net."""

    target_sparsity: float = opt(0.9, "final sparsity of the native schedule (calibrate at the same value "
                                      "to get the method's own mask)", check=sparsity_rule)
    iters: int = opt(100, "pruning rounds K (original and paper App. E: 100)", low=1, high=MAX_ROUNDS)
    schedule: str = opt("exponential", "sparsity after round k: exponential 1-(1-s)^(k/K) (original), or "
                                       "linear s*k/K", tuple(SCHEDULES))
    double: bool = opt(True, "compute in float64 (the original's option against overflow in deep nets)")
    input_size: int = opt(32, "spatial size of the all-ones input (channels come from the first layer)", low=1)
    input_shape: tuple[int, ...] = opt((), "full input shape without batch dim, e.g. 3 64 64 "
                                           "(overrides input_size)", low=1)

    def __post_init__(self):
        validate_fields(self)


def _input_shape(model: nn.Module, cfg: SynflowConfig) -> tuple[int, ...]:
    if cfg.input_shape:
        return tuple(cfg.input_shape)
    first = first_prunable_module(model)
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    return (first.in_channels,) + (cfg.input_size,) * (first.weight.dim() - 2)  # Conv1d/2d/3d


@register("synflow", config=SynflowConfig, mutates=True,
          description="SynFlow: iterative synaptic flow to target_sparsity (data-free)")
def synflow(model, ctx, cfg: SynflowConfig):
    """Linearize the copy as the original does: eval mode (BatchNorm uses its running statistics),
    every floating parameter and buffer replaced by its absolute value, float64 if ``double``.
    Round k = 1..K: R = sum(model(ones)), score = |dR/dw * w| on the masked weights, keep the best
    ``round((1 - s_k) * n)`` unpruned entries pooled over layers (exact count: ties broken by
    position, never by ``<=`` on a threshold, which over-prunes ties). s_k follows the schedule and
    ends at ``target_sparsity``. Non-prunable layers (biases, BN) are never masked.

    Returned scores use the iterative encoding of ``yopo.methods.support.encoding`` (non-negative): the
    order is (round in which the entry was pruned, its synflow score in that round), survivors
    first, so calibrating at ``target_sparsity`` in global mode with ``min_keep=0`` returns exactly
    SynFlow's final mask, and lower sparsities give the masks of earlier rounds' order."""
    dtype = torch.float64 if cfg.double else torch.float32
    shape = _input_shape(model, cfg)
    model.to(device=ctx.device, dtype=dtype)
    model.eval()
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.abs_()
    weights = {l.name: get_weight(model, l.name) for l in ctx.layers}
    return iterative_flow(model, weights, ctx.layers, target=cfg.target_sparsity, rounds=cfg.iters,
                          schedule=cfg.schedule, input_shape=shape, device=ctx.device, dtype=dtype)
