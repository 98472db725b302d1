"""MORT (Alg. 2) and its generalization: turn saliency scores into binary masks that meet a
sparsity budget exactly, with the two choices kept apart:

* **allocation** -- how many weights each layer keeps (``yopo.core.allocation``): ``global``
  (pooled MORT, = YOPO-G), ``layerwise`` (one alpha over per-layer z-scores), ``uniform`` (=
  YOPO-L, equal ratio), ``balanced``, ``erk``, ``er``, ``uniform_plus``, ``from:<method>`` (another
  method's layer budgets) or a dict of per-layer sparsities;
* **ranking** -- which weights inside a layer survive (``yopo.core.ranking``): ``score`` (the
  paper's) or ``rows`` (row-balanced).

Every allocation and ranking is a fixed total order with ties broken by position (lower flat
index first, layers in model order), so a budget of K kept weights is a prefix of it: budgets are
exact, masks are nested across sparsities (Prop. 2) and the same input gives the same mask bytes.
For ``global``/``layerwise`` with ``score`` ranking this is exactly the paper's MORT: the mask is
{S > tau(alpha)} for the alpha found (reported), with tau = loc + alpha * scale (median/MAD or
mean/STD), and ``calibration_solver="bisect"`` runs Alg. 2 literally.

Survival constraints: the ``min_keep`` best entries of every output row (and ``col_keep`` of every
input column) are kept at every sparsity and count toward the budget; ``min_layer_density`` is a
per-layer floor met inside the budget. The result (:class:`Calibration`) carries per-layer
diagnostics (density, empty rows / input columns, forced survivors) and warns when a layer is
emptied, keeps only its forced survivors, or when the last layer has empty output rows (a class
that can never be predicted; ``class_keep`` forces survivors there); kept weights stranded off every input-output path are warned about by
:func:`yopo.core.connectivity.add_connectivity`.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import torch

from . import allocation as alloc
from .config import opt, validate_fields
from .layers import from_rows, to_rows
from .masks import KEPT_SCALES
from .ranking import RANKINGS, select
from .selection import (count_true, keep_best_along, n_keep, robust_stats, safe_scale, threshold_stats,
                        topk_mask, topk_mask_cut)
from .validate import check_sparsity, name_list

ROBUST = ("mad", "std")
SOLVERS = ("exact", "bisect")
#: the paper's calibration modes; they are allocations now (``local`` = ``uniform``)
MODES = ("global", "layerwise", "local")

__all__ = ["Calibration", "CalibrationSettings", "CollapseWarning", "LayerReport", "MODES", "ROBUST", "SOLVERS",
           "calibrate", "mort", "n_keep", "robust_stats", "topk_mask", "webster"]


class CollapseWarning(UserWarning):
    """A calibrated mask that cannot work as intended: an emptied layer, a layer that keeps only its
    forced survivors, or output rows with no weight left."""


def _check_exclude(name: str, value) -> None:
    if not isinstance(value, tuple) or not all(isinstance(p, str) and p for p in value):
        raise TypeError(f"{name}={value!r} must be a tuple of glob patterns (or :first / :last)")


@dataclass(frozen=True)
class CalibrationSettings:
    """Everything that turns scores into masks: one declaration, used by the Python API, every
    CLI command, ``yopo train``, sweeps and the family artifact."""

    allocation: str = opt("global", "how many weights each layer keeps: global (pooled MORT = YOPO-G), layerwise "
                          "(one alpha over per-layer z-scores), uniform (= YOPO-L; alias local), balanced (the same "
                          "count per layer), erk, er, uniform_plus, or from:METHOD (the layer budgets of METHOD's "
                          "mask, e.g. from:synflow)", check=alloc.check_allocation)
    ranking: str = opt("score", "which weights survive inside a layer: score (the paper's) or rows (each output row "
                       "gets an equal share, by score inside the row)", RANKINGS)
    robust: str = opt("mad", "threshold statistics of MORT: median/MAD or mean/STD", ROBUST)
    min_keep: int = opt(1, "best entries kept in every output row", low=0)
    col_keep: int = opt(0, "best entries kept in every input column", low=0)
    class_keep: int = opt(0, "best entries kept in every output row of the last calibrated layer (a classifier's "
                          "classes; raises min_keep there): no class left without weights", low=0)
    min_layer_density: float = opt(0.0, "every layer keeps at least this fraction of its weights (met inside the "
                                   "total budget)", low=0.0, high=1.0)
    calibration_solver: str = opt("exact", "exact = prefix of a total order (O(n)); bisect = the paper's Alg. 2 "
                                  "bisection on alpha (global/layerwise/uniform with score ranking)", SOLVERS)
    exclude: tuple[str, ...] = opt((), "glob patterns of layers left dense (not pruned, not in the budget), or "
                                   ":first / :last", check=_check_exclude)
    kept_scale: str = opt("none", "how the kept weights start when the masks are applied for training (the mask is "
                          "the same): none = as initialized (the paper), layer_rms = each layer's kept weights scaled "
                          "to the RMS of its dense init, as a random mask would keep them (a ranking that keeps the "
                          "largest weights starts a normalized layer with a smaller effective learning rate); auto = "
                          "layer_rms if every hidden layer is followed by a normalization, else none", KEPT_SCALES)

    def __post_init__(self):
        validate_fields(self)
        if self.robust != "mad" and (not isinstance(self.allocation, str)
                                     or alloc.canonical(self.allocation) != "layerwise"):
            # a setting that cannot act is an error: under a pooled threshold loc + alpha * scale the
            # kept set is the top of S for any loc and scale, and the other allocations fix each
            # layer's count before ranking by S; only per-layer z-scores (layerwise) feel loc/scale
            shown = self.allocation if isinstance(self.allocation, str) else "a dict of per-layer sparsities"
            raise ValueError(f"robust={self.robust!r} cannot change the mask under allocation={shown!r} (the kept "
                             f"set is the top of the scores whatever the location/scale statistics; only the "
                             f"reported alpha changes); robust acts with allocation='layerwise' only")
        if self.calibration_solver == "bisect":
            a = alloc.canonical(self.allocation) if isinstance(self.allocation, str) else "dict"
            if a not in ("global", "layerwise", "uniform") or self.ranking != "score" or self.min_layer_density:
                raise ValueError(f"calibration_solver='bisect' runs the paper's Alg. 2: it supports allocation "
                                 f"global/layerwise/uniform with ranking='score' and no min_layer_density; got "
                                 f"allocation={self.allocation!r}, ranking={self.ranking!r}, min_layer_density="
                                 f"{self.min_layer_density}")

    @property
    def budget_method(self) -> str | None:
        """The method named by a ``from:<method>`` allocation (its scores give the layer budgets)."""
        a = self.allocation
        return a[len(alloc.FROM_PREFIX):] if isinstance(a, str) and a.startswith(alloc.FROM_PREFIX) else None

    def replace(self, **changes) -> "CalibrationSettings":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["exclude"] = list(self.exclude)
        return d


_FIELDS = tuple(f.name for f in dataclasses.fields(CalibrationSettings))


def resolve_settings(settings=None, **kw) -> CalibrationSettings:
    """Settings from a :class:`CalibrationSettings` (or an allocation name) plus keyword overrides;
    ``mode`` (global/layerwise/local) is the paper's name for the allocation and ``solver`` the old
    name of ``calibration_solver``."""
    if isinstance(settings, str):
        kw.setdefault("allocation", settings)
        settings = None
    if settings is not None and not isinstance(settings, CalibrationSettings):
        raise TypeError(f"settings must be a CalibrationSettings; got {type(settings).__name__}")
    mode = kw.pop("mode", None)
    if mode is not None:
        from .validate import check_choice
        check_choice("mode", mode, MODES)
        if "allocation" in kw and alloc.canonical(kw["allocation"]) != alloc.canonical(mode):
            raise ValueError(f"mode={mode!r} and allocation={kw['allocation']!r} disagree; pass one of them")
        kw["allocation"] = mode
    if "solver" in kw:
        kw["calibration_solver"] = kw.pop("solver")
    if "exclude" in kw and isinstance(kw["exclude"], list):
        kw["exclude"] = tuple(kw["exclude"])
    unknown = sorted(set(kw) - set(_FIELDS))
    if unknown:
        raise TypeError(f"unknown calibration setting(s) {unknown}; allowed: {list(_FIELDS) + ['mode']}")
    base = settings if settings is not None else CalibrationSettings()
    return dataclasses.replace(base, **kw) if kw else base


@dataclass
class LayerReport:
    """What calibration left in one layer. Columns are input channels (kernel level for convs:
    an input channel is empty when none of its kernel weights survives in any output row)."""

    kept: int
    total: int
    forced: int  # min_keep / col_keep survivors
    rows: int
    empty_rows: int
    cols: int
    empty_cols: int
    excluded: bool = False  # left dense by `exclude`, not in the budget
    effective: int | None = None  # kept weights on some input-output path (see yopo.core.connectivity)

    @property
    def density(self) -> float:
        return self.kept / self.total

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / self.total


@dataclass
class Calibration:
    """Masks plus what calibration found: threshold parameters, achieved budget, per-layer
    diagnostics. ``kept``/``total`` count the calibrated layers (excluded layers are dense and
    not counted)."""

    masks: dict[str, torch.Tensor]
    target: float
    kept: int
    total: int
    settings: CalibrationSettings = field(default_factory=CalibrationSettings)
    alpha: float | None = None  # global/layerwise + score ranking: survivors have critical alpha > alpha
    alphas: dict[str, float] = field(default_factory=dict)  # per-layer alpha (per-layer budgets, score ranking)
    thresholds: dict[str, float] = field(default_factory=dict)  # tau per layer (strict >), score ranking
    layers: dict[str, LayerReport] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_masks(cls, masks: dict[str, torch.Tensor], excluded=()) -> "Calibration":
        """The per-layer diagnostics of masks that were not calibrated here (a mask file, a
        transferred mask): ``target`` is the achieved sparsity, ``settings`` the defaults, no
        forced survivors known; layers named in ``excluded`` are dense and not counted."""
        layers = {n: _report(m.bool(), 0, n in excluded) for n, m in masks.items()}
        kept = sum(r.kept for r in layers.values() if not r.excluded)
        total = sum(r.total for r in layers.values() if not r.excluded)
        return cls(masks=dict(masks), target=1.0 - kept / max(total, 1), kept=kept, total=total, layers=layers)

    @property
    def mode(self) -> str:
        """The allocation (``local`` reads as ``uniform``); kept for the paper's vocabulary."""
        a = self.settings.allocation
        return alloc.canonical(a) if isinstance(a, str) else "dict"

    @property
    def robust(self) -> str:
        return self.settings.robust

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / self.total

    @property
    def effective_sparsity(self) -> float | None:
        """Fraction of the calibrated weights that are pruned or lie on no input-output path;
        ``None`` until :func:`yopo.core.connectivity.add_connectivity` has run on a model."""
        eff = [r.effective for r in self.layers.values() if not r.excluded]
        if not eff or any(e is None for e in eff):
            return None
        return 1.0 - sum(eff) / self.total

    def layer_sparsity(self) -> dict[str, float]:
        return {n: 1.0 - float(m.sum()) / m.numel() for n, m in self.masks.items()}


