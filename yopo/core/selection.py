"""Exact selection primitives shared by calibration and the methods: how many entries a sparsity
keeps (``n_keep``), robust location/scale, and O(n) k-th value / top-k selection with ties broken by
position (lower index first), so every selection is total and deterministic."""
from __future__ import annotations

import math
from fractions import Fraction

import torch


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
    med = median(x)
    # (t.double() is t itself for float64 input: subtract out of place, then abs in place)
    return med, median(x, transform=lambda t: (t.double() - med).abs_())


_SELECT_MIN = 1 << 18  # below this many entries, plain kthvalue is as fast as the bracket
_SAMPLE = 1 << 16
_CHUNK = 1 << 20


def count_true(mask: torch.Tensor) -> int:
    return int(torch.count_nonzero(mask))  # much faster than bool.sum() on CPU


def select_kth(x: torch.Tensor, ks: list[int], transform=None) -> list[torch.Tensor]:
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
            below += count_true(y < lo)
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


def kth_smallest(x: torch.Tensor, k: int) -> torch.Tensor:
    """Exactly ``x.kthvalue(k).values`` for a 1-D x, by bracketed selection (see :func:`select_kth`)."""
    return select_kth(x, [k])[0]


def median(x: torch.Tensor, transform=None) -> float:
    """The usual median (mean of the two middle values for even n) of ``transform(x)``, by exact
    selection: O(n)."""
    n = x.numel()
    if n % 2:
        return float(select_kth(x, [(n + 1) // 2], transform)[0])
    lo, hi = select_kth(x, [n // 2, n // 2 + 1], transform)
    return 0.5 * (float(lo) + float(hi))


def safe_scale(scale: float, x: torch.Tensor) -> float:
    # a zero MAD (more than half the entries equal) would make every critical alpha infinite;
    # fall back to the std, then to 1, which keeps the order of the scores themselves
    if scale > 0:
        return scale
    s = float(x.double().std(unbiased=False)) if x.numel() > 1 else 0.0
    return s if s > 0 else 1.0


def threshold_stats(x: torch.Tensor, robust: str) -> tuple[float, float]:
    """(loc, scale) of the threshold tau = loc + alpha * scale, the scale kept positive."""
    loc, scale = robust_stats(x, robust)
    return loc, safe_scale(scale, x.flatten())


def topk_mask(key: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest entries of a 1-D ``key``; ties go to lower indices."""
    return topk_mask_cut(key, k)[0]


def topk_mask_cut(key: torch.Tensor, k: int) -> tuple[torch.Tensor, float]:
    """:func:`topk_mask` and the largest value left out (-inf when nothing is left out)."""
    n = key.numel()
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=key.device), -math.inf
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=key.device), float(key.max())
    # the k-th largest value v, and the (k+1)-th largest: the largest one dropped
    cut, v = select_kth(key, [n - k, n - k + 1])
    mask = key > v
    need = k - count_true(mask)
    if need > 0:
        eq = key == v
        if count_true(eq) == need:  # the usual case: every tie fits
            mask |= eq
        else:
            ties = torch.nonzero(eq).flatten()[:need]
            mask[ties] = True
    return mask, float(cut)


def keep_best_along(key2d: torch.Tensor, m: int, dim: int) -> torch.Tensor:
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
