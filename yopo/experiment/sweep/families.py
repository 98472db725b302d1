"""Once-only saliency families of a sweep and the masks of its runs: a family (the saliency of one
initialization) is computed once per family key (:func:`default_scorer`), cached as
``families/<key>.safetensors`` (:func:`ensure_family`) and re-thresholded for every run
(:func:`run_masks`, with sanity variants and dataset transfer)."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

from ..data import load_dataset
from .spec import Run


def default_scorer(fam: dict):
    """Initialize ``fam['model']`` from ``fam['seed']`` and score it once; returns a Family. A family
    for an ``allocation="from:<method>"`` calibration (``fam['budget']``) also holds that method's
    scores of the same initialization."""
    from ...core.family import Family
    from ...core.layers import prunable_layers

    t0 = time.perf_counter()
    model, scores, opts = _scores(fam)
    budget = _scores(fam["budget"])[1] if fam.get("budget") else None
    dt = time.perf_counter() - t0
    f = Family.from_scores(scores, prunable_layers(model), method=fam["method"], settings=opts, seed=fam["seed"],
                           model_name=fam["model"], budget_method=fam["budget"]["method"] if budget else None,
                           budget_scores=budget)
    f.meta.update(num_classes=fam.get("num_classes"), score_time_s=dt, dataset=fam.get("dataset"))
    return f


def _scores(fam: dict):
    from ...core.registry import get_method, score

    model = build_model(fam["model"], fam.get("num_classes") or 10, fam["seed"], fam.get("weight_init"),
                        fam.get("model_opts"))
    opts = dict(fam.get("opts") or {})
    if "sparsity_option" in fam:
        opts[fam["sparsity_option"]] = fam["sparsity"]
    if "input_shape" in fam:
        opts["input_shape"] = tuple(int(v) for v in fam["input_shape"])
    data = None
    if not get_method(fam["method"]).data_free:
        data = scoring_batch(fam)
    return model, score(model, fam["method"], seed=fam["seed"], data=data, **opts), opts


def build_model(name: str, num_classes: int, seed: int, init: str | None = None, model_opts: dict | None = None):
    """The initialization a family is computed from: ``yopo.models.build`` seeded with ``seed``
    and the training default weight init, exactly as the training pipeline builds the model it
    trains, so a mask lands on the weights it was computed for."""
    from ...models import build

    return build(name, num_classes, init=init or _default_init(), seed=seed, **(model_opts or {}))


def _default_init() -> str:
    from ..train import TrainConfig

    return TrainConfig().weight_init


def scoring_batch(fam: dict):
    """One deterministic batch of the scoring dataset (data-dependent methods: SNIP, GraSP...)."""
    data = load_dataset(fam["dataset"], fam.get("train") or {}, seed=fam["seed"])
    return data.example_batch(int(fam.get("score_batch") or 256))


def family_path(folder, key: str) -> Path:
    return Path(folder) / "families" / f"{key}.safetensors"


_FAMILY_CACHE: dict[str, Any] = {}


def load_family(path):
    from ...core.family import Family

    path = str(path)
    if path not in _FAMILY_CACHE:
        if len(_FAMILY_CACHE) > 8:
            _FAMILY_CACHE.clear()
        _FAMILY_CACHE[path] = Family.load(path)
    return _FAMILY_CACHE[path]


def ensure_family(folder, key: str, fam: dict, scorer: Callable) -> tuple[str, float]:
    """Compute and cache a family unless its file exists; returns (path, score time in s)."""
    path = family_path(folder, key)
    if path.exists():
        return str(path), float(load_family(path).meta.get("score_time_s", math.nan))
    t0 = time.perf_counter()
    f = scorer(fam)
    dt = float(f.meta.get("score_time_s", time.perf_counter() - t0))
    f.meta["score_time_s"] = dt
    f.meta["family_key"] = key
    f.save(path)  # atomic
    return str(path), dt


def transfer_masks(src_masks: dict, tgt_scores: dict) -> tuple[dict, list[str]]:
    """Source masks on a target model: layers of equal shape take the source mask; a layer whose
    shape differs (e.g. the classifier for another number of classes, or the stem for another
    number of input channels) keeps the source layer's *fraction* of survivors, chosen by the
    target's own scores. Returns (masks, names of the layers that fell back)."""
    from ...core.selection import n_keep, topk_mask

    out, fallback = {}, []
    for n, s in tgt_scores.items():
        m = src_masks.get(n)
        if m is not None and tuple(m.shape) == tuple(s.shape):
            out[n] = m.bool()
            continue
        frac = float(m.float().mean()) if m is not None else 1.0
        k = n_keep(1.0 - frac, s.numel())
        out[n] = topk_mask(s.flatten().float(), k).reshape(s.shape)
        fallback.append(n)
    return out, fallback


