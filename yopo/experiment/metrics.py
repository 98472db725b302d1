"""Transfer and robustness metrics of Sec. 3.4 as small pure functions on numbers.

Conventions: accuracies are in percent, the risk of a run is its top-1 error ``100 - acc``
(percentage points), so risk differences are accuracy differences with the sign flipped.

* DTI (Def. 1): ``R(p; D_tgt | M_src(p)) - R(p; D_tgt | M_tgt(p))`` = acc with the target-calibrated
  mask minus acc with the source mask. Positive = the transferred mask is worse.
* I^3 (Def. 2): ``1/S sum_s [R(p; D | M^(s)) - R(p; D | M^(s-bar))]`` where ``M^(s)`` is seed s's
  mask trained from its own initialization and ``M^(s-bar)`` is the same mask applied to the
  initialization of another seed (averaged over the other seeds available).
* The paper's Table 4 *proxy*: the cross-seed accuracy of seed s is replaced by the leave-one-out
  mean of the own-initialization accuracies of the other seeds; its gap is
  ``Delta_dagger = Acc_self - Acc_xseed_dagger``. Note that the mean of these proxy gaps is always
  exactly 0 (hence the paper reports mean |Delta_dagger|), which is why the true I^3 is computed
  from actual cross-seed runs here and the proxy is only shown beside it.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence


def risk(acc: float) -> float:
    """Top-1 error in percentage points from an accuracy in percent."""
    return 100.0 - float(acc)


def mean(xs: Iterable[float]) -> float:
    xs = [float(x) for x in xs]
    if not xs:
        return math.nan
    return sum(xs) / len(xs)


def std(xs: Iterable[float], ddof: int = 1) -> float:
    """Sample standard deviation (ddof=1, as in the paper's mean +- std); 0 for a single value."""
    xs = [float(x) for x in xs]
    n = len(xs)
    if n == 0:
        return math.nan
    if n - ddof <= 0:
        return 0.0
    m = sum(xs) / n
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (n - ddof))


def mean_std(xs: Iterable[float], ddof: int = 1) -> tuple[float, float, int]:
    xs = [float(x) for x in xs]
    return mean(xs), std(xs, ddof), len(xs)


def dti(acc_src_mask: float, acc_tgt_mask: float) -> float:
    """Def. 1 for one (source, target, p): R(tgt | M_src) - R(tgt | M_tgt) = acc_tgt - acc_src."""
    return risk(acc_src_mask) - risk(acc_tgt_mask)


def dti_paired(acc_src_mask: Mapping, acc_tgt_mask: Mapping) -> float:
    """DTI averaged over the keys (e.g. seeds) present in both mappings (paired differences)."""
    keys = [k for k in acc_src_mask if k in acc_tgt_mask]
    if not keys:
        return math.nan
    return mean(dti(acc_src_mask[k], acc_tgt_mask[k]) for k in keys)


def dti_summary(values: Sequence[float]) -> dict:
    """Table 2 summaries of per-dataset DTIs: mean, worst absolute value and sup (worst case over
    a budget set, Def. 1 text)."""
    vals = [float(v) for v in values if not math.isnan(float(v))]
    if not vals:
        return {"mean": math.nan, "worst_abs": math.nan, "sup": math.nan}
    return {"mean": mean(vals), "worst_abs": max(abs(v) for v in vals), "sup": max(vals)}


def loo_means(values: Sequence[float]) -> list[float]:
    """Leave-one-out means: entry i is the mean of all values but the i-th (needs >= 2 values)."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n < 2:
        return [math.nan] * n
    total = sum(vals)
    return [(total - v) / (n - 1) for v in vals]


def proxy_gaps(acc_self: Sequence[float]) -> list[float]:
    """Table 4 proxy: Delta_dagger_s = Acc_self(s) - LOO mean of Acc_self over the other seeds."""
    return [a - b for a, b in zip(acc_self, loo_means(acc_self))]


def i3_true(acc_self: Mapping, acc_cross: Mapping) -> float:
    """Def. 2 on actual cross-seed runs, in risk units (percentage points).

    ``acc_self[s]``: accuracy of seed s's mask trained from init s.
    ``acc_cross[(s, s2)]``: accuracy of seed s's mask applied to the init of seed ``s2 != s``.
    Returns ``mean_s [R_self(s) - mean_{s2} R_cross(s, s2)]`` over the seeds s that have both.
    Near 0: masks transfer across initializations. Negative: own-init masks are better.
    """
    terms = []
    for s, a in acc_self.items():
        cross = [v for (ms, init), v in acc_cross.items() if ms == s and init != s]
        if cross:
            terms.append(risk(a) - mean(risk(v) for v in cross))
    return mean(terms) if terms else math.nan


def i3_per_seed(acc_self: Mapping, acc_cross: Mapping) -> dict:
    """Per mask seed s: {acc_self, acc_xseed (true: mean over other inits), gap = self - xseed}."""
    out = {}
    for s, a in acc_self.items():
        cross = [v for (ms, init), v in acc_cross.items() if ms == s and init != s]
        x = mean(cross) if cross else math.nan
        out[s] = {"acc_self": float(a), "acc_xseed": x, "gap": float(a) - x, "n_cross": len(cross)}
    return out


def i3_proxy(acc_self: Sequence[float]) -> float:
    """The paper's proxy summary: mean |Delta_dagger| (the signed mean is identically 0)."""
    gaps = proxy_gaps(acc_self)
    return mean(abs(g) for g in gaps) if gaps else math.nan


def mask_jaccard(a: Mapping, b: Mapping) -> float:
    """|kept(a) & kept(b)| / |kept(a) | kept(b)| over the layers of two masks (1.0 = identical).
    Masks are {name: bool tensor or array}; layers missing from either are ignored."""
    inter = union = 0
    for n in a:
        if n not in b:
            continue
        x, y = a[n].bool() if hasattr(a[n], "bool") else a[n], b[n].bool() if hasattr(b[n], "bool") else b[n]
        inter += int((x & y).sum())
        union += int((x | y).sum())
    return inter / union if union else 1.0


def nested(masks_by_sparsity: Mapping) -> bool:
    """Prop. 2: survivors at a higher sparsity are a subset of those at any lower sparsity."""
    ps = sorted(masks_by_sparsity)
    for lo, hi in zip(ps, ps[1:]):
        a, b = masks_by_sparsity[lo], masks_by_sparsity[hi]
        for n in b:
            if bool((b[n] & ~a[n]).any()):
                return False
    return True


def rank_positions(values: Sequence[float], higher_is_better: bool = True) -> list[int | None]:
    """Rank of each value (0 = best, 1 = second...), NaN -> None; ties share the better rank.
    Used for the paper's bold (best) / italic (second best) table cells."""
    vals = [float(v) for v in values]
    valid = sorted({v for v in vals if not math.isnan(v)}, reverse=higher_is_better)
    return [None if math.isnan(v) else valid.index(v) for v in vals]
