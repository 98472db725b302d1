"""Layer-budget helpers: how a global budget of kept weights is split over layers (ERK layer
densities; integer per-layer counts apportioned to an exact total)."""
from __future__ import annotations

import math

from .layers import PrunableLayer
from .validate import check_sparsity


def apportion(ideal: list[float], unit: list[int], lows: list[int], highs: list[int], target: int) -> list[int]:
    """Integer counts c_l in [lows, highs] near ``ideal`` such that sum(c_l * unit_l) is close to
    ``target``: start from the rounded ideal, then repeatedly apply the single +-1 change that
    reduces |total - target| most (ties: the earlier layer, +1 before -1) until none does."""
    counts = [min(h, max(lo, math.floor(x + 0.5))) for x, lo, h in zip(ideal, lows, highs)]
    total = sum(c * u for c, u in zip(counts, unit))
    while True:
        best, best_err = None, abs(total - target)
        for l in range(len(counts)):
            for d in (1, -1):
                if lows[l] <= counts[l] + d <= highs[l]:
                    err = abs(total + d * unit[l] - target)
                    if err < best_err:
                        best, best_err = (l, d), err
        if best is None:
            return counts
        counts[best[0]] += best[1]
        total += best[1] * unit[best[0]]


def erk_densities(layers: tuple[PrunableLayer, ...], sparsity: float) -> list[float]:
    """Erdos-Renyi-Kernel layer densities (Evci et al. 2020): density_l proportional to
    sum(shape)/prod(shape), scaled to the global budget, layers that would exceed 1 kept dense."""
    check_sparsity(sparsity)
    n = [l.numel for l in layers]
    raw = [sum(l.shape) / l.numel for l in layers]
    dense: set[int] = set()
    budget = (1.0 - sparsity) * sum(n)
    while True:
        rest = budget - sum(n[l] for l in dense)
        denom = sum(raw[l] * n[l] for l in range(len(layers)) if l not in dense)
        eps = rest / denom if denom > 0 else 0.0
        over = [l for l in range(len(layers)) if l not in dense and eps * raw[l] > 1.0]
        if not over:
            return [1.0 if l in dense else eps * raw[l] for l in range(len(layers))]
        dense.update(over)
