"""The whole job: seed -> build with init -> score once -> calibrate -> apply masks -> train from
that same initialization."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ...core.allocation import canonical
from ...core.calibration import Calibration, CalibrationSettings, excluded_layers, mort, resolve_settings
from ...core.config import from_mapping
from ...core.family import Family, check_fingerprint, load_mask, save_mask
from ...core.io import write_json
from ...core.layers import prunable_layers
from ...core.masks import apply_masks, get_masks, split_state_dict
from ...core.registry import get_method, score, scoring_batch_size, with_target
from ...core.validate import check_sparsity
from ...models import build, input_kwargs, width_kwargs
from .config import TrainConfig
from .diagnostics import calibration_record, warnings_once_per_run, with_connectivity
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


def _channels_last(cfg: TrainConfig, model, device) -> bool:
    """NHWC for models with 2-D convolutions: explicit setting, else on for CPU (where oneDNN's NHWC
    convolutions are faster), off elsewhere."""
    if not any(p.dim() == 4 for p in model.parameters()):
        return False
    return cfg.channels_last if cfg.channels_last is not None else device.type == "cpu"


def resolve_masks(masks, model, *, sparsity: float, calibration: CalibrationSettings | None = None,
                  model_name: str | None = None, allow_dense=()) -> tuple[dict, dict, Calibration]:
    """Masks for ``model`` from a dict, a :class:`Calibration`, a :class:`yopo.Family`, or a file (a
    family artifact from ``yopo prune``, calibrated at ``sparsity`` with ``calibration``, default:
    the settings stored in the family; or a bit-packed mask file). ``calibration`` can only act on a
    family: with fixed masks it is a one-line ``ValueError``. Returns (masks, provenance, a
    :class:`Calibration` describing the masks). A mask for another architecture raises a one-line
    ``ValueError``; the masks must cover exactly the prunable layers of ``model`` (same shapes), except
    the layers matched by the glob patterns ``allow_dense`` (left dense)."""
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
            fam.check(model, allow_dense=allow_dense)
        except ValueError as e:
            raise ValueError(f"{what} was made for model {fam.meta.get('model')!r} and does not fit "
                             f"{model_name or type(model).__name__}: {e}") from None
        cal = fam.calibrate(sparsity, calibration)
        info.update(method=fam.meta.get("method"), family_seed=fam.meta.get("seed"))
        return cal.masks, info, cal
    if calibration is not None:
        raise ValueError(f"calibration settings cannot act on fixed {what}; they re-threshold a family "
                         f"(.safetensors from `yopo prune`) or scores: drop them")
    cal = masks if isinstance(masks, Calibration) else None
    if cal is not None:
        masks = cal.masks
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be a dict, a Calibration, a Family or a file path; got {type(masks).__name__}")
    expected = {"layers": [[n, list(m.shape)] for n, m in masks.items()]}
    try:
        check_fingerprint(expected, model, allow_dense=allow_dense, what="mask")
    except ValueError as e:
        src = info.get("mask_meta", {}).get("model")
        raise ValueError(f"{what}{f' (made for model {src!r})' if src else ''} does not fit "
                         f"{model_name or type(model).__name__}: {e}") from None
    masks = {n: m.bool() for n, m in masks.items()}
    if cal is None:  # describe the given masks; layers a stored `exclude` left dense are not counted
        stored = info.get("mask_meta", {}).get("calibration")
        settings = from_mapping(CalibrationSettings, stored, what=f"{what} calibration") if stored else None
        cal = Calibration.from_masks(masks, _dense_layers(masks, settings))
        if settings is not None:
            cal.settings = settings
    return masks, info, cal


def _dense_layers(masks: dict, settings: CalibrationSettings | None) -> set[str]:
    """The layers of ``masks`` that ``settings.exclude`` left dense (all-ones masks)."""
    if settings is None or not settings.exclude:
        return set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a pattern that matched nothing was reported when calibrating
        hit = excluded_layers(list(masks), settings.exclude)
    return {n for n in hit if bool(masks[n].all())}


def _score(model, method: str, opts: dict, sparsity, data, cfg: TrainConfig, world: int) -> dict:
    """``method``'s scores of ``model`` with the pipeline's defaults (native target, input shape,
    one scoring batch of the method's own size for data-dependent methods: SNIP/GraSP 1024, App. E)."""
    opts = with_target(method, opts, sparsity, data.input_shape)
    batch = None
    if not get_method(method).data_free:
        batch = data.example_batch(scoring_batch_size(method, opts, cfg.batch_size // world))
    return score(model, method, seed=cfg.seed, data=batch, **opts)


def run(cfg: TrainConfig, *, method: str | None = "yopo", sparsity: float = 0.9,
        calibration: CalibrationSettings | None = None, mode: str | None = None, masks=None, out_dir=None,
        resume: bool = False, progress: bool = True, hooks=(), **method_opts) -> dict:
    """Prune at initialization and train; returns the final metrics.

    Pipeline: ``seed_everything(cfg.seed)`` -> load data -> ``yopo.models.build(cfg.model,
    num_classes, init=cfg.weight_init, seed=cfg.seed)`` -> ``yopo.score(model, method,
    seed=cfg.seed, data=<one training batch, data-dependent methods only>, **method_opts)`` ->
    ``yopo.core.calibration.mort(scores, sparsity, calibration)`` -> ``yopo.apply_masks`` ->
    :func:`train` from that same initialization.

    ``method``: a registered scoring method, or ``None``/``"dense"`` for no pruning.
    ``calibration``: how scores become masks (:class:`CalibrationSettings`; default: its defaults,
    or for a family given as ``masks`` the settings stored in it); ``mode``: the paper's name of
    the allocation (global / layerwise / local), an alias of ``calibration.allocation``. For
    ``allocation="from:<method>"`` that method is scored too (with its default options).
    ``masks``: instead of scoring, a :class:`yopo.Family` or a path to a family artifact
    (calibrated here at ``sparsity``), or fixed masks: a dict {name: bool tensor}, a
    :class:`Calibration` (masks with their settings and diagnostics, as a sweep passes them) or a
    bit-packed mask file. Calibration settings cannot act on fixed masks (a ``ValueError``).
    ``out_dir``: writes config.json, mask.safetensors, metrics.jsonl/.csv, checkpoint.pt,
    result.json. ``resume=True`` continues from ``out_dir``'s checkpoint (masks are read from it).
    ``hooks``: training hooks passed to :func:`train` (see :class:`yopo.experiment.train.Hook`).

    Returns {"test_acc", "test_loss", "train_loss", "train_acc", "epochs", "time_s", "sparsity",
    "params", "params_kept", "flops", "flops_kept", "model", "dataset", "method", "allocation",
    "seed", "num_classes", "history", "out_dir", "counts" (per layer), "calibration" (the settings
    used, per-layer kept / empty rows / empty input columns / effective weights, the effective
    sparsity and the warnings), "wall_s"}. Accuracies (``test_acc``, ``train_acc``, also per epoch
    in ``history``) are in **percent** (0-100), as everywhere in yopo. ``flops`` are forward FLOPs
    per sample; ``sparsity`` is the fraction of the calibrated prunable weights that are zero
    (layers that ``exclude`` leaves dense are not counted).
    """
    t_start = time.perf_counter()
    cfg = dataclasses.replace(cfg, progress=progress and cfg.progress)
    explicit = calibration is not None or mode is not None
    if explicit:
        calibration = resolve_settings(calibration, **({"mode": mode} if mode is not None else {}))
    if masks is None and method in DENSE and explicit:
        raise ValueError("a dense run calibrates nothing: drop the calibration settings")
    if masks is None and method not in DENSE:
        check_sparsity(sparsity)
        get_method(method)  # unknown method: fail before loading data
        calibration = calibration or CalibrationSettings()
        if calibration.budget_method is not None:
            get_method(calibration.budget_method)
    if isinstance(masks, Calibration) and explicit:
        raise ValueError("masks given as a Calibration carry their own settings: drop calibration=/mode=")
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
    if cfg.num_classes < data.num_classes:  # labels past the classifier would fail mid-training
        raise ValueError(f"num_classes={cfg.num_classes} but dataset {cfg.dataset!r} has {data.num_classes} classes")
    model = build(cfg.model, cfg.num_classes, init=cfg.weight_init, seed=cfg.seed,
                  **input_kwargs(cfg.model, data.input_shape), **width_kwargs(cfg.model, cfg.model_width)).to(device)
    if _channels_last(cfg, model, device):
        model = model.to(memory_format=torch.channels_last)
    out = Path(out_dir) if out_dir is not None else None
    ckpt = out / CHECKPOINT if out is not None else None
    provenance: dict = {}
    cal: Calibration | None = None
    recorded = masks.settings if isinstance(masks, Calibration) else calibration
    if resume and ckpt is not None and ckpt.is_file():
        prev = json.loads((out / "config.json").read_text()) if (out / "config.json").is_file() else None
        if prev is not None:
            was = (prev.get("method"), prev.get("sparsity"))
            now = (method if masks is None else prev.get("method"), sparsity)
            if recorded is not None and "calibration" in prev:  # the settings it calibrates (or was calibrated) with
                # a field added since the checkpoint was written reads as its default (which
                # reproduces the old behaviour), so adding a setting never strands a resumable run
                was = was + ({**CalibrationSettings().to_dict(), **prev["calibration"]},)
                now = now + (recorded.to_dict(),)
            elif recorded is not None and prev.get("mode") is not None:  # written before CalibrationSettings
                was, now = was + (canonical(prev["mode"]),), now + (canonical(recorded.allocation),)
            if was != now:
                raise ValueError(f"--resume in {out}: it holds a run with method={prev.get('method')!r}, "
                                 f"sparsity={prev.get('sparsity')}, calibration={prev.get('calibration')}; resume "
                                 f"with the same settings or use another --out")
        # the masks travel in the checkpoint (beside the state dict; older checkpoints: as
        # <attr>_mask entries in it): no rescoring
        blob = load_checkpoint(ckpt, map_location="cpu")
        m = blob.get("masks") or split_state_dict(blob["model"])[1]
        if m:
            apply_masks(model, m)
            cal = Calibration.from_masks(m, _dense_layers(m, recorded))
            if recorded is not None:
                cal.settings = recorded
        label = "checkpoint"
    elif masks is not None:
        with warnings_once_per_run():
            m, provenance, cal = resolve_masks(masks, model, sparsity=sparsity, calibration=calibration,
                                               model_name=cfg.model)
        apply_masks(model, m, kept_scale=cal.settings.kept_scale, input_shape=data.input_shape)
        label = "mask"
    elif method in DENSE:
        label = "dense"
    else:
        scores = _score(model, method, method_opts, sparsity, data, cfg, world)
        budget = None
        if calibration.budget_method is not None:
            budget = _score(model, calibration.budget_method, {}, sparsity, data, cfg, world)
        with warnings_once_per_run():
            cal = mort(scores, sparsity, calibration, budget_scores=budget)
        m = cal.masks
        if world > 1:  # every rank trains with rank 0's mask
            for t in m.values():
                buf = t.to(device=device if dist.get_backend() == "nccl" else "cpu", dtype=torch.uint8)
                dist.broadcast(buf, 0)
                t.copy_(buf.bool())
        apply_masks(model, m, kept_scale=cal.settings.kept_scale, input_shape=data.input_shape)
        label = method
    seed_everything(cfg.seed)  # training randomness does not depend on how the mask was obtained
    from ...core.counting import count
    excluded = tuple(n for n, r in cal.layers.items() if r.excluded) if cal is not None else ()
    counts = count(model, data.example_batch(2)[0], exclude=excluded)  # sparsity over the layers calibrated
    applied = get_masks(model)
    diagnostics = None
    if cal is not None:
        diagnostics = calibration_record(with_connectivity(cal, model, data.input_shape))
    used = cal.settings.to_dict() if cal is not None else None
    if out is not None and rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {"cfg": cfg.to_dict(), "method": method if masks is None else label,
                                         "sparsity": sparsity, "calibration": used, "method_opts": method_opts,
                                         "provenance": provenance, "world": world})
        if applied and not (resume and label == "checkpoint"):
            save_mask(out / "mask.safetensors", applied, {"model": cfg.model, "method": label, "sparsity": sparsity,
                                                          "calibration": used, "seed": cfg.seed})
    res = train(model, data, cfg, out_dir=out, resume=resume, hooks=hooks)
    res.update(sparsity=counts.sparsity if applied else 0.0, params=counts.params, params_kept=counts.params_kept,
               flops=counts.flops, flops_kept=counts.flops_kept, model=cfg.model, dataset=cfg.dataset,
               method=label, allocation=cal.settings.allocation if cal is not None else None, seed=cfg.seed,
               num_classes=cfg.num_classes, out_dir=str(out) if out is not None else None,
               counts=counts.as_dict()["layers"], calibration=diagnostics,
               wall_s=time.perf_counter() - t_start, target_sparsity=sparsity if label != "dense" else 0.0)
    if out is not None and rank == 0:
        write_json(out / "result.json", json.loads(json.dumps(res, default=str)))
    return res
