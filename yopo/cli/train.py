"""``yopo train``: prune at initialization, then train the sparse network from the same init.

With no dataset it trains a small CNN on scikit-learn's 8x8 digits (offline, well under a minute
on a laptop CPU): the end-to-end demo of the main job.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ..core.calibration import MODES
from ..core.config import add_dataclass_args, from_args, opt, parse_options
from ..experiment.train.config import TrainConfig
from ..methods.yopo.saliency import YopoConfig


@dataclass(frozen=True)
class PruneTrainArgs:
    method: str = opt("yopo", "scoring method (see `yopo methods`), or dense for no pruning")
    sparsity: float = opt(0.9, "fraction of prunable weights set to zero, in [0, 1)")
    mode: str = opt("global", "calibration: global = YOPO-G, layerwise, local = YOPO-L", MODES)
    mask: str | None = opt(None, "use this family artifact (.safetensors from `yopo prune`, calibrated at "
                           "--sparsity) or bit-packed mask file instead of scoring")
    out: str | None = opt(None, "output folder (metrics.jsonl/.csv, checkpoint.pt, mask, result.json)")
    resume: bool = opt(False, "continue the interrupted run in --out from its last checkpoint")
    method_opt: tuple[str, ...] = opt((), "options of a non-YOPO method as KEY=VALUE (e.g. batch_size=256)")


def add_parser(sub, name):
    p = sub.add_parser(name, help="prune at initialization, then train the sparse network",
                       description="Seed, build MODEL with INIT, score it once with METHOD, calibrate to "
                       "SPARSITY, apply the masks and train from that same initialization. Without "
                       "--dataset: a small CNN on sklearn digits (offline demo, under a minute on CPU).")
    add_dataclass_args(p, PruneTrainArgs, group="pruning")
    add_dataclass_args(p, TrainConfig, group="training")
    add_dataclass_args(p, YopoConfig, prefix="yopo_", group="YOPO saliency (method yopo; flags --yopo-*)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..core.registry import get_method
    from ..experiment.train import run as train_run

    a = from_args(PruneTrainArgs, args)
    cfg = from_args(TrainConfig, args)
    opts = {}
    if a.method_opt and (a.mask is not None or a.method in ("yopo", "dense", "none")):
        raise ValueError("--method-opt is for non-YOPO scoring methods (YOPO options are --yopo-* flags; "
                         "--mask and dense runs score nothing)")
    if a.mask is None and a.method == "yopo":
        opts = dataclasses.asdict(from_args(YopoConfig, args, prefix="yopo_"))
    elif a.mask is None and a.method not in ("dense", "none"):
        opts = parse_options(get_method(a.method).config, a.method_opt)
    res = train_run(cfg, method=a.method, sparsity=a.sparsity, mode=a.mode, masks=a.mask, out_dir=a.out,
                    resume=a.resume, progress=cfg.progress, **opts)
    keys = ("model", "dataset", "method", "mode", "sparsity", "epochs", "test_acc", "test_loss", "train_loss",
            "params", "params_kept", "flops", "flops_kept", "time_s")
    print(json.dumps({k: res[k] for k in keys}, indent=None))
    if a.out:
        print(f"wrote {a.out}/result.json")
    return 0
