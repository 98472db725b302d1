"""yopo: pruning at initialization with once-only, data-free saliency ("You Only Prune Once").

score -> calibrate -> apply::

    import yopo
    scores = yopo.score(model, "yopo", rank=7, iters=200, seed=0)   # {param name: tensor}
    masks = yopo.calibrate(scores, 0.9, mode="global")               # {param name: BoolTensor}
    yopo.apply_masks(model, masks)
    yopo.sparsity(model)                                             # 0.9 exactly (up to rounding of 1 weight)
"""
import os as _os
import sys as _sys

if "torch" not in _sys.modules:
    # Spinning OpenMP threads (the default) make torch 10-30x slower per step when the few cores
    # are shared (measured on the 2-core dev machine, see benchmarks/_common.py). Only a default:
    # an explicit OMP_WAIT_POLICY wins, and nothing changes once torch is already imported.
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .calibrate import Calibration, calibrate, mort, n_keep
from .family import Family, fingerprint, load_mask, save_mask
from .layers import PrunableLayer, flat, prunable_layers, unflat
from .masks import (apply_masks, assert_pruned_zero, enforce_after_step, from_torch_prune, get_masks,
                    remove_masks, sparsity, to_torch_prune)
from .registry import available_methods, get_method, register, score
from .saliency import YopoConfig, yopo_saliency

__version__ = "0.1.0"

__all__ = [
    "Calibration", "Family", "PrunableLayer", "YopoConfig", "apply_masks", "assert_pruned_zero",
    "available_methods", "calibrate", "enforce_after_step", "fingerprint", "flat", "from_torch_prune",
    "get_masks", "get_method", "load_mask", "mort", "n_keep", "prunable_layers", "register",
    "remove_masks", "save_mask", "score", "sparsity", "to_torch_prune", "unflat", "yopo_saliency",
]
