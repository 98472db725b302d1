"""``yopo train``: prune at initialization, then train the sparse network from the same init.

With no dataset it trains a small CNN on scikit-learn's 8x8 digits (offline, well under a minute
on a laptop CPU): the end-to-end demo of the main job. Accuracies are printed and stored in
percent (0-100), as everywhere in yopo.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

from ..core.config import add_dataclass_args, from_args, opt, parse_options, sparsity_rule, to_mapping, \
    validate_fields
from ..core.presets import PRESETS
from ..experiment.train.config import TrainConfig
from .settings import (DEFAULT_PRESET, PRESET_HELP, add_calibration_args, add_yopo_args, calibration_flags, calibration_from,
                       yopo_flags, yopo_from)


@dataclass(frozen=True)
class PruneTrainArgs:
    method: str = opt("yopo", "scoring method (see `yopo methods`), or dense for no pruning")
    sparsity: float = opt(0.9, "fraction of prunable weights set to zero, in [0, 1)", check=sparsity_rule)
    preset: str | None = opt(None, PRESET_HELP, tuple(PRESETS))
    mask: str | None = opt(None, "use this family artifact (.safetensors from `yopo prune`, calibrated at "
                           "--sparsity with its stored settings and the calibration flags given here) or bit-packed "
                           "mask file instead of scoring")
    out: str | None = opt(None, "output folder (metrics.jsonl/.csv, checkpoint.pt, mask, result.json)")
    resume: bool = opt(False, "continue the interrupted run in --out from its last checkpoint")
    method_opt: tuple[str, ...] = opt((), "options of a non-YOPO method as KEY=VALUE (e.g. batch_size=256)")

    def __post_init__(self):
        validate_fields(self)


def add_parser(sub, name):
    p = sub.add_parser(name, help="prune at initialization, then train the sparse network",
                       description="Seed, build MODEL with WEIGHT_INIT, score it once with METHOD, calibrate to "
                       "SPARSITY, apply the masks and train from that same initialization. Without "
                       "--dataset: a small CNN on sklearn digits (offline demo, under a minute on CPU). "
                       "Settings: defaults < --preset < explicit flags. Accuracies are in percent.")
    add_dataclass_args(p, PruneTrainArgs, group="pruning")
    add_calibration_args(p)
    add_yopo_args(p)
    add_dataclass_args(p, TrainConfig, group="training")
    p.set_defaults(run=run)


def _family_settings(path: str):
    """The calibration settings stored in a family file (None for a mask file or an old family)."""
    from ..core.family import Family

    try:
        return Family.load(path).calibration_settings
    except (ValueError, FileNotFoundError):  # a mask file, or not a file: resolve_masks says which
        return None


def run(args) -> int:
    from ..core.registry import get_method
    from ..experiment.train import run as train_run

    from ..core.io import check_out_dir
    from . import check_device

    if not getattr(args, "command_argv", True):  # `yopo train` alone: the demo comparison
        return demo()
    a = from_args(PruneTrainArgs, args)
    cfg = from_args(TrainConfig, args)
    # settings that would fail late (after loading data, or with a traceback) fail here, in one line
    check_device(cfg.device)
    if a.out is not None:
        check_out_dir(a.out, "--out")
    if a.mask is not None and not os.path.isfile(a.mask):
        raise FileNotFoundError(f"--mask={a.mask!r}: no such file")
    dense = a.mask is None and a.method in ("dense", "none")
    scoring = a.mask is None and not dense
    if a.method_opt and not (scoring and a.method != "yopo"):
        raise ValueError("--method-opt is for non-YOPO scoring methods (YOPO options are flags: --rank, --iters, "
                         "...; --mask and dense runs score nothing)")
    if yopo_flags(args) and not (scoring and a.method == "yopo"):
        raise ValueError(f"{', '.join(yopo_flags(args))}: YOPO option(s) act only when scoring with --method yopo")
    cal_given = calibration_flags(args) or a.preset is not None
    if dense and cal_given:
        raise ValueError("a dense run calibrates nothing: drop the calibration flags / --preset")
    if a.preset is None and scoring and a.method == "yopo":
        a = dataclasses.replace(a, preset=DEFAULT_PRESET)
    opts = {}
    if scoring and a.method == "yopo":
        opts = to_mapping(yopo_from(args, a.preset))
    elif scoring:
        from ..core.registry import get_method
        opts = parse_options(get_method(a.method).config, a.method_opt)
    calibration = None
    if scoring:
        calibration = calibration_from(args, a.preset)
    elif a.mask is not None and cal_given:  # over the family's stored settings (a mask file: refused by run)
        calibration = calibration_from(args, a.preset, base=_family_settings(a.mask))
    res = train_run(cfg, method=a.method, sparsity=a.sparsity, calibration=calibration, masks=a.mask,
                    out_dir=a.out, resume=a.resume, progress=cfg.progress, **opts)
    keys = ("model", "dataset", "method", "allocation", "sparsity", "epochs", "test_acc", "test_loss", "train_loss",
            "params", "params_kept", "flops", "flops_kept", "time_s")
    summary = {k: res[k] for k in keys}
    if res.get("calibration"):
        summary["effective_sparsity"] = res["calibration"]["effective_sparsity"]
    print(json.dumps(summary, indent=None))
    if a.out:
        print(f"wrote {a.out}/result.json")
    return 0


#: the demo: the default model and data (a small CNN on sklearn's 8x8 digits, offline), one budget
DEMO_SPARSITY = 0.95
DEMO_ROWS = (("dense", "dense", None), ("YOPO (recommended preset)", "yopo", "recommended"),
             ("YOPO as published (YOPO-G)", "yopo", "paper"), ("random (within layer)", "random", None))


def demo() -> int:
    """`yopo train` with no arguments: the same small CNN trained dense, pruned at 95% by the
    recommended YOPO preset, by YOPO as published and at random (equal per-layer ratios), from the
    same initialization; a table of what each keeps and reaches."""
    import logging

    cfg = TrainConfig(progress=False, checkpoint=False)
    print(f"yopo train demo: {cfg.resolved().model} on {cfg.dataset} ({cfg.resolved().epochs} epochs, seed "
          f"{cfg.seed}), {DEMO_SPARSITY:.0%} of the prunable weights pruned at initialization; `yopo train --help` "
          f"for a single configurable run")
    log = logging.getLogger("yopo")
    level = log.level
    log.setLevel(max(level, logging.WARNING))  # the table, not four runs' epoch lines
    try:
        rows = [_demo_row(cfg, *row) for row in DEMO_ROWS]
    finally:
        log.setLevel(level)
    w = max(len(r[0]) for r in rows)
    print(f"{'':{w}s}  {'params kept':>11s}  {'sparsity':>8s}  {'effective':>9s}  {'test acc':>8s}  {'time':>6s}")
    for label, kept, sp, eff, acc, dt in rows:
        print(f"{label:{w}s}  {kept:>11,d}  {sp:>8.4f}  {'-' if eff is None else f'{eff:.4f}':>9s}  {acc:>7.2f}%"
              f"  {dt:>5.1f}s")
    print("sparsity: of the prunable weights; effective: kept weights on no input-output path counted as pruned")
    return 0


def _demo_row(cfg: TrainConfig, label: str, method: str, preset: str | None) -> tuple:
    """(label, params kept, sparsity, effective sparsity, test accuracy, seconds) of one demo run."""
    import time

    from ..core.calibration import CalibrationSettings
    from ..core.presets import preset_values
    from ..experiment.train import run as train_run
    from ..methods.yopo.saliency import YopoConfig

    t = time.perf_counter()
    if method == "dense":
        res = train_run(cfg, method="dense", progress=False)
    else:
        calibration = (CalibrationSettings(**preset_values(preset, "calibration")) if preset
                       else CalibrationSettings(allocation="uniform"))
        opts = to_mapping(YopoConfig(**preset_values(preset, "yopo"))) if method == "yopo" else {}
        res = train_run(cfg, method=method, sparsity=DEMO_SPARSITY, calibration=calibration, progress=False, **opts)
    eff = (res.get("calibration") or {}).get("effective_sparsity")
    return label, res["params_kept"], res["sparsity"], eff, res["test_acc"], time.perf_counter() - t
