"""Data-dependent gradient baselines: SNIP, GraSP, ProsPr and iterative SNIP (FORCE-style).

Common conventions (all four):

* Scores cover the prunable layers only (Conv1d/2d/3d and Linear weights, see ``yopo.layers``);
  biases and norm layers are never scored or pruned, but they take part in the forward pass.
* The loss is cross-entropy of the model's logits on one batch from ``ctx.data`` (an ``(x, y)``
  pair or an iterable of batches; :func:`yopo.methods.common.get_batch`), ``batch_size``
  examples (paper App. E: one batch of 1024 when feasible).
* BatchNorm uses batch statistics while scoring (``train_mode=True``, as the reference code does,
  which scores a model in train mode); ``--no-train-mode`` scores in eval mode. The methods run on
  the deep copy that ``yopo.score`` hands to ``mutates=True`` methods, so the caller's weights,
  running statistics and train/eval flags are never touched.
* Randomness (dropout, if any) is seeded from ``ctx.seed`` inside a forked RNG.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..config import opt
from ..layers import get_weight
from ..registry import register
from ..validate import check_choice, check_float, check_int
from .common import SCHEDULES, IterativeEncoder, check_bool, check_common, get_batch, get_batches


@contextlib.contextmanager
def _seeded(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _prepare(model: nn.Module, ctx, train_mode: bool) -> dict[str, torch.Tensor]:
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


def _loss(model, x, y, temperature: float = 1.0):
    return F.cross_entropy(model(x) / temperature, y)


# -------------------------------------------------------------------------------------------- SNIP

@dataclass(frozen=True)
class SnipConfig:
    """SNIP (Lee et al. 2019): connection sensitivity |dL/dc| = |g * w| on one batch."""

    batch_size: int = opt(1024, "examples in the single scoring batch (paper App. E: 1024)")
    train_mode: bool = opt(True, "BatchNorm uses batch statistics while scoring (--no-train-mode: eval mode)")

    def validate(self):
        check_int("batch_size", self.batch_size, 1)
        check_bool("train_mode", self.train_mode)
        return self


@register("snip", config=SnipConfig, data_free=False, mutates=True,
          description="SNIP: |g * w| on one batch (needs data)")
def snip(model, ctx, cfg: SnipConfig):
    """Scores ``|dL/dw * w|`` (= |dL/dc| at the all-ones mask c), non-negative."""
    with _seeded(ctx.seed):
        weights = _prepare(model, ctx, cfg.train_mode)
        x, y = get_batch(ctx.data, cfg.batch_size, ctx.device)
        grads = torch.autograd.grad(_loss(model, x, y), list(weights.values()))
    return {n: (g * w).detach().abs() for (n, w), g in zip(weights.items(), grads)}


# ------------------------------------------------------------------------------------------- GraSP

@dataclass(frozen=True)
class GraspConfig:
    """GraSP (Wang et al. 2020): Hessian-gradient product with temperature T = 200."""

    batch_size: int = opt(1024, "examples in the single scoring batch (paper App. E: 1024)")
    temperature: float = opt(200.0, "logits are divided by T before the loss (original: 200)")
    train_mode: bool = opt(True, "BatchNorm uses batch statistics while scoring (--no-train-mode: eval mode)")

    def validate(self):
        check_int("batch_size", self.batch_size, 1)
        check_bool("train_mode", self.train_mode)
        check_float("temperature", self.temperature, 0.0, low_open=True)
        return self


@register("grasp", config=GraspConfig, data_free=False, mutates=True,
          description="GraSP: theta * Hg (keep-high form of the paper's -theta*Hg, remove-high) (needs data)")
def grasp(model, ctx, cfg: GraspConfig):
    """GraSP saliency, returned in yopo's *higher = keep* convention.

    Sign convention. The GraSP paper defines ``S(-theta) = -theta * Hg`` (H the Hessian, g the
    gradient of the temperature-scaled loss) and *removes the weights with the largest S*: their
    removal reduces the gradient norm least (or increases it). The official code does exactly
    that (it keeps entries with ``-theta*Hg`` at or below the cut). yopo keeps the highest scores,
    so this method returns ``-S = theta * Hg``: keeping the highest ``theta * Hg`` is the same
    mask as removing the highest ``-theta * Hg``. Scores are signed (not non-negative).

    Hg is computed exactly by double backward: ``Hg = d/dw (g_detached . dL/dw)`` on the same
    batch. Unlike the official code, Linear layers are not re-initialized before scoring (the
    caller's initialization is what gets scored, as for every other method).
    """
    with _seeded(ctx.seed):
        weights = _prepare(model, ctx, cfg.train_mode)
        params = list(weights.values())
        x, y = get_batch(ctx.data, cfg.batch_size, ctx.device)
        g = torch.autograd.grad(_loss(model, x, y, cfg.temperature), params)
        grad_f = torch.autograd.grad(_loss(model, x, y, cfg.temperature), params, create_graph=True)
        z = sum((gi.detach() * fi).sum() for gi, fi in zip(g, grad_f))
        hg = torch.autograd.grad(z, params)
    return {n: (w * h).detach() for (n, w), h in zip(weights.items(), hg)}


# ------------------------------------------------------------------------------------------ ProsPr

@dataclass(frozen=True)
class ProsprConfig:
    """ProsPr (Alizadeh et al. 2022): meta-gradient of the loss after a few SGD steps w.r.t. the mask."""

    steps: int = opt(3, "inner SGD steps differentiated through (original: 3)")
    lr: float = opt(0.1, "inner SGD learning rate")
    momentum: float = opt(0.0, "inner SGD momentum (0 = plain SGD)")
    batch_size: int = opt(1024, "examples per batch")
    same_batch: bool = opt(True, "use one batch for every inner step and the outer loss (--no-same-batch: "
                                 "consecutive batches, one per step plus one for the outer loss)")
    train_mode: bool = opt(True, "BatchNorm uses batch statistics while scoring (--no-train-mode: eval mode)")

    def validate(self):
        check_int("steps", self.steps, 0, 100)
        check_float("lr", self.lr, 0.0)
        check_float("momentum", self.momentum, 0.0, 1.0)
        check_int("batch_size", self.batch_size, 1)
        check_bool("train_mode", self.train_mode)
        check_bool("same_batch", self.same_batch)
        return self


@register("prospr", config=ProsprConfig, data_free=False, mutates=True,
          description="ProsPr: |dL(w_M)/dc| through M SGD steps from w*c (needs data)")
def prospr(model, ctx, cfg: ProsprConfig):
    """Scores ``|dL(w_M)/dc|`` at c = 1, where ``w_0 = w * c`` and w_M is reached by ``steps``
    SGD steps (all trainable parameters are updated, the graph is kept through the updates);
    with ``steps=0`` this is SNIP. Non-negative. BatchNorm running statistics of the copy change
    during the inner steps (train mode); the caller's model does not."""
    with _seeded(ctx.seed):
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
            grads = torch.autograd.grad(loss, list(w.values()), create_graph=True)
            new = {}
            for (k, v), g in zip(w.items(), grads):
                vel[k] = cfg.momentum * vel[k] + g
                new[k] = v - cfg.lr * vel[k]
            w = new
        x, y = batches[0 if cfg.same_batch else cfg.steps]
        loss = F.cross_entropy(functional_call(model, {**w, **buffers}, (x,)), y)
        dc = torch.autograd.grad(loss, [c[n] for n in names])
    return {n: d.detach().abs() for n, d in zip(names, dc)}


# ------------------------------------------------------------------------------ iterative SNIP

@dataclass(frozen=True)
class IterSnipConfig:
    """Iterative SNIP / FORCE (de Jorge et al. 2021): SNIP re-scored on the masked net over a schedule."""

    target_sparsity: float = opt(0.9, "final sparsity of the native schedule (calibrate at the same value "
                                      "to get the method's own mask)")
    iters: int = opt(10, "pruning rounds K (FORCE uses 10-100)")
    schedule: str = opt("exponential", "sparsity after round k: exponential 1-(1-s)^(k/K), or linear s*k/K",
                        tuple(SCHEDULES))
    revive: bool = opt(False, "let pruned weights come back in later rounds (FORCE); default: no (Iter-SNIP)")
    batch_size: int = opt(1024, "examples in the scoring batch (the same batch every round)")
    train_mode: bool = opt(True, "BatchNorm uses batch statistics while scoring (--no-train-mode: eval mode)")

    def validate(self):
        check_common(self.target_sparsity, self.iters)
        check_choice("schedule", self.schedule, tuple(SCHEDULES))
        check_int("batch_size", self.batch_size, 1)
        check_bool("train_mode", self.train_mode)
        check_bool("revive", self.revive)
        return self


@register("iter_snip", config=IterSnipConfig, data_free=False, mutates=True,
          description="iterative SNIP (FORCE-style schedule) to target_sparsity (needs data)")
def iter_snip(model, ctx, cfg: IterSnipConfig):
    """Round k: weights are ``w0 * m`` (m the current mask), score ``|dL/d(w*m) * w0|`` (the
    gradient w.r.t. the mask, as in FORCE), keep the best ``round((1 - s_k) * n)`` entries pooled
    over layers (exact count, ties by position), pruned entries excluded unless ``revive``.
    Returned scores use the iterative encoding of ``yopo.methods.common``: calibrating at
    ``target_sparsity`` (global mode, min_keep=0) gives exactly the schedule's final mask."""
    with _seeded(ctx.seed):
        weights = _prepare(model, ctx, cfg.train_mode)
        w0 = {n: w.detach().clone() for n, w in weights.items()}
        x, y = get_batch(ctx.data, cfg.batch_size, ctx.device)
        enc = IterativeEncoder(ctx.layers, cfg.iters, ctx.device)
        for s_k in SCHEDULES[cfg.schedule](cfg.target_sparsity, cfg.iters):
            masks = enc.split(enc.alive)
            with torch.no_grad():
                for n, w in weights.items():
                    w.copy_(w0[n] * masks[n])
            grads = torch.autograd.grad(_loss(model, x, y), list(weights.values()))
            key = torch.cat([(g * w0[n]).abs().flatten() for n, g in zip(weights, grads)])
            enc.step(key, s_k, revive=cfg.revive)
    return enc.scores()