def _validate_scores(scores: dict[str, torch.Tensor]) -> None:
    if not isinstance(scores, dict) or not scores:
        raise ValueError("scores must be a non-empty dict {parameter name: tensor}")
    for name, s in scores.items():
        if not isinstance(s, torch.Tensor) or s.dim() < 1 or s.numel() == 0:
            raise ValueError(f"scores[{name!r}] must be a non-empty tensor; got {type(s).__name__}")
        lo, hi = torch.aminmax(s.detach()) if s.is_floating_point() else (s.min(), s.max())
        if not (torch.isfinite(lo) and torch.isfinite(hi)):  # NaN propagates through min/max
            raise ValueError(f"scores[{name!r}] has NaN or Inf entries; scores must be finite")


def _forced(S2: torch.Tensor, min_keep: int, col_keep: int) -> torch.Tensor:
    forced = torch.zeros_like(S2, dtype=torch.bool)
    if min_keep > 0:
        forced |= keep_best_along(S2, min_keep, dim=1)
    if col_keep > 0:
        forced |= keep_best_along(S2, col_keep, dim=0)
    return forced


def webster(total: int, sizes: list[int], lows: list[int]) -> list[int]:
    """Split ``total`` kept entries over layers of ``sizes`` in proportion to size, each layer at
    least ``lows[l]`` (the ``uniform`` allocation): the first ``total`` seats of the order
    (2k+1)/(2 n_l) ascending (ties to the earlier layer), after the forced ones."""
    return alloc.divisor_counts(total, sizes, sizes, lows)


