"""MORT (Alg. 2): turn saliency scores into binary masks that meet a sparsity budget exactly.

Every mode orders all prunable entries by one fixed total order and keeps a prefix of it:

* ``global`` (YOPO-G): tau = loc(S_all) + alpha * scale(S_all). The scale is positive, so an
  entry's *critical alpha* (the largest alpha at which it survives ``S > tau``) is increasing in S
  and the order is simply S, pooled over layers.
* ``layerwise``: tau_l = loc(S_l) + alpha * scale(S_l), one alpha. The order is the critical alpha
  (S_l - loc_l) / scale_l, pooled over layers.
* ``local`` (YOPO-L): per-layer budgets. By default the equal-ratio policy: the kept count of each
  layer follows Webster's divisor method (house-monotone), so the total is exact and no layer
  loses a survivor when the budget grows. A dict of per-layer sparsities gives the budgets instead.

Ties are broken by position (lower flat index first, layers in model order), so the order is total
and deterministic; keeping the K first entries of it (kthvalue, O(n)) realises any budget K and
makes masks nested across sparsities (Prop. 2). ``solver="bisect"`` runs the paper's bisection on
alpha instead (same thresholds, same strict ``>``, budget met to the bisection tolerance).

Survival constraints: the ``min_keep`` best entries of every output row (and ``col_keep`` of every
input column) are kept at every sparsity; they count toward the budget.
"""
from __future__ import annotations

import math
from fractions import Fraction
import warnings
from dataclasses import dataclass, field

import torch

from .layers import from_rows, to_rows
from .validate import check_choice, check_int, check_sparsity

MODES = ("global", "layerwise", "local")
ROBUST = ("mad", "std")
SOLVERS = ("exact", "bisect")


def n_keep(sparsity: float, n: int) -> int:
    """Number of entries kept at ``sparsity`` out of ``n``: round((1 - s) * n), halves up.

    Computed in exact rational arithmetic on the shortest decimal of ``s`` (0.9 means 9/10), so
    that e.g. 10% of 5 weights is 0.5 -> 1 kept, not 0.49999... -> 0 as float arithmetic gives."""
    s = Fraction(repr(float(sparsity)))
    return min(n, max(0, math.floor((1 - s) * n + Fraction(1, 2))))


def robust_stats(x: torch.Tensor, robust: str) -> tuple[float, float]:
    """(loc, scale): (median, MAD) or (mean, population std) of a tensor, in float64."""
    x = x.detach().flatten()
    if robust == "std":
        x64 = x.double()
        return float(x64.mean()), float(x64.std(unbiased=False)) if x.numel() > 1 else 0.0
    med = _median(x)
    # (t.double() is t itself for float64 input: subtract out of place, then abs in place)
    return med, _median(x, transform=lambda t: (t.double() - med).abs_())


_SELECT_MIN = 1 << 18  # below this many entries, plain kthvalue is as fast as the bracket
_SAMPLE = 1 << 16
_CHUNK = 1 << 20


def _count(mask: torch.Tensor) -> int:
    return int(torch.count_nonzero(mask))  # much faster than bool.sum() on CPU


def _select(x: torch.Tensor, ks: list[int], transform=None) -> list[torch.Tensor]:
    """The k-th smallest values (1-based) of ``transform(x)`` for each k in ``ks`` (close together):
    exactly ``transform(x).kthvalue(k).values``. ``x`` is 1-D; ``transform`` is elementwise.

    For large n, a deterministic strided sample brackets the answers between two sample quantiles
    [lo, hi]; one chunked pass counts the entries below lo and keeps those in [lo, hi] (chunks stay
    in cache, and ``transform`` is applied chunk by chunk, so e.g. a float64 copy of x is never
    materialized). The small kept set gives the answers. If the bracket misses (possible only for
    adversarial orderings), it falls back to kthvalue over everything, so results are always exact.
    """
    f = transform if transform is not None else (lambda t: t)
    n = x.numel()
    if n <= _SELECT_MIN:
        y = f(x)
        return [y.kthvalue(k).values for k in ks]
    step = n // _SAMPLE
    sample = f(x[::step].contiguous())
    m = sample.numel()
    slack = 4.0 * math.sqrt(m) + 2.0
    lo_i = max(1, int(min(ks) / n * m - slack))
    hi_i = min(m, int(max(ks) / n * m + slack) + 1)
    lo = sample.kthvalue(lo_i).values if lo_i > 1 else None
    hi = sample.kthvalue(hi_i).values if hi_i < m else None
    below, inside = 0, []
    for c in x.split(_CHUNK):
        y = f(c)
        if lo is not None:
            below += _count(y < lo)
            sel = y >= lo
            if hi is not None:
                sel &= y <= hi
        else:
            sel = y <= hi if hi is not None else torch.ones_like(y, dtype=torch.bool)
        inside.append(y[sel])
    inside = torch.cat(inside)
    if all(below < k <= below + inside.numel() for k in ks):
        return [inside.kthvalue(k - below).values for k in ks]
    y = f(x)
    return [y.kthvalue(k).values for k in ks]


