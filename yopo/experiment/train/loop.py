"""The training loop: plain PyTorch (Lightning-Fabric style), small hooks, DDP-aware.

Every epoch: train on the epoch's (seeded) batches, check that every pruned weight is exactly 0
(:func:`yopo.core.masks.assert_pruned_zero`, a failure stops the run), evaluate, write the metrics
(JSONL + CSV) and an atomic checkpoint (model incl. masks, optimizer, scheduler, AMP scaler, RNG
states, history). ``resume=True`` continues from that checkpoint and ends bit-identical to an
uninterrupted run: data order and augmentation depend only on (seed, epoch) and the global RNGs
are restored.
"""
from __future__ import annotations

import csv
import io
import json
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ...core.io import atomic_path, write_text
from ...core.masks import assert_pruned_zero, get_masks
from ...core.progress import bars_enabled, get_logger
from .config import TrainConfig

log = get_logger("train")
CHECKPOINT = "checkpoint.pt"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
# a run whose last-epoch train loss is above this fraction of the loss of predicting the class
# frequencies has learnt next to nothing (see TrainingStalledWarning)
STALLED_LOSS_FRACTION = 0.9


class TrainingStalledWarning(UserWarning):
    """Training ended with the train loss near the class-prior loss: the net predicts little more
    than the class frequencies. Seen with very sparse unnormalized nets whose few surviving units of
    some layer all die (dead ReLUs) early in training; the run's accuracy is then a failure to train,
    not a property of the mask alone. The result also carries ``stalled = True``."""


class Hook:
    """Base class for training hooks; override any subset of the methods."""

    def on_train_start(self, state: "TrainState") -> None: ...

    def on_step_end(self, state: "TrainState") -> None: ...

    def on_epoch_end(self, state: "TrainState", metrics: dict) -> None: ...

    def on_train_end(self, state: "TrainState", result: dict) -> None: ...


@dataclass
class TrainState:
    """What hooks see. ``epoch`` counts completed epochs at ``on_epoch_end``; ``step`` optimizer steps."""

    model: nn.Module
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    cfg: TrainConfig
    out_dir: Path | None
    rank: int = 0
    world: int = 1
    epoch: int = 0
    step: int = 0
    history: list = field(default_factory=list)
    stop: bool = False


def _call(hooks, name, *args) -> None:
    for h in hooks:
        fn = getattr(h, name, None)
        if fn is not None:
            fn(*args)


def lr_factor(cfg: TrainConfig, steps_per_epoch: int):
    """Per-step multiplier of the initial lr: cosine to 0 over all steps, or step decay by epoch."""
    total = cfg.epochs * steps_per_epoch
    r = cfg.recipe_obj

    def f(step: int) -> float:
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        if cfg.schedule == "step":
            return r.gamma ** ((step // steps_per_epoch) // r.step_size)
        return 1.0
    return f


def rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _all_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


@torch.no_grad()
def _nhwc(model: nn.Module) -> bool:
    """Whether the model's convolution weights are channels-last (then its inputs are made so too)."""
    w = next((p for p in model.parameters() if p.dim() == 4), None)
    return w is not None and not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last)


@torch.no_grad()  # no autograd graph: over a whole test set it would hold every batch's activations
def evaluate(model: nn.Module, loader, *, amp: bool = False, world: int = 1) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in percent) of ``model`` over ``loader`` (summed over DDP ranks)."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    acc = torch.zeros(3, dtype=torch.float64, device=dev)  # loss sum, correct, count
    nhwc = _nhwc(model)
    for x, y in loader:
        if nhwc and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp):
            out = model(x)
        acc[0] += F.cross_entropy(out.float(), y, reduction="sum")
        acc[1] += (out.argmax(1) == y).sum()
        acc[2] += len(y)
    model.train(was)
    acc = _all_sum(acc, world)
    n = max(float(acc[2]), 1.0)
    return float(acc[0]) / n, 100.0 * float(acc[1]) / n


def _write_logs(out_dir: Path, history: list[dict]) -> None:
    write_text(out_dir / METRICS_JSONL, "".join(json.dumps(h, sort_keys=True) + "\n" for h in history))
    keys = list(dict.fromkeys(k for h in history for k in h))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    write_text(out_dir / METRICS_CSV, buf.getvalue())