def excluded_layers(names: list[str], patterns: tuple[str, ...]) -> set[str]:
    """The names (in model order) that ``exclude`` patterns leave dense: globs on the parameter or
    module name, or ``:first`` / ``:last``; a pattern that matches nothing warns."""
    return _excluded(list(names), tuple(patterns))


def _excluded(names: list[str], patterns: tuple[str, ...]) -> set[str]:
    out: set[str] = set()
    for p in patterns:
        if p == ":first":
            hit = {names[0]}
        elif p == ":last":
            hit = {names[-1]}
        else:
            hit = {n for n in names if fnmatch.fnmatchcase(n, p) or fnmatch.fnmatchcase(n.rpartition(".")[0], p)}
        if not hit:
            warnings.warn(f"exclude pattern {p!r} matches no calibrated layer")
        out |= hit
    return out


def _floor(density: float, n: int) -> int:
    """ceil(density * n) in exact arithmetic on the shortest decimal of density."""
    return min(n, math.ceil(Fraction(repr(float(density))) * n))


def mort(scores: dict[str, torch.Tensor], sparsity, settings: CalibrationSettings | str | None = None, *,
         budget_scores: dict[str, torch.Tensor] | None = None, tol: float = 1e-9, **kw) -> Calibration:
    """Calibrate masks for ``sparsity`` (a float in [0, 1), or a dict {layer name: sparsity} with
    ``allocation='uniform'``). ``scores[name]`` has the weight's shape (higher = more important);
    masks have the same shapes (bool, on the scores' device). Settings come from ``settings``
    (a :class:`CalibrationSettings`) and/or keywords (its fields; ``mode=`` is the paper's name
    of the allocation). ``budget_scores``: the other method's scores for ``allocation='from:<method>'``.
    """
    s = resolve_settings(settings, **kw)
    _validate_scores(scores)
    names_all = list(scores)
    excluded = _excluded(names_all, s.exclude) if s.exclude else set()
    names = [n for n in names_all if n not in excluded]
    if not names:
        raise ValueError(f"exclude={list(s.exclude)} leaves no layer to calibrate")
    allocation = alloc.canonical(s.allocation) if isinstance(s.allocation, str) else "dict"

    per_layer: dict[str, float] | None = None
    if isinstance(sparsity, Mapping):
        if allocation != "uniform":
            raise ValueError(f"per-layer sparsities need allocation='uniform' (mode='local'); got "
                             f"allocation={s.allocation!r}")
        per_layer = _layer_sparsities(sparsity, "sparsity", names, names_all)
    else:
        sparsity = check_sparsity(sparsity)
    if allocation == "dict":  # per-layer sparsities as an allocation: budgets in their proportions
        _layer_sparsities(s.allocation, "allocation", names, names_all)
    ref = None
    if s.budget_method is not None:
        if budget_scores is None:
            raise ValueError(f"allocation={s.allocation!r} needs the scores of {s.budget_method!r}: pass "
                             f"budget_scores=yopo.score(model, {s.budget_method!r}, ...)")
        _validate_scores(budget_scores)
        bad = [n for n in names if n not in budget_scores or budget_scores[n].shape != scores[n].shape]
        if bad:
            raise ValueError(f"budget_scores do not match the scores: layer {bad[0]!r} is missing or has another shape")
        ref = budget_scores
    elif budget_scores is not None:
        raise ValueError(f"budget_scores were given but allocation={s.allocation!r} does not use them; "
                         f"use allocation='from:<method>'")

    # rows = output features: a weight stored (in, out) (HF Conv1D, see yopo.core.layers) is
    # calibrated as its transpose (min_keep per output row, ties in that row-major order)
    transposed = getattr(scores, "transposed", frozenset())
    S2 = {n: to_rows(scores[n].detach(), n in transposed).float() for n in names}
    sizes = [S2[n].numel() for n in names]
    total = sum(sizes)
    # class_keep raises min_keep for the last layer only: an empty class row can never be predicted,
    # while an empty hidden row is a pruned unit (structure-aware masks prune units on purpose)
    forced = {n: _forced(S2[n], max(s.min_keep, s.class_keep) if n == names[-1] else s.min_keep, s.col_keep)
              for n in names}
    F_l = [count_true(forced[n]) for n in names]
    F = sum(F_l)
    lows = [max(f, _floor(s.min_layer_density, size)) if s.min_layer_density else f for f, size in zip(F_l, sizes)]

    if per_layer is not None:
        counts = []
        for n, size, low in zip(names, sizes, lows):
            k = n_keep(per_layer[n], size)
            if k < low:
                warnings.warn(f"layer {n}: sparsity {per_layer[n]} would cut below its {low} forced / floor "
                              f"survivors; keeping {low} of {size} (sparsity {1 - low / size:.6f})")
            counts.append(max(k, low))
        K = sum(counts)
        target = 1.0 - K / total
    else:
        target = sparsity
        K = n_keep(sparsity, total)
        if K < F:
            warnings.warn(f"sparsity={sparsity} is infeasible with min_keep={s.min_keep}, col_keep={s.col_keep}: "
                          f"at least {F} of {total} entries must stay; using the nearest feasible sparsity "
                          f"{1 - F / total:.6f}")
            K = F
        if K < sum(lows):
            raise ValueError(f"min_layer_density={s.min_layer_density} needs at least {sum(lows)} kept weights "
                             f"but sparsity={sparsity} keeps {K} of {total}; lower one of them")
        counts = None

    cal = Calibration(masks={}, target=target, kept=0, total=total, settings=s)
    if s.calibration_solver == "bisect":
        if counts is None and allocation == "uniform":
            counts = webster(K, sizes, F_l)
        _bisect(cal, S2, forced, names, K, counts, s.robust, tol, pooled=allocation == "global")
    elif counts is None and allocation in alloc.POOLED and s.ranking == "score" and lows == F_l:
        _pooled_mask(cal, S2, forced, names, sizes, K, allocation, s.robust)
    else:
        if counts is None:
            counts = _counts(allocation, s, S2, [tuple(scores[n].shape) for n in names], forced, names, sizes, K,
                             F_l, lows, ref)
        for n, k in zip(names, counts):
            cal.masks[n] = select(S2[n], k, s.ranking, forced[n]).flatten()
        if s.ranking == "score":  # report each layer's cut: the mask is {S > tau} up to ties
            for n, k in zip(names, counts):
                key = S2[n].flatten().masked_fill(forced[n].flatten(), torch.inf)
                tau = topk_mask_cut(key, k)[1]
                loc, scale = threshold_stats(S2[n], s.robust)
                cal.thresholds[n] = tau
                cal.alphas[n] = (tau - loc) / scale
    masks = {}
    for n in names_all:
        if n in excluded:
            masks[n] = torch.ones(scores[n].shape, dtype=torch.bool, device=scores[n].device)
        else:
            masks[n] = from_rows(cal.masks[n], tuple(scores[n].shape), n in transposed)
    cal.masks = masks
    cal.kept = sum(count_true(masks[n]) for n in names)
    cal.layers = {n: _report(masks[n].t() if n in transposed else masks[n], count_true(forced[n]) if n in forced else 0,
                             n in excluded) for n in names_all}
    _warn_collapse(cal, s)
    return cal


