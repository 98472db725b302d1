"""``yopo prune``: score a freshly initialized model once, save the family, show one mask."""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass

from ..core.calibration import MODES, ROBUST
from ..core.config import add_dataclass_args, from_args, opt, parse_options
from ..core.validate import check_int, check_sparsity
from ..methods.yopo.saliency import YopoConfig
from ..models import INITS


@dataclass(frozen=True)
class PruneArgs:
    model: str = opt("resnet20", "architecture name (see `yopo models`)")
    num_classes: int = opt(10, "classifier outputs")
    sparsity: float = opt(0.9, "target fraction of prunable weights set to zero, in [0, 1)")
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
    print(f"{'total':{w}s}  {'':>16s}  {cal.kept:>10d}  {cal.total:>10d}  {cal.sparsity:.6f}"
          f"  (target {cal.target:.6f}, mode {cal.mode}, alpha "
          f"{'per layer' if cal.alpha is None else f'{cal.alpha:.6g}'})", file=file)


def run(args) -> int:
    from ..core.family import Family, save_mask
    from ..core.layers import prunable_report
    from ..core.registry import get_method, score, scoring_batch_size, with_target
    from ..models import build, input_kwargs

    from ..core.io import check_out_file
    from . import check_device

    a = from_args(PruneArgs, args)
    # fail before scoring, not after, and before anything is written
    check_sparsity(a.sparsity)
    check_int("--num-classes", a.num_classes, 1)
    check_int("--min-keep", a.min_keep, 0)
    check_int("--col-keep", a.col_keep, 0)
    check_int("--seed", a.seed, 0)
    check_device(a.device)
    check_out_file(a.out, "--out")
    if a.mask_out:
        check_out_file(a.mask_out, "--mask-out")
        if os.path.abspath(a.mask_out) == os.path.abspath(a.out):
            raise ValueError(f"--mask-out={a.mask_out!r} is the same file as --out; give two names")
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
    model = build(a.model, a.num_classes, init=a.weight_init, seed=a.seed,
                  **(input_kwargs(a.model, d.input_shape) if data is not None else {}))
    scores = score(model, a.method, seed=a.seed, device=a.device, data=data, exclude=a.exclude, **opts)
    report = prunable_report(model, exclude=a.exclude)
    layers = list(report.layers)
    for line in report.lines():  # what the one prunable-layer rule left out, and why
        print(line)
    fam = Family.from_scores(scores, layers, method=a.method, settings=opts, seed=a.seed, model_name=a.model)
    fam.meta.update(num_classes=a.num_classes, exclude=list(a.exclude), weight_init=a.weight_init,
                    dataset=a.dataset)
    cal = fam.calibrate(a.sparsity, mode=a.mode, robust=a.robust, min_keep=a.min_keep, col_keep=a.col_keep)
    fam.save(a.out)
    layer_table(cal)
    print(f"wrote {a.out}")
    if a.mask_out:
        save_mask(a.mask_out, cal.masks, {"family": a.out, "sparsity": a.sparsity, "mode": a.mode,
                                          "robust": a.robust, "model": a.model, "seed": a.seed})
        print(f"wrote {a.mask_out}")
    return 0