def save_checkpoint(path: Path, state: TrainState) -> None:
    # masks are not in the model's state dict (it stays loadable into a plain model): saved beside it
    blob = {"model": state.model.state_dict(), "masks": get_masks(state.model), "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(), "scaler": state.scaler.state_dict(),
            "epoch": state.epoch, "step": state.step, "history": state.history, "rng": rng_state(),
            "cfg": state.cfg.to_dict()}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_checkpoint(path, map_location="cpu") -> dict:
    # our own file, holding numpy/python RNG states: a full (not weights-only) unpickle
    return torch.load(path, map_location=map_location, weights_only=False)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(model: nn.Module, data, cfg: TrainConfig, out_dir=None, resume: bool = False, hooks=()) -> dict:
    """Train ``model`` (already masked, on the data's device) on ``data`` (:class:`yopo.experiment.data.Data`).

    ``cfg`` is resolved against its recipe first. With ``out_dir``, per-epoch metrics go to
    ``metrics.jsonl``/``metrics.csv`` and a checkpoint to ``checkpoint.pt`` (atomic). With
    ``resume=True`` and a checkpoint there, training continues after its last completed epoch.
    Under ``torch.distributed`` (initialized by the caller, e.g. torchrun) the model is wrapped in
    DistributedDataParallel; rank 0 writes the files. Returns the last epoch's metrics plus
    ``epochs``, ``time_s`` (summed epoch times) and ``history`` (one dict per epoch).
    """
    cfg = cfg.resolved(getattr(data, "num_classes", None))
    rank, world = _world()
    device = next(model.parameters()).device
    amp = bool(cfg.amp if cfg.amp is not None else cfg.recipe_obj.amp) and device.type == "cuda"
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(data.train)
    if steps_per_epoch == 0:
        raise ValueError("the training set yields no batch; lower batch_size")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg, steps_per_epoch))
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    out = Path(out_dir) if out_dir is not None else None
    state = TrainState(model, net, opt, sched, scaler, cfg, out, rank, world)
    ckpt_path = out / CHECKPOINT if out is not None else None
    if resume and ckpt_path is not None and ckpt_path.is_file():
        blob = load_checkpoint(ckpt_path, map_location=device)
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        scaler.load_state_dict(blob["scaler"])
        state.epoch, state.step, state.history = blob["epoch"], blob["step"], list(blob["history"])
        set_rng_state(blob["rng"])
    show = cfg.progress and rank == 0
    nhwc = _nhwc(model)
    _call(hooks, "on_train_start", state)
    for epoch in range(state.epoch, cfg.epochs):
        t0 = time.perf_counter()
        data.train.set_epoch(epoch)
        net.train()
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
        seen = None  # labels seen this epoch, per class (the class-prior loss it is compared with)
        bar = None
        if show and bars_enabled():  # a terminal and the yopo logger at INFO (yopo.core.progress)
            from tqdm.auto import tqdm
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True)
        for i, (x, y) in enumerate(data.train):
            if nhwc and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                logits = net(x)
                loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            state.step += 1
            with torch.no_grad():
                sums[0] += loss.detach().double() * len(y)
                sums[1] += (logits.argmax(1) == y).sum()
                sums[2] += len(y)
                c = torch.bincount(y, minlength=logits.shape[-1]).double()
                seen = c if seen is None else seen + c
            _call(hooks, "on_step_end", state)
            if bar is not None:
                bar.update(1)
                if i % 20 == 0:
                    bar.set_postfix(loss=f"{loss.detach().item():.3f}")  # detached: no autograd warning
        if bar is not None:
            bar.close()
        assert_pruned_zero(model)  # a pruned weight that moved stops the run loudly
        sums = _all_sum(sums, world)
        state.epoch = epoch + 1
        metrics = {"epoch": state.epoch, "step": state.step, "lr": opt.param_groups[0]["lr"],
                   "train_loss": float(sums[0] / sums[2]), "train_acc": 100.0 * float(sums[1] / sums[2]),
                   "prior_loss": prior_loss(_all_sum(seen, world))}
        if state.epoch % cfg.eval_every == 0 or state.epoch == cfg.epochs:
            metrics["test_loss"], metrics["test_acc"] = evaluate(model, data.test, amp=amp, world=world)
        metrics["time_s"] = time.perf_counter() - t0
        state.history.append(metrics)
        if rank == 0:  # a log line (stderr on the command line; `yopo -q` hides it)
            log.info(f"epoch {state.epoch}/{cfg.epochs}  train_loss {metrics['train_loss']:.4f}  "
                     f"train_acc {metrics['train_acc']:.2f}%" + (f"  test_acc {metrics['test_acc']:.2f}%"
                                                                 if "test_acc" in metrics else "")
                     + f"  {metrics['time_s']:.1f}s")
        if out is not None and rank == 0:
            if cfg.checkpoint:
                save_checkpoint(ckpt_path, state)
            _write_logs(out, state.history)
        if world > 1:
            dist.barrier()
        _call(hooks, "on_epoch_end", state, metrics)
        if state.stop:
            break
    last = dict(state.history[-1]) if state.history else {}
    if "test_acc" not in last:  # stopped early between evaluations
        last["test_loss"], last["test_acc"] = evaluate(model, data.test, amp=amp, world=world)
    result = dict(last, epochs=state.epoch, time_s=sum(h["time_s"] for h in state.history),
                  history=state.history)
    result["stalled"] = stalled(last)
    if result["stalled"] and rank == 0:
        warnings.warn(TrainingStalledWarning(
            f"training stalled: the last epoch's train loss {last['train_loss']:.3f} is above "
            f"{STALLED_LOSS_FRACTION:g} x {last['prior_loss']:.3f}, the loss of predicting the class frequencies "
            f"(train acc {last['train_acc']:.1f}%, after {state.epoch} epochs): the net has learnt next to nothing; "
            f"with a very sparse net without normalization a layer's few surviving units may all have died "
            f"(dead ReLUs); a lower lr or kept_scale='layer_rms' starts it at a smaller scale"), stacklevel=2)
    _call(hooks, "on_train_end", state, result)
    return result


def prior_loss(counts: torch.Tensor) -> float:
    """Cross-entropy of predicting the class frequencies ``counts`` (C,): their entropy, in nats."""
    p = counts[counts > 0].double() / counts.sum()
    return float(-(p * p.log()).sum())


def stalled(metrics: dict) -> bool:
    """Whether an epoch's metrics show a net that learnt next to nothing (``TrainingStalledWarning``):
    its train loss above :data:`STALLED_LOSS_FRACTION` of the class-prior loss. False without both
    (a checkpoint written before ``prior_loss`` was recorded) or with one class (loss 0)."""
    prior, loss = metrics.get("prior_loss"), metrics.get("train_loss")
    if prior is None or loss is None or prior <= 0:
        return False
    return bool(loss > STALLED_LOSS_FRACTION * prior)