def _layer_sparsities(given: Mapping, what: str, names: list[str], names_all: list[str]) -> dict[str, float]:
    """``given`` (per-layer sparsities passed as ``what``) checked against the scored layers:
    {name: sparsity} over the calibrated ``names``."""
    unknown = sorted(set(given) - set(names_all))
    missing = [n for n in names if n not in given]
    if unknown or missing:
        prefix = "" if what == "sparsity" else f"{what}: "
        raise ValueError(f"{prefix}per-layer sparsity keys must match the scored layers: unknown {unknown[:3]}, "
                         f"missing {missing[:3]}")
    return {n: check_sparsity(given[n], f"{what}[{n!r}]") for n in names}


def _pooled_mask(cal, S2, forced, names, sizes, K, allocation, robust) -> None:
    """global / layerwise with score ranking: one pooled top-K (the paper's MORT), alpha reported."""
    keys, locs, scales = [], [], []
    if allocation == "global":
        raw = torch.cat([S2[n].flatten() for n in names])
        loc, scale = threshold_stats(raw, robust)
        locs, scales = [loc] * len(names), [scale] * len(names)
    else:
        for n in names:
            x = S2[n].flatten()
            loc, scale = threshold_stats(x, robust)
            keys.append((x - loc) / scale)
            locs.append(loc)
            scales.append(scale)
        raw = torch.cat(keys)
    # forced entries first (+inf); dropped entries are never forced, so the largest dropped key is
    # the (total - K)-th smallest of the forced-first key
    keep, cut = topk_mask_cut(raw.masked_fill_(torch.cat([forced[n].flatten() for n in names]), torch.inf), K)
    alpha = cut if allocation == "layerwise" else (cut - locs[0]) / scales[0]
    cal.alpha = alpha
    for n, part, loc, scale in zip(names, keep.split(sizes), locs, scales):
        cal.masks[n] = part
        cal.thresholds[n] = loc + alpha * scale


