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
import warnings
from dataclasses import dataclass, field

import torch

from .layers import flat
from .validate import check_choice, check_float, check_int, check_sparsity

MODES = ("global", "layerwise", "local")
ROBUST = ("mad", "std")
SOLVERS = ("exact", "bisect")


def n_keep(sparsity: float, n: int) -> int:
    """Number of entries kept at ``sparsity`` out of ``n``: round((1 - s) * n), halves up."""
    return min(n, max(0, math.floor((1.0 - sparsity) * n + 0.5)))


def robust_stats(x: torch.Tensor, robust: str) -> tuple[float, float]:
    """(loc, scale): (median, MAD) or (mean, population std) of a tensor, in float64."""
    x = x.detach().flatten()
    if robust == "std":
        x64 = x.double()
        return float(x64.mean()), float(x64.std(unbiased=False)) if x.numel() > 1 else 0.0
    med = _median(x)
    return med, _median((x.double() - med).abs())


def _median(x: torch.Tensor) -> float:
    """The usual median (mean of the two middle values for even n), via kthvalue: O(n)."""
    n = x.numel()
    lo = float(x.kthvalue((n + 1) // 2).values)
    if n % 2:
        return lo
    return 0.5 * (lo + float(x.kthvalue(n // 2 + 1).values))


def _safe_scale(scale: float, x: torch.Tensor) -> float:
    # a zero MAD (more than half the entries equal) would make every critical alpha infinite;
    # fall back to the std, then to 1, which keeps the order of the scores themselves
    if scale > 0:
        return scale
    s = float(x.double().std(unbiased=False)) if x.numel() > 1 else 0.0
    return s if s > 0 else 1.0


def topk_mask(key: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest entries of a 1-D ``key``; ties go to lower indices."""
    n = key.numel()
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=key.device)
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=key.device)
    v = key.kthvalue(n - k + 1).values  # the k-th largest value
    mask = key > v
    need = k - int(mask.sum())
    if need > 0:
        ties = torch.nonzero(key == v).flatten()[:need]
        mask[ties] = True
    return mask


def _keep_best_along(key2d: torch.Tensor, m: int, dim: int) -> torch.Tensor:
    """The ``m`` best entries of every row (dim=1) or column (dim=0), ties to lower index."""
    size = key2d.shape[dim]
    if m >= size:
        return torch.ones_like(key2d, dtype=torch.bool)
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
        if not torch.isfinite(s).all():
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

    S2 = {n: flat(scores[n].detach()).float() for n in names}
    sizes = [S2[n].numel() for n in names]
    total = sum(sizes)
    forced = {n: _forced(S2[n], min_keep, col_keep) for n in names}
    lows = [int(forced[n].sum()) for n in names]
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
            m = topk_mask(torch.where(forced[n].flatten(), torch.inf, key), k)
            cal.masks[n] = m
            loc, scale = robust_stats(key, robust)
            scale = _safe_scale(scale, key)
            dropped = key[~m]
            tau = float(dropped.max()) if dropped.numel() else -math.inf
            cal.thresholds[n] = tau
            cal.alphas[n] = (tau - loc) / scale
    else:
        keys, locs, scales = [], [], []
        if mode == "global":
            pooled = torch.cat([S2[n].flatten() for n in names])
            loc, scale = robust_stats(pooled, robust)
            scale = _safe_scale(scale, pooled)
            keys = [S2[n].flatten() for n in names]
            locs, scales = [loc] * len(names), [scale] * len(names)
        else:
            for n in names:
                x = S2[n].flatten()
                loc, scale = robust_stats(x, robust)
                scale = _safe_scale(scale, x)
                keys.append((x - loc) / scale)
                locs.append(loc)
                scales.append(scale)
        pooled_key = torch.cat([torch.where(forced[n].flatten(), torch.inf, k) for n, k in zip(names, keys)])
        keep = topk_mask(pooled_key, K)
        raw = torch.cat(keys)
        dropped = raw[~keep]
        cut = float(dropped.max()) if dropped.numel() else -math.inf  # largest dropped key
        alpha = cut if mode == "layerwise" else (cut - locs[0]) / scales[0]
        cal.alpha = alpha
        for n, part, loc, scale in zip(names, keep.split(sizes), locs, scales):
            cal.masks[n] = part
            cal.thresholds[n] = loc + alpha * scale
    cal.masks = {n: cal.masks[n].reshape(scores[n].shape) for n in names}
    cal.kept = sum(int(m.sum()) for m in cal.masks.values())
    return cal


def _bisect(cal: Calibration, S2, forced, names, K, ks, robust, tol) -> None:
    """Alg. 2 as written: bracket, then bisect alpha until the bracket is narrower than ``tol``;
    masks at alpha_hi (so the achieved sparsity is at least the target)."""
    def run(group: list[str], k_target: int, pooled: bool) -> float:
        if pooled:
            x = torch.cat([S2[n].flatten() for n in group])
            loc, scale = robust_stats(x, robust)
            stats = {n: (loc, _safe_scale(scale, x)) for n in group}
        else:
            stats = {}
            for n in group:
                loc, scale = robust_stats(S2[n], robust)
                stats[n] = (loc, _safe_scale(scale, S2[n].flatten()))

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
