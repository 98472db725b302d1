"""``yopo prune``: score a freshly initialized model once, save the family, show one mask."""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from ..core.calibration import MODES, ROBUST
from ..core.config import add_dataclass_args, from_args, opt, parse_options
from ..core.nm import INDIVISIBLE
from ..core.validate import check_sparsity
from ..methods.yopo.saliency import YopoConfig
from ..models import INITS


@dataclass(frozen=True)
class PruneArgs:
    model: str = opt("resnet20", "architecture name (see `yopo models`)")
    num_classes: int = opt(10, "classifier outputs")
    sparsity: float | None = opt(None, "target fraction of prunable weights set to zero, in [0, 1) "
                                 "(0.9 when unset; not with --pattern, which fixes it at 1 - N/M)")
    mode: str = opt("global", "global = YOPO-G, layerwise = per-layer stats with one alpha, local = YOPO-L", MODES)
    robust: str = opt("mad", "threshold statistics: median/MAD or mean/STD", ROBUST)
    min_keep: int = opt(1, "entries kept in every output row")
    col_keep: int = opt(0, "entries kept in every input column")
    seed: int = opt(0, "seed of the model initialization and of the scoring method")
    weight_init: str = opt("kaiming_normal", "weight initialization of the model (same default and seeding as "
                           "`yopo train --init`, so a family fits the model train builds)", INITS)
    method: str = opt("yopo", "scoring method (see `yopo methods`)")
    method_opt: tuple[str, ...] = opt((), "options of a non-YOPO method as KEY=VALUE (e.g. batch_size=256)")
    dataset: str | None = opt(None, "data for data-dependent methods (snip, grasp, prospr, iter_snip)")
    data_root: str | None = opt(None, "dataset folder (see `yopo train --help`)")
    exclude: tuple[str, ...] = opt((), "glob patterns of layers not to prune, or :first / :last")
    device: str = opt("cpu", "device to score on (cpu, cuda, cuda:1, ...)")
    out: str = opt("yopo_family.safetensors", "family artifact to write (saliency + fingerprint)")
    mask_out: str | None = opt(None, "also write the mask at --sparsity, bit-packed")
    pattern: str | None = opt(None, "N:M semi-structured mask instead of --sparsity (e.g. 2:4): N kept in every M "
                              "consecutive input entries (Linear: in-features; conv: in-channels at each kernel "
                              "position); see docs/structured.md")
    nm_indivisible: str = opt("error", "with --pattern: a layer whose input dimension is not divisible by M is an "
                              "error, or left dense", INDIVISIBLE)
    checkpoint: str | None = opt(None, "score a trained model: a local state dict (.pth/.pt/.safetensors) for "
                                 "--model, or a Hugging Face model folder (config.json + safetensors; offline)")
    semi_structured_out: str | None = opt(None, "with --pattern 2:4: also save the baked model with Linear weights as "
                                          "torch.sparse semi-structured tensors (CUDA GPU of compute capability "
                                          ">= 8.0 only)")


def add_parser(sub, name):
    p = sub.add_parser(name, help="compute the once-only saliency of a model, save it, print a mask",
                       description="Initialize MODEL with SEED, score it once (YOPO by default), write the "
                       "family artifact to OUT and print the per-layer mask at SPARSITY.")
    add_dataclass_args(p, PruneArgs)
    add_dataclass_args(p, YopoConfig, group="YOPO saliency (method yopo)")
    p.set_defaults(run=run)


def layer_table(cal, file=None) -> None:
    file = sys.stdout if file is None else file  # resolved per call: tests swap sys.stdout
    rows = [(n, "x".join(map(str, m.shape)), int(m.sum()), m.numel()) for n, m in cal.masks.items()]
    w = max(len(r[0]) for r in rows)
    print(f"{'layer':{w}s}  {'shape':>16s}  {'kept':>10s}  {'total':>10s}  sparsity", file=file)
    for n, shape, kept, total in rows:
        print(f"{n:{w}s}  {shape:>16s}  {kept:>10d}  {total:>10d}  {1 - kept / total:.4f}", file=file)
    if hasattr(cal, "pattern"):  # N:M (yopo.core.nm.NMCalibration)
        dense = f", dense: {', '.join(cal.dense)}" if cal.dense else ""
        how = f"pattern {cal.pattern}{dense}"
    else:
        how = f"mode {cal.mode}, alpha {'per layer' if cal.alpha is None else f'{cal.alpha:.6g}'}"
    print(f"{'total':{w}s}  {'':>16s}  {cal.kept:>10d}  {cal.total:>10d}  {cal.sparsity:.6f}"
          f"  (target {cal.target:.6f}, {how})", file=file)