def _counts(allocation, s, S2, shapes, forced, names, sizes, K, F_l, lows, ref) -> list[int]:
    """Per-layer kept counts of the allocation for a budget K (house-monotone in K)."""
    if allocation in alloc.POOLED or s.budget_method is not None:
        keys = []
        for n in names:
            x = (ref[n].detach().float().flatten() if ref is not None else S2[n].flatten())
            if allocation == "layerwise":
                loc, scale = threshold_stats(x, s.robust)
                x = (x - loc) / scale
            keys.append(x.masked_fill(forced[n].flatten(), torch.inf))
        return alloc.pooled_counts(keys, K, lows)
    if allocation == "dict":
        # Webster over each layer's kept count at its given sparsity: at their total, exactly those
        # counts (integral quotas); at any other total, the same proportions, house-monotone
        weights = [n_keep(s.allocation[n], size) for n, size in zip(names, sizes)]
    else:
        weights = alloc.divisor_weights(allocation, shapes)
    tiers = [F_l, lows]
    if allocation == "uniform_plus":
        first = list(lows)
        first[0] = sizes[0]
        tiers.append(first)
        plus = list(first)
        plus[-1] = max(plus[-1], _floor(alloc.UNIFORM_PLUS_CLASSIFIER_DENSITY, sizes[-1]))
        tiers.append(plus)
        if K < sum(plus):
            warnings.warn(f"allocation='uniform_plus' keeps the first layer dense and the last at >= 20% density "
                          f"({sum(plus)} weights), more than the budget of {K}: the other layers get nothing",
                          CollapseWarning)
    return alloc.tiered_counts(K, weights, sizes, tiers)


