"""Named bundles of settings (``--preset NAME`` in ``yopo prune`` / ``yopo train``, ``preset = NAME``
in a sweep's method entry).

A preset gives values for fields of :class:`yopo.core.calibration.CalibrationSettings` and of
:class:`yopo.methods.yopo.YopoConfig`. It is applied *before* explicit settings: flags given on the
command line (or keys of a sweep's tables) win over the preset's values, and the preset's values
win over the dataclass defaults. A preset is recorded by its resolved values (the run identity of a
sweep and a family's metadata hold the settings, not the preset's name), so two ways of asking for
the same settings give the same run.

Adding a preset is one entry in :data:`PRESETS`; ``tests/test_config.py`` builds every preset's
settings, so a misspelt field fails there.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    description: str
    calibration: Mapping = field(default_factory=dict)  # CalibrationSettings field values
    yopo: Mapping = field(default_factory=dict)  # YopoConfig field values (method "yopo" only)


PRESETS: dict[str, Preset] = {
    # the method exactly as published (Alg. 1 + Alg. 2): every setting that changes the mask pinned,
    # so the preset keeps meaning the paper when the defaults change
    "paper": Preset(
        "YOPO as published: rank 7, T = 200 Lee-Seung MU steps from a seeded uniform init, plain |W|, "
        "pooled MORT (allocation global = YOPO-G) with median/MAD statistics, score ranking, one survivor "
        "per output row, every layer pruned",
        calibration={"allocation": "global", "ranking": "score", "robust": "mad", "min_keep": 1, "col_keep": 0,
                     "class_keep": 0,
                     "min_layer_density": 0.0, "exclude": (), "kept_scale": "none"},
        yopo={"rank": 7, "iters": 200, "nmf_solver": "mu", "nmf_init": "uniform", "loss": "frobenius",
              "normalize": "none", "per_channel": False, "eps": 1e-8, "storage_dtype": "float32",
              "rank_fraction": 0.0, "full_rank": "clip", "residual_scale": "none", "fast": False, "paths": False}),
    # the paper's saliency with a structure that keeps the kept weights useful: in a net whose hidden
    # layers are all followed by a normalization (ResNets, VGG-BN) every unit keeps inputs (rows
    # balanced) and an output at the layer densities of SynFlow's |W| flow, and the kept weights start at their
    # layer's init RMS; otherwise that |W| flow itself (conserved layer by layer) decides how many
    # weights each layer keeps and which units stay connected (docs/method_quality.md has the
    # ablation behind every choice)
    "recommended": Preset(
        "YOPO with a structure that keeps every kept weight useful: the paper's NMF residual (rank 7, MU-200), "
        "then a 100-round path flow on |W| (SynFlow's) to the target sparsity that keeps the weights carrying the "
        "most input-output flow (ties broken by the residual); if every hidden layer is followed by a normalization "
        "(width is free there), only the layer densities of that flow are kept and each "
        "output row gets its equal share of its layer's budget, ranked by the residual, after every input channel "
        "got its best weight, so every unit has an input and an output (spread_flow, paths_cover units); pooled "
        "calibration of that order, no "
        "forced survivors in hidden rows (a row without paths is a pruned unit, not a collapse) but one per "
        "class row of the last layer "
        "(the flow can starve a class at 98%+), every layer keeps at least 0.2% of its weights (the "
        "flow alone empties ResNet downsampling shortcuts); on a normalized net the kept weights start at each "
        "layer's init RMS (kept_scale auto: the residual keeps a layer's largest weights, which would start it "
        "with a 4-9x smaller effective learning rate)",
        calibration={"allocation": "global", "ranking": "score", "robust": "mad", "min_keep": 0, "col_keep": 0,
                     "class_keep": 1, "min_layer_density": 0.002, "exclude": (), "kept_scale": "auto"},
        yopo={"rank": 7, "iters": 200, "nmf_solver": "mu", "nmf_init": "uniform", "loss": "frobenius",
              "normalize": "none", "per_channel": False, "eps": 1e-8, "storage_dtype": "float32",
              "rank_fraction": 0.0, "full_rank": "clip", "residual_scale": "none", "fast": False,
              "paths": True, "paths_rounds": 100, "paths_structure": "auto"}),
}


def get_preset(name: str) -> Preset:
    from .validate import check_choice

    check_choice("preset", name, sorted(PRESETS))
    return PRESETS[name]


def preset_values(name: str | None, section: str) -> dict:
    """The values preset ``name`` gives to ``section`` ("calibration" or "yopo"); {} for None."""
    if name is None:
        return {}
    return dict(getattr(get_preset(name), section))
