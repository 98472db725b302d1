"""The whole job: seed -> build with init -> score once -> calibrate -> apply masks -> train from
that same initialization."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ...core.calibration import calibrate
from ...core.family import Family, check_fingerprint, load_mask, save_mask
from ...core.io import write_json
from ...core.layers import prunable_layers
from ...core.masks import apply_masks, get_masks, split_state_dict
from ...core.registry import get_method, score, scoring_batch_size, with_target
from ...core.validate import check_sparsity
from ...models import build, input_kwargs
from .config import TrainConfig
from .loop import CHECKPOINT, load_checkpoint, train

DENSE = (None, "dense", "none")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def setup_distributed() -> tuple[int, int, int]:
    """(rank, world, local_rank); initializes the process group when launched by torchrun
    (WORLD_SIZE > 1) and it is not initialized yet (NCCL with CUDA, gloo otherwise)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:
        local = int(os.environ.get("LOCAL_RANK", 0))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), world, local
    return 0, 1, 0


def _layer_spec(model, names) -> dict:
    have = {l.name: list(l.shape) for l in prunable_layers(model)}
    return {"layers": [[n, have.get(n)] for n in names]}


def resolve_masks(masks, model, *, sparsity: float, mode: str = "global", robust: str = "mad",
                  min_keep: int = 1, model_name: str | None = None) -> tuple[dict, dict]:
    """Masks for ``model`` from a dict, a :class:`yopo.Family`, or a file (a family artifact from
    ``yopo prune``, calibrated at ``sparsity``/``mode``, or a bit-packed mask file). Returns
    (masks, provenance). A mask for another architecture raises a one-line ``ValueError``."""
    info: dict = {}
    what = "masks"
    if isinstance(masks, (str, os.PathLike)):
        path = Path(masks)
        what = f"mask file {str(path)!r}"
        if not path.is_file():
            raise FileNotFoundError(f"{what} does not exist")
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(str(path), framework="pt") as f:
                fmt = (f.metadata() or {}).get("yopo_format")
        except (SafetensorError, OSError) as e:  # not a safetensors file, or unreadable
            raise ValueError(f"{what} is not a safetensors file ({type(e).__name__})") from None
        if fmt == "family/1":
            masks = Family.load(path)
        elif fmt == "mask/1":
            masks, meta = load_mask(path)
            info = {"mask_meta": meta}
        else:
            raise ValueError(f"{what} has yopo_format={fmt!r}; expected a family (family/1) or mask (mask/1) file")
        info["mask_file"] = str(path)
    if isinstance(masks, Family):
        fam = masks
        try:
            fam.check(model)
        except ValueError as e:
            raise ValueError(f"{what} was made for model {fam.meta.get('model')!r} and does not fit "
                             f"{model_name or type(model).__name__}: {e}") from None
        cal = fam.calibrate(sparsity, mode=mode, robust=robust, min_keep=min_keep)
        info.update(method=fam.meta.get("method"), family_seed=fam.meta.get("seed"))
        return cal.masks, info
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be a dict, a Family or a file path; got {type(masks).__name__}")
    expected = {"layers": [[n, list(m.shape)] for n, m in masks.items()]}
    try:
        check_fingerprint(expected, model)
    except ValueError as e:
        src = info.get("mask_meta", {}).get("model")
        raise ValueError(f"{what}{f' (made for model {src!r})' if src else ''} does not fit "
                         f"{model_name or type(model).__name__}: {e}") from None
    return {n: m.bool() for n, m in masks.items()}, info