def _report(mask: torch.Tensor, forced: int, excluded: bool) -> LayerReport:
    m2 = mask.reshape(mask.shape[0], -1)
    rows = m2.shape[0]
    empty_rows = rows - count_true(m2.any(dim=1))
    if mask.dim() >= 2:
        per_in = mask.transpose(0, 1).reshape(mask.shape[1], -1)
        cols = per_in.shape[0]
        empty_cols = cols - count_true(per_in.any(dim=1))
    else:
        cols, empty_cols = 1, 0
    return LayerReport(kept=count_true(mask), total=mask.numel(), forced=forced, rows=rows, empty_rows=empty_rows,
                       cols=cols, empty_cols=empty_cols, excluded=excluded)


def _warn_collapse(cal: Calibration, s: CalibrationSettings) -> None:
    """Warn (CollapseWarning) about layers that cannot work: emptied layers, layers left with only
    their forced survivors, and empty *output* rows of the last layer (classes that can never be
    predicted; ``class_keep=1`` prevents them). Hidden rows without weights are pruned units, not a collapse
    (structure-aware masks keep few units on purpose); the harm they can do, kept weights stranded
    off every input-output path, is measured and warned about by
    :func:`yopo.core.connectivity.add_connectivity` (effective sparsity)."""
    emptied, only_forced, empty_rows = [], [], []
    calibrated = [n for n, r in cal.layers.items() if not r.excluded]
    last = calibrated[-1] if calibrated else None
    for n in calibrated:
        r = cal.layers[n]
        if r.kept == 0:
            emptied.append(n)
        elif r.forced and r.kept == r.forced and r.kept < r.total:
            only_forced.append(f"{n} ({r.kept})")
        elif r.empty_rows and n == last:
            empty_rows.append(f"{n} ({r.empty_rows} of {r.rows})")
    msgs = []
    if emptied:
        msgs.append(f"{len(emptied)} layer(s) emptied: {name_list(emptied)}")
    if only_forced:
        msgs.append(f"{len(only_forced)} layer(s) keep only their forced survivors (min_keep/col_keep): "
                    f"{name_list(only_forced)}")
    if empty_rows:
        msgs.append(f"the last layer has output rows with no weight: {empty_rows[0]}; those outputs "
                    f"(classes) can never be predicted (class_keep=1 keeps one weight in each)")
    if msgs:
        cal.warnings.extend(msgs)
        warnings.warn(f"calibration at sparsity {cal.sparsity:.4f} (allocation={cal.mode}, ranking="
                      f"{s.ranking}): " + "; ".join(msgs), CollapseWarning, stacklevel=3)