def run(args) -> int:
    from ..core.family import Family, save_mask
    from ..core.layers import prunable_layers
    from ..core.registry import get_method, score, scoring_batch_size, with_target
    from ..models import build, input_kwargs

    a = from_args(PruneArgs, args)
    pattern = _check_pattern_args(a)  # fail before scoring, not after
    if a.sparsity is None:
        a = dataclasses.replace(a, sparsity=0.9 if pattern is None else pattern.sparsity)
    check_sparsity(a.sparsity)
    method = get_method(a.method)
    if a.method == "yopo":
        if a.method_opt:
            raise ValueError("YOPO options are flags (--rank, --iters, ...); --method-opt is for other methods")
        opts = dataclasses.asdict(from_args(YopoConfig, args))
    else:
        opts = parse_options(method.config, a.method_opt)
    data = None
    if not method.data_free:
        if a.dataset is None:
            raise ValueError(f"method {a.method!r} needs data: pass --dataset (and --data-root)")
        from ..experiment.data import load_data

        d = load_data(a.dataset, a.data_root, seed=a.seed)
        data = d.example_batch(scoring_batch_size(a.method, opts, 128))
        a = dataclasses.replace(a, num_classes=d.num_classes)
    if a.method != "yopo":
        opts = with_target(a.method, opts, a.sparsity, d.input_shape if data is not None else None)
    if a.checkpoint is not None:  # a trained model: its weights, not an initialization
        from ..models.pretrained import load_pretrained
        model, _ = load_pretrained(a.model, a.checkpoint, None if data is None else a.num_classes,
                                   **(input_kwargs(a.model, d.input_shape) if data is not None else {}))
        if Path(a.checkpoint).is_dir():  # a Hugging Face folder names its own architecture
            a = dataclasses.replace(a, model=f"hf:{type(model).__name__}")
    else:
        model = build(a.model, a.num_classes, init=a.weight_init, seed=a.seed,
                      **(input_kwargs(a.model, d.input_shape) if data is not None else {}))
    layers = prunable_layers(model, exclude=a.exclude)
    if pattern is not None and a.nm_indivisible == "error":
        from ..core.nm import check_divisible
        check_divisible({l.name: l.shape for l in layers}, pattern)
    scores = score(model, a.method, seed=a.seed, device=a.device, data=data, exclude=a.exclude, **opts)
    fam = Family.from_scores(scores, layers, method=a.method, settings=opts, seed=a.seed, model_name=a.model)
    fam.meta.update(num_classes=a.num_classes, exclude=list(a.exclude), weight_init=a.weight_init,
                    dataset=a.dataset, checkpoint=a.checkpoint)
    if pattern is not None:
        from ..core.nm import nm_calibrate
        cal = nm_calibrate(fam, pattern, indivisible=a.nm_indivisible)
    else:
        cal = fam.calibrate(a.sparsity, mode=a.mode, robust=a.robust, min_keep=a.min_keep, col_keep=a.col_keep)
    fam.save(a.out)
    layer_table(cal)
    print(f"wrote {a.out}")
    if a.mask_out:
        save_mask(a.mask_out, cal.masks, {"family": a.out, "sparsity": a.sparsity, "mode": a.mode,
                                          "robust": a.robust, "model": a.model, "seed": a.seed,
                                          "pattern": None if pattern is None else str(pattern)})
        print(f"wrote {a.mask_out}")
    if a.semi_structured_out:
        _export_semi_structured(model, cal.masks, a.semi_structured_out, a.device)
    return 0


def _check_pattern_args(a):
    """The N:M pattern of ``a`` (or None), with the flags that cannot act alongside it rejected."""
    from ..core.nm import NMPattern, semi_structured_unavailable

    if a.pattern is None:
        if a.semi_structured_out:
            raise ValueError("--semi-structured-out needs --pattern 2:4 (or 1:4)")
        return None
    pattern = NMPattern.parse(a.pattern)
    if a.sparsity is not None:
        raise ValueError(f"--sparsity {a.sparsity} and --pattern {pattern} both set: the pattern fixes the sparsity "
                         f"at {pattern.sparsity:g}; drop one")
    if a.col_keep:
        raise ValueError(f"--col-keep {a.col_keep} has no N:M meaning; drop it with --pattern")
    if a.semi_structured_out:
        if pattern.m != 4 or pattern.n > 2:
            raise ValueError(f"--semi-structured-out needs a pattern with at most 2 of 4 kept (2:4, 1:4); "
                             f"got {pattern}")
        reason = semi_structured_unavailable(a.device if a.device.startswith("cuda") else "cuda")
        if reason is not None:
            raise ValueError(f"--semi-structured-out: {reason}")
    return pattern


def _export_semi_structured(model, masks, path, device) -> None:
    import torch

    from ..core.io import atomic_path
    from ..core.masks import apply_masks
    from ..core.nm import to_semi_structured

    apply_masks(model, masks)
    model, report = to_semi_structured(model, device=device if device.startswith("cuda") else "cuda")
    for name, what in report.items():
        print(f"{name}: {what}")
    with atomic_path(path) as tmp:
        torch.save(model, tmp)  # the module itself: semi-structured tensors have no plain state dict
    print(f"wrote {path}")