def run_masks(run: Run, folder) -> tuple[dict, dict]:
    """Masks of a run from its cached family (no rescoring), made with the calibration settings
    recorded in ``run.settings["calibration"]`` (the one source: what the database records is what
    was used), and diagnostics: ``info["calibration"]`` holds the per-layer kept / empty rows /
    effective weights, the effective sparsity and the warnings (a CollapseWarning also reaches the
    console, once per run)."""
    from ...core.calibration import Calibration, CalibrationSettings, mort
    from ...core.config import from_mapping
    from ..sanity import variant_masks
    from ..train.diagnostics import calibration_record, recorded_warnings, show_warnings, with_connectivity

    ident = run.identity
    settings = from_mapping(CalibrationSettings, run.settings["calibration"], what=f"run {run.id} calibration")
    fam = load_family(family_path(folder, run.family_key))
    budget = fam.budget_for(settings)
    t0 = time.perf_counter()
    made = []  # (Calibration, its warnings)

    def calibrate(scores):
        with recorded_warnings() as caught:
            cal = mort(scores, ident["sparsity"], settings, budget_scores=budget)
        made.append((cal, caught))
        return cal

    masks, offset, info = variant_masks(ident["variant"], calibrate, fam.scores, seed=ident["seed"])
    # the warnings of the calibration whose mask the run uses (the invert variant also calibrates
    # the plain scores, only to compare), shown once per run
    used = next(((c, w) for c, w in made if c.masks is masks), made[-1])
    show_warnings(used[1])
    cal = used[0] if used[0].masks is masks else None
    tgt_fam = fam
    if run.target_family_key is not None:
        tgt_fam = load_family(family_path(folder, run.target_family_key))
        masks, fb = transfer_masks(masks, tgt_fam.scores)
        info["transfer_fallback_layers"] = fb
        cal = None
    if cal is None:  # shuffled or transferred masks: describe them, keep the calibration's settings / warnings
        src = used[0]
        cal = Calibration.from_masks(masks, {n for n, r in src.layers.items() if r.excluded})
        cal.settings, cal.warnings = src.settings, list(src.warnings)
    info["calib_time_s"] = time.perf_counter() - t0
    info["achieved_sparsity"] = cal.sparsity  # over the calibrated layers (exclude leaves others dense)
    info["layer_sparsity"] = {n: 1.0 - float(m.sum()) / m.numel() for n, m in masks.items()}
    info["init_seed"] = ident["seed"] + offset
    info["score_time_s"] = fam.meta.get("score_time_s")
    try:
        model = build_model(tgt_fam.meta["model"], tgt_fam.meta.get("num_classes") or 10, info["init_seed"],
                            run.settings["train"].get("weight_init"),
                            (run.target_family or run.family).get("model_opts"))
        with_connectivity(cal, model, _input_shape(run))
    except (RuntimeError, ValueError, KeyError) as e:  # a model that does not run on the shape: say so
        cal.warnings.append(f"effective sparsity not computed: {str(e).splitlines()[0]}")
    info["calibration"] = calibration_record(cal)
    return masks, info


def _input_shape(run: Run):
    from ..data import dataset_input_shape

    return dataset_input_shape(run.identity["dataset"], run.settings["train"])