def run(cfg: TrainConfig, *, method: str | None = "yopo", sparsity: float = 0.9, mode: str = "global",
        masks=None, out_dir=None, resume: bool = False, progress: bool = True, hooks=(), **method_opts) -> dict:
    """Prune at initialization and train; returns the final metrics.

    Pipeline: ``seed_everything(cfg.seed)`` -> load data -> ``yopo.models.build(cfg.model,
    num_classes, init=cfg.init, seed=cfg.seed)`` -> ``yopo.score(model, method, seed=cfg.seed,
    data=<one training batch, data-dependent methods only>, **method_opts)`` ->
    ``yopo.calibrate(scores, sparsity, mode=mode)`` -> ``yopo.apply_masks`` -> :func:`train` from
    that same initialization.

    ``method``: a registered scoring method, or ``None``/``"dense"`` for no pruning.
    ``masks``: instead of scoring, a dict {name: bool tensor}, a :class:`yopo.Family`, or a path to
    a family artifact (calibrated at ``sparsity``/``mode``) or a bit-packed mask file.
    ``out_dir``: writes config.json, mask.safetensors, metrics.jsonl/.csv, checkpoint.pt,
    result.json. ``resume=True`` continues from ``out_dir``'s checkpoint (masks are read from it).
    ``hooks``: training hooks passed to :func:`train` (see :class:`yopo.experiment.train.Hook`).

    Returns {"test_acc", "test_loss", "train_loss", "train_acc", "epochs", "time_s", "sparsity",
    "params", "params_kept", "flops", "flops_kept", "model", "dataset", "method", "mode", "seed",
    "num_classes", "history", "out_dir", "counts" (per layer), "wall_s"}. ``flops`` are forward
    FLOPs per sample; ``sparsity`` is the fraction of prunable weights pruned.
    """
    t_start = time.perf_counter()
    cfg = dataclasses.replace(cfg, progress=progress and cfg.progress)
    if masks is None and method not in DENSE:
        check_sparsity(sparsity)
        get_method(method)  # unknown method: fail before loading data
    from ...models import check_model
    check_model(cfg.model or "resnet20")  # unknown model: fail before loading data
    rank, world, local_rank = setup_distributed()
    device = _device(cfg.device, local_rank)
    cfg = cfg.resolved()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} is not divisible by the {world} DDP processes")
    seed_everything(cfg.seed)
    from ..data import load_data
    data = load_data(cfg.dataset, cfg.data_root, batch_size=cfg.batch_size // world, seed=cfg.seed,
                     subset=cfg.subset, subset_seed=cfg.subset_seed, test_subset=cfg.test_subset,
                     augment=cfg.augment, device=device, rank=rank, world=world,
                     cache_dir=cfg.cache_dir, workers=cfg.workers, image_size=cfg.image_size)
    cfg = cfg.resolved(data.num_classes)
    model = build(cfg.model, cfg.num_classes, init=cfg.init, seed=cfg.seed,
                  **input_kwargs(cfg.model, data.input_shape)).to(device)
    out = Path(out_dir) if out_dir is not None else None
    ckpt = out / CHECKPOINT if out is not None else None
    provenance: dict = {}
    if resume and ckpt is not None and ckpt.is_file():
        prev = json.loads((out / "config.json").read_text()) if (out / "config.json").is_file() else None
        if prev is not None and (prev.get("method"), prev.get("sparsity"), prev.get("mode")) != (
                method if masks is None else prev.get("method"), sparsity, mode):
            raise ValueError(f"--resume in {out}: it holds a run with method={prev.get('method')!r}, "
                             f"sparsity={prev.get('sparsity')}, mode={prev.get('mode')!r}; resume with the same "
                             f"settings or use another --out")
        # the masks travel in the checkpoint (beside the state dict; older checkpoints: as
        # weight_mask entries in it): no rescoring
        blob = load_checkpoint(ckpt, map_location="cpu")
        m = blob.get("masks") or split_state_dict(blob["model"])[1]
        if m:
            apply_masks(model, m)
        label = "checkpoint"
    elif masks is not None:
        m, provenance = resolve_masks(masks, model, sparsity=sparsity, mode=mode, robust=cfg.robust,
                                      min_keep=cfg.min_keep, model_name=cfg.model)
        apply_masks(model, m)
        label = "mask"
    elif method in DENSE:
        label = "dense"
    else:
        meth = get_method(method)
        method_opts = with_target(method, method_opts, sparsity, data.input_shape)
        batch = None
        if not meth.data_free:  # one scoring batch of the method's own size (SNIP/GraSP: 1024, App. E)
            batch = data.example_batch(scoring_batch_size(method, method_opts, cfg.batch_size // world))
        scores = score(model, method, seed=cfg.seed, data=batch, exclude=cfg.exclude, **method_opts)
        m = calibrate(scores, sparsity, mode=mode, robust=cfg.robust, min_keep=cfg.min_keep)
        if world > 1:  # every rank trains with rank 0's mask
            for t in m.values():
                buf = t.to(device=device if dist.get_backend() == "nccl" else "cpu", dtype=torch.uint8)
                dist.broadcast(buf, 0)
                t.copy_(buf.bool())
        apply_masks(model, m)
        label = method
    seed_everything(cfg.seed)  # training randomness does not depend on how the mask was obtained
    from ...core.counting import count
    counts = count(model, data.example_batch(2)[0], exclude=cfg.exclude)  # sparsity over the layers calibrated
    applied = get_masks(model)
    if out is not None and rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {"cfg": cfg.to_dict(), "method": method if masks is None else label,
                                         "sparsity": sparsity, "mode": mode, "method_opts": method_opts,
                                         "provenance": provenance, "world": world})
        if applied and not (resume and label == "checkpoint"):
            save_mask(out / "mask.safetensors", applied, {"model": cfg.model, "method": label, "sparsity": sparsity,
                                                          "mode": mode, "seed": cfg.seed})
    res = train(model, data, cfg, out_dir=out, resume=resume, hooks=hooks)
    res.update(sparsity=counts.sparsity if applied else 0.0, params=counts.params, params_kept=counts.params_kept,
               flops=counts.flops, flops_kept=counts.flops_kept, model=cfg.model, dataset=cfg.dataset,
               method=label, mode=mode, seed=cfg.seed, num_classes=cfg.num_classes,
               out_dir=str(out) if out is not None else None, counts=counts.as_dict()["layers"],
               wall_s=time.perf_counter() - t_start, target_sparsity=sparsity if label != "dense" else 0.0)
    if out is not None and rank == 0:
        write_json(out / "result.json", json.loads(json.dumps(res, default=str)))
    return res