def _bisect(cal: Calibration, S2, forced, names, K, ks, robust, tol, pooled: bool) -> None:
    """Alg. 2 as written: bracket, then bisect alpha until the bracket is narrower than ``tol``;
    masks at alpha_hi (so the achieved sparsity is at least the target)."""
    def run(group: list[str], k_target: int, pooled: bool) -> float:
        if pooled:
            x = torch.cat([S2[n].flatten() for n in group])
            loc, scale = threshold_stats(x, robust)
            stats = {n: (loc, scale) for n in group}
        else:
            stats = {n: threshold_stats(S2[n], robust) for n in group}

        def kept(alpha: float) -> int:
            return sum(int(((S2[n] > stats[n][0] + alpha * stats[n][1]) | forced[n]).sum()) for n in group)

        lo, hi = -1.0, 1.0
        while kept(lo) < k_target and lo > -1e12:
            lo *= 2
        while kept(hi) > k_target and hi < 1e12:
            hi *= 2
        while hi - lo > tol:
            mid = 0.5 * (lo + hi)
            if kept(mid) > k_target:  # achieved sparsity below target
                lo = mid
            else:
                hi = mid
        for n in group:
            tau = stats[n][0] + hi * stats[n][1]
            cal.masks[n] = ((S2[n] > tau) | forced[n]).flatten()
            cal.thresholds[n] = tau
        return hi

    if ks is not None:  # per-layer budgets: one bisection per layer
        for n, k in zip(names, ks):
            cal.alphas[n] = run([n], k, pooled=False)
    else:
        cal.alpha = run(names, K, pooled=pooled)


def calibrate(scores: dict[str, torch.Tensor], sparsity, settings: CalibrationSettings | str | None = None, *,
              budget_scores: dict[str, torch.Tensor] | None = None, **kw) -> dict[str, torch.Tensor]:
    """Boolean masks {name: BoolTensor of the weight's shape}; True = kept. See :func:`mort`."""
    return mort(scores, sparsity, settings, budget_scores=budget_scores, **kw).masks
