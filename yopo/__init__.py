"""yopo: pruning at initialization with once-only, data-free saliency ("You Only Prune Once").

score -> calibrate -> apply::

    import yopo
    scores = yopo.score(model, "yopo", rank=7, iters=200, seed=0)   # {param name: tensor}
    masks = yopo.calibrate(scores, 0.9, mode="global")               # {param name: BoolTensor}
    yopo.apply_masks(model, masks)
    yopo.sparsity(model)                                             # 0.9 exactly (up to rounding of 1 weight)

The names below are loaded lazily (PEP 562): ``import yopo`` alone does not import torch. The
package layout: ``yopo.core`` (layers, registry, calibration, masks, family, ...), ``yopo.methods``
(one scoring method per module), ``yopo.models``, ``yopo.integrations``, ``yopo.experiment``
(data, training, sweeps, reports) and ``yopo.cli``.
"""
import importlib as _importlib
import os as _os
import sys as _sys

if "torch" not in _sys.modules:
    # Spinning OpenMP threads (the default) make torch 10-30x slower per step when the few cores
    # are shared (measured on the 2-core dev machine, see benchmarks/_common.py). Only a default:
    # an explicit OMP_WAIT_POLICY wins, and nothing changes once torch is already imported.
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "Calibration": "yopo.core.calibration", "CalibrationSettings": "yopo.core.calibration",
    "calibrate": "yopo.core.calibration", "mort": "yopo.core.calibration",
    "n_keep": "yopo.core.calibration",
    "Family": "yopo.core.family", "fingerprint": "yopo.core.family", "load_mask": "yopo.core.family",
    "save_mask": "yopo.core.family",
    "LayerScores": "yopo.core.layers", "PrunableLayer": "yopo.core.layers", "flat": "yopo.core.layers",
    "prunable_layers": "yopo.core.layers", "prunable_report": "yopo.core.layers", "unflat": "yopo.core.layers",
    "apply_masks": "yopo.core.masks", "assert_pruned_zero": "yopo.core.masks", "enforce_after_step": "yopo.core.masks",
    "from_torch_prune": "yopo.core.masks", "get_masks": "yopo.core.masks", "remove_masks": "yopo.core.masks",
    "sparsity": "yopo.core.masks", "to_torch_prune": "yopo.core.masks",
    "available_methods": "yopo.core.registry", "get_method": "yopo.core.registry", "register": "yopo.core.registry",
    "score": "yopo.core.registry",
    "YopoConfig": "yopo.methods.yopo", "yopo_saliency": "yopo.methods.yopo",
}

__all__ = [
    "Calibration", "CalibrationSettings", "Family", "LayerScores", "PrunableLayer", "YopoConfig", "apply_masks", "assert_pruned_zero",
    "available_methods", "calibrate", "enforce_after_step", "fingerprint", "flat", "from_torch_prune",
    "get_masks", "get_method", "load_mask", "mort", "n_keep", "prunable_layers", "prunable_report", "register",
    "remove_masks", "save_mask", "score", "sparsity", "to_torch_prune", "unflat", "yopo_saliency",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'yopo' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