def _kth_smallest(x: torch.Tensor, k: int) -> torch.Tensor:
    """Exactly ``x.kthvalue(k).values`` for a 1-D x, by bracketed selection (see :func:`_select`)."""
    return _select(x, [k])[0]


def _median(x: torch.Tensor, transform=None) -> float:
    """The usual median (mean of the two middle values for even n) of ``transform(x)``, by exact
    selection: O(n)."""
    n = x.numel()
    if n % 2:
        return float(_select(x, [(n + 1) // 2], transform)[0])
    lo, hi = _select(x, [n // 2, n // 2 + 1], transform)
    return 0.5 * (float(lo) + float(hi))


def _safe_scale(scale: float, x: torch.Tensor) -> float:
    # a zero MAD (more than half the entries equal) would make every critical alpha infinite;
    # fall back to the std, then to 1, which keeps the order of the scores themselves
    if scale > 0:
        return scale
    s = float(x.double().std(unbiased=False)) if x.numel() > 1 else 0.0
    return s if s > 0 else 1.0


def _threshold_stats(x: torch.Tensor, robust: str) -> tuple[float, float]:
    """(loc, scale) of the threshold tau = loc + alpha * scale, the scale kept positive."""
    loc, scale = robust_stats(x, robust)
    return loc, _safe_scale(scale, x.flatten())


def topk_mask(key: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest entries of a 1-D ``key``; ties go to lower indices."""
    return _topk_mask_cut(key, k)[0]


def _topk_mask_cut(key: torch.Tensor, k: int) -> tuple[torch.Tensor, float]:
    """:func:`topk_mask` and the largest value left out (-inf when nothing is left out)."""
    n = key.numel()
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=key.device), -math.inf
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=key.device), float(key.max())
    # the k-th largest value v, and the (k+1)-th largest: the largest one dropped
    cut, v = _select(key, [n - k, n - k + 1])
    mask = key > v
    need = k - _count(mask)
    if need > 0:
        eq = key == v
        if _count(eq) == need:  # the usual case: every tie fits
            mask |= eq
        else:
            ties = torch.nonzero(eq).flatten()[:need]
            mask[ties] = True
    return mask, float(cut)


def _keep_best_along(key2d: torch.Tensor, m: int, dim: int) -> torch.Tensor:
    """The ``m`` best entries of every row (dim=1) or column (dim=0), ties to lower index."""
    size = key2d.shape[dim]
    if m >= size:
        return torch.ones_like(key2d, dtype=torch.bool)
    if m == 1:  # argmax returns the first maximal index: the same entry, one pass
        out = torch.zeros_like(key2d, dtype=torch.bool)
        return out.scatter_(dim, key2d.argmax(dim=dim, keepdim=True), True)
    v = key2d.topk(m, dim=dim).values.narrow(dim, m - 1, 1)  # m-th largest along dim
    above = key2d > v
    eq = key2d == v
    room = m - above.sum(dim=dim, keepdim=True)
    return above | (eq & (eq.cumsum(dim=dim) <= room))


@dataclass
class Calibration:
    """Masks plus what calibration found (threshold parameters, achieved budget)."""

    masks: dict[str, torch.Tensor]
    target: float
    kept: int
    total: int
    mode: str
    robust: str
    alpha: float | None = None  # global/layerwise: survivors are entries with critical alpha > alpha
    alphas: dict[str, float] = field(default_factory=dict)  # local: per-layer alpha
    thresholds: dict[str, float] = field(default_factory=dict)  # tau per layer (strict >)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / self.total

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
        forced |= _keep_best_along(S2, min_keep, dim=1)
    if col_keep > 0:
        forced |= _keep_best_along(S2, col_keep, dim=0)
    return forced


def webster(total: int, sizes: list[int], lows: list[int]) -> list[int]:
    """Split ``total`` kept entries over layers of ``sizes`` in proportion to size, each layer at
    least ``lows[l]``: the first ``total`` seats of the order (2k+1)/(2 n_l) ascending (ties to the
    earlier layer), after the forced ones. House-monotone, so budgets nest across sparsities."""
    N = sum(sizes)
    alloc = []
    for n, low in zip(sizes, lows):
        # seats k >= 0 with (2k+1)/(2n) < total/N, i.e. (2k+1) N < 2 n total
        c = 0 if 2 * n * total <= N else -(-(2 * n * total - N) // (2 * N))
        alloc.append(max(low, min(n, c)))
    cur = sum(alloc)
    while cur < total:  # add the seat with the smallest key; ties to the lowest layer index
        best = None
        for i, (n, k) in enumerate(zip(sizes, alloc)):
            if k < n and (best is None or (2 * k + 1) * sizes[best] < (2 * alloc[best] + 1) * n):
                best = i
        alloc[best] += 1
        cur += 1
    while cur > total:  # drop the non-forced seat with the largest key; ties to the highest index
        worst = None
        for i, (n, k, low) in enumerate(zip(sizes, alloc, lows)):
            if k > low and (worst is None or (2 * k - 1) * sizes[worst] >= (2 * alloc[worst] - 1) * n):
                worst = i
        alloc[worst] -= 1
        cur -= 1
    return alloc


def mort(scores: dict[str, torch.Tensor], sparsity, mode: str = "global", robust: str = "mad",
         min_keep: int = 1, col_keep: int = 0, solver: str = "exact", tol: float = 1e-9) -> Calibration:
    """Calibrate masks for ``sparsity`` (a float in [0, 1), or in ``local`` mode optionally a dict
    {layer name: sparsity}). ``scores[name]`` has the weight's shape; masks have the same shapes
    (bool, on the scores' device). Higher score = more important."""
    check_choice("mode", mode, MODES)
    check_choice("robust", robust, ROBUST)
    check_choice("solver", solver, SOLVERS)
    check_int("min_keep", min_keep, 0)
    check_int("col_keep", col_keep, 0)
    _validate_scores(scores)
    names = list(scores)
    per_layer: dict[str, float] | None = None
    if isinstance(sparsity, dict):
        if mode != "local":
            raise ValueError(f"per-layer sparsities need mode='local'; got mode={mode!r}")
        unknown = sorted(set(sparsity) - set(names))
        missing = [n for n in names if n not in sparsity]
        if unknown or missing:
            raise ValueError(f"per-layer sparsity keys must match the scored layers: unknown {unknown[:3]}, "
                             f"missing {missing[:3]}")
        per_layer = {n: check_sparsity(sparsity[n], f"sparsity[{n!r}]") for n in names}
    else:
        sparsity = check_sparsity(sparsity)

    # rows = output features: a weight stored (in, out) (HF Conv1D, see yopo.core.layers) is
    # calibrated as its transpose (min_keep per output row, ties in that row-major order)
    transposed = getattr(scores, "transposed", frozenset())
    S2 = {n: to_rows(scores[n].detach(), n in transposed).float() for n in names}
    sizes = [S2[n].numel() for n in names]
    total = sum(sizes)
    forced = {n: _forced(S2[n], min_keep, col_keep) for n in names}
    lows = [_count(forced[n]) for n in names]
    F = sum(lows)

    if per_layer is not None:
        ks = []
        for n, size, low in zip(names, sizes, lows):
            k = n_keep(per_layer[n], size)
            if k < low:
                warnings.warn(f"layer {n}: sparsity {per_layer[n]} would cut rows below min_keep="
                              f"{min_keep}; keeping {low} of {size} (sparsity {1 - low / size:.6f})")
            ks.append(max(k, low))
        target = 1.0 - sum(ks) / total
        K = sum(ks)
    else:
        target = sparsity
        K = n_keep(sparsity, total)
        if K < F:
            warnings.warn(f"sparsity={sparsity} is infeasible with min_keep={min_keep}, col_keep={col_keep}: "
                          f"at least {F} of {total} entries must stay; using the nearest feasible sparsity "
                          f"{1 - F / total:.6f}")
            K = F
        ks = webster(K, sizes, lows) if mode == "local" else None

    cal = Calibration(masks={}, target=target, kept=0, total=total, mode=mode, robust=robust)
    if solver == "bisect":
        _bisect(cal, S2, forced, names, K, ks, robust, tol)
    elif mode == "local":
        for n, k in zip(names, ks):
            key = S2[n].flatten()
            # forced entries are never dropped, so the cut is the largest dropped score
            m, tau = _topk_mask_cut(key.masked_fill(forced[n].flatten(), torch.inf), k)
            cal.masks[n] = m
            loc, scale = _threshold_stats(key, robust)
            cal.thresholds[n] = tau
            cal.alphas[n] = (tau - loc) / scale
    else:
        keys, locs, scales = [], [], []
        if mode == "global":
            pooled = torch.cat([S2[n].flatten() for n in names])
            loc, scale = _threshold_stats(pooled, robust)
            keys = [S2[n].flatten() for n in names]
            locs, scales = [loc] * len(names), [scale] * len(names)
        else:
            for n in names:
                x = S2[n].flatten()
                loc, scale = _threshold_stats(x, robust)
                keys.append((x - loc) / scale)
                locs.append(loc)
                scales.append(scale)
        raw = pooled if mode == "global" else torch.cat(keys)
        # forced entries first (+inf); dropped entries are never forced, so the largest dropped
        # key is the (total - K)-th smallest of the forced-first key
        keep, cut = _topk_mask_cut(raw.masked_fill_(torch.cat([forced[n].flatten() for n in names]), torch.inf), K)
        alpha = cut if mode == "layerwise" else (cut - locs[0]) / scales[0]
        cal.alpha = alpha
        for n, part, loc, scale in zip(names, keep.split(sizes), locs, scales):
            cal.masks[n] = part
            cal.thresholds[n] = loc + alpha * scale
    cal.masks = {n: from_rows(cal.masks[n], tuple(scores[n].shape), n in transposed) for n in names}
    cal.kept = sum(_count(m) for m in cal.masks.values())
    return cal


def _bisect(cal: Calibration, S2, forced, names, K, ks, robust, tol) -> None:
    """Alg. 2 as written: bracket, then bisect alpha until the bracket is narrower than ``tol``;
    masks at alpha_hi (so the achieved sparsity is at least the target)."""
    def run(group: list[str], k_target: int, pooled: bool) -> float:
        if pooled:
            x = torch.cat([S2[n].flatten() for n in group])
            loc, scale = _threshold_stats(x, robust)
            stats = {n: (loc, scale) for n in group}
        else:
            stats = {n: _threshold_stats(S2[n], robust) for n in group}

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

    if ks is not None:  # local: one bisection per layer
        for n, k in zip(names, ks):
            cal.alphas[n] = run([n], k, pooled=False)
    else:
        cal.alpha = run(names, K, pooled=cal.mode == "global")


def calibrate(scores: dict[str, torch.Tensor], sparsity, mode: str = "global", robust: str = "mad",
              min_keep: int = 1, col_keep: int = 0, solver: str = "exact") -> dict[str, torch.Tensor]:
    """Boolean masks {name: BoolTensor of the weight's shape}; True = kept. See :func:`mort`."""
    return mort(scores, sparsity, mode=mode, robust=robust, min_keep=min_keep, col_keep=col_keep,
                solver=solver).masks
