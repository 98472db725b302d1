"""``yopo prune``: score a freshly initialized model once, save the family, show one mask."""
from __future__ import annotations

import dataclasses
import sys
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.config import add_dataclass_args, from_args, opt, parse_options, sparsity_rule, to_mapping, \
    validate_fields
from ..core.nm import INDIVISIBLE
from ..core.presets import PRESETS
from ..models import INITS, width_kwargs
from .settings import (DEFAULT_PRESET, PRESET_HELP, add_calibration_args, add_yopo_args, calibration_flags,
                       calibration_from, layer_table, yopo_flags, yopo_from)


@dataclass(frozen=True)
class PruneArgs:
    model: str = opt("resnet20", "architecture name (see `yopo models`)")
    model_width: float | None = opt(None, "scale the model's channels by this multiplier (as `yopo train "
                                    "--model-width`)", low=0.0, low_open=True)
    num_classes: int = opt(10, "classifier outputs", low=1)
    sparsity: float | None = opt(None, "target fraction of prunable weights set to zero, in [0, 1) "
                                 "(0.9 when unset; not with --pattern, which fixes it at 1 - N/M)", check=sparsity_rule)
    seed: int = opt(0, "seed of the model initialization and of the scoring method", low=0)
    weight_init: str = opt("kaiming_normal", "weight initialization of the model (same default and seeding as "
                           "`yopo train --weight-init`, so a family fits the model train builds)", INITS)
    method: str = opt("yopo", "scoring method (see `yopo methods`)")
    method_opt: tuple[str, ...] = opt((), "options of a non-YOPO method as KEY=VALUE (e.g. batch_size=256)")
    preset: str | None = opt(None, PRESET_HELP, tuple(PRESETS))
    dataset: str | None = opt(None, "data for data-dependent methods (snip, grasp, prospr, iter_snip)")
    data_root: str | None = opt(None, "dataset folder (see `yopo train --help`)")
    device: str = opt("cpu", "device to score on (cpu, cuda, cuda:1, ...)")
    out: str = opt("yopo_family.safetensors", "family artifact to write (saliency + fingerprint + the "
                   "calibration settings)")
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

    def __post_init__(self):
        validate_fields(self)
        width_kwargs(self.model, self.model_width)  # a width the model cannot take: an error before scoring
        if self.model_width is not None and self.checkpoint is not None and Path(self.checkpoint).is_dir():
            raise ValueError(f"model_width={self.model_width!r}: a Hugging Face folder names its own architecture; "
                             f"drop --model-width")


