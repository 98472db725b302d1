"""Helpers shared by the data-dependent gradient baselines (``snip``, ``grasp``, ``prospr``,
``iter_snip``: one module each under ``yopo.methods``) and their common conventions.

Common conventions (all four):

* Scores cover the prunable layers only (Conv1d/2d/3d and Linear weights, see ``yopo.core.layers``);
  biases and norm layers are never scored or pruned, but they take part in the forward pass.
* The loss is cross-entropy of the model's logits on one batch from ``ctx.data`` (an ``(x, y)``
  pair or an iterable of batches; :func:`yopo.methods.support.batches.get_batch`), ``batch_size``
  examples (paper App. E: one batch of 1024 when feasible).
* BatchNorm uses batch statistics while scoring (``train_mode=True``, as the reference code does,
  which scores a model in train mode); ``--no-train-mode`` scores in eval mode. The methods run on
  the deep copy that ``yopo.score`` hands to ``mutates=True`` methods, so the caller's weights,
  running statistics and train/eval flags are never touched.
* Randomness (dropout, if any) is seeded from ``ctx.seed`` inside a forked RNG.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ...core.layers import get_weight


@contextlib.contextmanager
def seeded(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def double_backward_attention():
    """Scaled-dot-product attention through its math kernel: the fused CPU/GPU kernels (used by
    ``nn.MultiheadAttention`` and transformers) have no double backward, which GraSP's
    Hessian-gradient product and ProsPr's meta-gradient need. Same values, slower."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3: no kernel selection (nor fused CPU attention)
        yield
        return
    with sdpa_kernel(SDPBackend.MATH):
        yield


def prepare(model: nn.Module, ctx, train_mode: bool) -> dict[str, torch.Tensor]:
    """Move the (copied) model to the scoring device, set the mode, and make only the prunable
    weights require gradients. Returns {name: weight parameter}."""
    model.to(ctx.device)
    model.train(train_mode)
    for p in model.parameters():
        p.requires_grad_(False)
    weights = {l.name: get_weight(model, l.name) for l in ctx.layers}
    for w in weights.values():
        w.requires_grad_(True)
    return weights


def loss(model, x, y, temperature: float = 1.0):
    return F.cross_entropy(model(x) / temperature, y)