def add_parser(sub, name):
    p = sub.add_parser(name, help="compute the once-only saliency of a model, save it, print a mask",
                       description="Initialize MODEL with SEED, score it once (YOPO by default), write the "
                       "family artifact to OUT and print the per-layer mask at SPARSITY (density, empty rows and "
                       "columns, effective weights). Settings: defaults < --preset < explicit flags.")
    add_dataclass_args(p, PruneArgs)
    add_calibration_args(p)
    add_yopo_args(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ..core.connectivity import add_connectivity, input_shape_of
    from ..core.family import Family, save_mask
    from ..core.io import check_out_file
    from ..core.layers import prunable_report
    from ..core.registry import get_method, score, scoring_batch_size, with_target
    from ..models import build, input_kwargs, width_kwargs
    from . import check_device

    a = from_args(PruneArgs, args)  # validated: a bad value fails before scoring, not after
    if a.preset is None and a.method == "yopo" and a.pattern is None:
        if a.checkpoint is not None and Path(a.checkpoint).is_dir():
            # a Hugging Face folder: a transformer takes token ids, and the recommended preset's path
            # flow needs a network fed by one float tensor, so the default is the paper's method
            print("note: a Hugging Face model: using --preset paper (the recommended preset's path flow needs a "
                  "network fed by one float tensor)", file=sys.stderr)
            a = dataclasses.replace(a, preset="paper")
        else:
            a = dataclasses.replace(a, preset=DEFAULT_PRESET)
    cal_settings = calibration_from(args, a.preset)
    # and before anything is written
    check_device(a.device)
    check_out_file(a.out, "--out")
    if a.mask_out:
        check_out_file(a.mask_out, "--mask-out")
        if os.path.abspath(a.mask_out) == os.path.abspath(a.out):
            raise ValueError(f"--mask-out={a.mask_out!r} is the same file as --out; give two names")
    if a.semi_structured_out and "--kept-scale" in calibration_flags(args):
        raise ValueError(f"--kept-scale {cal_settings.kept_scale} cannot act on --semi-structured-out: the export "
                         f"keeps the weights as loaded (give --kept-scale to `yopo train`)")
    pattern = _check_pattern_args(a, cal_settings)
    if a.sparsity is None:
        a = dataclasses.replace(a, sparsity=0.9 if pattern is None else pattern.sparsity)
    method = get_method(a.method)
    budget_method = get_method(cal_settings.budget_method) if cal_settings.budget_method else None
    if a.method == "yopo":
        if a.method_opt:
            raise ValueError("YOPO options are flags (--rank, --iters, ...); --method-opt is for other methods")
        opts = to_mapping(yopo_from(args, a.preset))
    else:
        given = yopo_flags(args)
        if given:
            raise ValueError(f"{', '.join(given)}: YOPO option(s), method {a.method!r} does not take them; "
                             f"its options go in --method-opt KEY=VALUE")
        opts = parse_options(method.config, a.method_opt)
    d = None
    if not method.data_free or (budget_method is not None and not budget_method.data_free):
        needs = a.method if not method.data_free else budget_method.name
        if a.dataset is None:
            raise ValueError(f"method {needs!r} needs data: pass --dataset (and --data-root)")
        from ..experiment.data import load_data

        d = load_data(a.dataset, a.data_root, seed=a.seed)
        a = dataclasses.replace(a, num_classes=d.num_classes)
    shape = d.input_shape if d is not None else None

    # one sample's shape for methods that build their own input (SynFlow; YOPO with --paths): the
    # data's, else that of the dataset the model is the default of (cnn_digits: 1x8x8)
    sample = shape or _natural_input_shape(a.model)

    def score_with(m, options):
        batch = None if m.data_free else d.example_batch(scoring_batch_size(m.name, options, 128))
        options = with_target(m.name, options, a.sparsity, sample)
        return score(model, m.name, seed=a.seed, device=a.device, data=batch, **options)

    if a.checkpoint is not None:  # a trained model: its weights, not an initialization
        from ..models.pretrained import load_pretrained
        model, _ = load_pretrained(a.model, a.checkpoint, None if shape is None else a.num_classes,
                                   **(input_kwargs(a.model, shape) if shape is not None else {}),
                                   **width_kwargs(a.model, a.model_width))
        if Path(a.checkpoint).is_dir():  # a Hugging Face folder names its own architecture
            a = dataclasses.replace(a, model=f"hf:{type(model).__name__}")
    else:
        model = build(a.model, a.num_classes, init=a.weight_init, seed=a.seed, **width_kwargs(a.model, a.model_width),
                      **(input_kwargs(a.model, shape) if shape is not None else {}))
    if pattern is not None and a.nm_indivisible == "error":
        from ..core.nm import check_divisible
        check_divisible({l.name: l.shape for l in prunable_report(model).layers}, pattern)
    scores = score_with(method, opts)
    opts = with_target(a.method, opts, a.sparsity, sample)  # what was scored with, for the record
    budget = score_with(budget_method, {}) if budget_method is not None else None
    report = prunable_report(model)
    for line in report.lines():  # what the one prunable-layer rule left out, and why
        print(line)
    fam = Family.from_scores(scores, list(report.layers), method=a.method, settings=opts, seed=a.seed,
                             model_name=a.model, calibration=cal_settings,
                             budget_method=budget_method.name if budget_method else None, budget_scores=budget)
    fam.meta.update(num_classes=a.num_classes, weight_init=a.weight_init, dataset=a.dataset, preset=a.preset,
                    checkpoint=a.checkpoint)
    if pattern is not None:
        from ..core.nm import nm_calibrate
        cal = nm_calibrate(fam, pattern, indivisible=a.nm_indivisible)
    else:
        cal = fam.calibrate(a.sparsity)  # with the settings just stored in the family
    fam.save(a.out)
    try:
        if pattern is None:  # an N:M mask keeps N of every M inputs: every row and path survives
            add_connectivity(cal, model, tuple(shape or _natural_input_shape(a.model) or input_shape_of(model)))
    except RuntimeError as e:  # the model does not run on a guessed input shape
        cal.warnings.append(f"effective sparsity not computed: {str(e).splitlines()[0]} (pass --dataset for the "
                            f"model's input shape)")
    layer_table(cal)
    print(f"wrote {a.out}")
    if a.mask_out:
        save_mask(a.mask_out, cal.masks, {"family": a.out, "sparsity": a.sparsity,
                                          "calibration": cal_settings.to_dict(), "model": a.model, "seed": a.seed,
                                          "pattern": None if pattern is None else str(pattern)})
        print(f"wrote {a.mask_out}")
    if a.semi_structured_out:
        _export_semi_structured(model, cal.masks, a.semi_structured_out, a.device)
    return 0


def _natural_input_shape(model: str):
    """The input shape of the dataset ``model`` is the default model of (cnn_digits: digits'
    1x8x8), or ImageNet's for a model built for it (torchvision's resnet18), for the effective
    sparsity and the path structure when no --dataset is given; None if there is none."""
    from ..experiment.data import INPUT_SHAPES
    from ..experiment.train.config import DEFAULT_MODEL
    from ..models import imagenet_resolution

    shape = next((tuple(INPUT_SHAPES[d]) for d, m in DEFAULT_MODEL.items() if m == model and d in INPUT_SHAPES), None)
    if shape is None and imagenet_resolution(model):
        shape = tuple(INPUT_SHAPES["imagenet"])
    return shape


def _check_pattern_args(a, settings):
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
    if settings.col_keep:
        raise ValueError(f"--col-keep {settings.col_keep} has no N:M meaning; drop it with --pattern")
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
