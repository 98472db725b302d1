"""Allocation: how many weights each layer keeps, separately from *which* ones (see ranking).

Every allocation is a fixed total order of "seats" (one seat = one kept weight of one layer); the
per-layer counts for a budget of K kept weights are the first K seats. A fixed order makes budgets
exact and *house-monotone*: when K grows no layer loses a seat, so masks nest across sparsities.

Seats come in tiers, earlier tiers first:

1. forced survivors (``min_keep`` per row, ``col_keep`` per column): a hard constraint;
2. the ``min_layer_density`` floor: a hard constraint inside the budget;
3. the allocation's own priority seats (``uniform_plus``: first layer dense, then the classifier
   up to 20% density);
4. the allocation's order:

   * pooled by score (``global``: MORT with one threshold over all layers = YOPO-G; ``layerwise``:
     one alpha over per-layer z-scores; ``from:<method>``: the pooled order of another method's
     scores, e.g. SynFlow's layer budgets);
   * a divisor method (Webster / Sainte-Lague): seat k of layer l has key (2k+1) / (2 w_l), ties
     to the earlier layer, with the weight w_l of the allocation:

     =============  =======================  =================================================
     allocation     w_l                      kept weights per layer
     =============  =======================  =================================================
     uniform        n_l (size)               equal ratio (YOPO-L, the paper's local mode)
     erk            sum of the shape's dims  Erdos-Renyi-Kernel (Evci et al. 2020, RigL)
     er             out + in                 Erdos-Renyi (Mocanu et al. 2018)
     balanced       1                        the same count in every layer (capped at dense)
     uniform_plus   n_l                      uniform after its priority seats (Gale et al. 2019)
     =============  =======================  =================================================

Why ``balanced``: for masks drawn independently per layer, the expected number of input-output
paths is prod_l k_l / prod_l n_(l) (k_l kept weights, n_(l) the hidden widths), which under a
fixed total sum_l k_l is largest when every layer keeps the same number of weights. It is the
data-free closed form of what iterative flow conservation (SynFlow) converges to: on the small nets
of the benchmark SynFlow's per-layer counts lie within ~20% of equal counts.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from .layers import PrunableLayer
from .selection import count_true, n_keep, topk_mask
from .validate import check_sparsity

#: named allocations; ``from:<method>`` and a dict of per-layer sparsities are accepted too
ALLOCATIONS = ("global", "layerwise", "uniform", "balanced", "erk", "er", "uniform_plus")
#: old mode names that keep working
ALIASES = {"local": "uniform"}
POOLED = ("global", "layerwise")
DIVISOR = ("uniform", "balanced", "erk", "er", "uniform_plus")
FROM_PREFIX = "from:"
UNIFORM_PLUS_CLASSIFIER_DENSITY = 0.2  # "classifier at most 80% sparse" (Gale et al. 2019)


def canonical(allocation: str) -> str:
    """The allocation's canonical name (``local`` -> ``uniform``)."""
    return ALIASES.get(allocation, allocation)


def check_allocation(name: str, value) -> None:
    """Validator of the ``allocation`` setting: a named allocation, an alias, or ``from:<method>``."""
    if isinstance(value, Mapping):
        return
    if not isinstance(value, str):
        raise TypeError(f"{name}={value!r} must be a string or a dict of per-layer sparsities")
    if value.startswith(FROM_PREFIX):
        if not value[len(FROM_PREFIX):]:
            raise ValueError(f"{name}={value!r} names no method; use from:<method>, e.g. from:synflow")
        return
    if canonical(value) not in ALLOCATIONS:
        from .validate import check_choice
        check_choice(name, value, list(ALLOCATIONS) + list(ALIASES) + ["from:<method>"])


def divisor_weights(allocation: str, shapes: Sequence[tuple[int, ...]]) -> list[int]:
    """The weight w_l of each layer in a divisor allocation (integers, so seat keys compare exactly)."""
    allocation = canonical(allocation)
    if allocation in ("uniform", "uniform_plus"):
        return [math.prod(s) for s in shapes]
    if allocation == "balanced":
        return [1 for _ in shapes]
    if allocation == "erk":
        return [sum(s) for s in shapes]
    if allocation == "er":
        return [s[0] + (s[1] if len(s) > 1 else 1) for s in shapes]
    raise ValueError(f"allocation={allocation!r} is not a divisor allocation; those are {list(DIVISOR)}")


def divisor_counts(total: int, weights: Sequence[int], caps: Sequence[int], lows: Sequence[int]) -> list[int]:
    """The first ``total`` seats of Webster's order with weights ``weights``: seats k < lows[l] first,
    then seat k of layer l keyed (2k+1)/(2 w_l) ascending, ties to the earlier layer; layer l has
    ``caps[l]`` seats (a layer of weight 0 gets only its low seats). ``sum(lows) <= total <=
    sum(caps)`` is required. House-monotone in ``total``."""
    n = len(weights)
    lo_total, cap_total = sum(lows), sum(caps)
    if not lo_total <= total <= cap_total:
        raise ValueError(f"total={total} must lie in [{lo_total}, {cap_total}]")
    alloc = _divisor_guess(total, weights, caps, lows)
    cur = sum(alloc)
    while cur < total:  # add the seat with the smallest key; ties to the lowest layer index
        best = _first_free(alloc, weights, caps, lows)
        if best is None:  # only zero-weight layers have room: give seats in layer order
            best = next(i for i in range(n) if alloc[i] < caps[i])
        alloc[best] += 1
        cur += 1
    while cur > total:  # drop the non-low seat with the largest key; ties to the highest index
        worst = _last_kept(alloc, weights, lows)
        alloc[worst] -= 1
        cur -= 1
    # the float guess can land on the right count with a tied seat on the wrong side (keys 3/14 and
    # 15/70 are equal; the tie belongs to the earlier layer): swap until the kept seats are exactly
    # the first ``total`` of the order (key, layer index)
    while True:
        worst, best = _last_kept(alloc, weights, lows), _first_free(alloc, weights, caps, lows)
        if worst is None or best is None or best == worst:
            return alloc
        kb, kw = alloc[best], alloc[worst] - 1
        first = _key_less(kb, weights[best], kw, weights[worst]) or (
            not _key_less(kw, weights[worst], kb, weights[best]) and best < worst)
        if not first:
            return alloc
        alloc[best] += 1
        alloc[worst] -= 1


def _first_free(alloc, weights, caps, lows) -> int | None:
    """The layer whose next free seat comes first in the order (ties to the lowest index), or None
    when no layer has room (a layer of weight 0 has room only below its low seats)."""
    best = None
    for i, k in enumerate(alloc):
        if k >= caps[i] or (weights[i] == 0 and k >= lows[i]):
            continue
        if best is None or _key_less(k, weights[i], alloc[best], weights[best]):
            best = i
    return best


def _last_kept(alloc, weights, lows) -> int | None:
    """The layer whose last kept non-low seat comes last in the order (ties to the highest index),
    or None when every layer holds only its low seats."""
    worst = None
    for i, k in enumerate(alloc):
        if k > lows[i] and (worst is None or not _key_less(k - 1, weights[i], alloc[worst] - 1, weights[worst])):
            worst = i
    return worst


def _divisor_guess(total: int, weights, caps, lows) -> list[int]:
    """Counts of the seats with key below a level lam, the largest lam whose count is <= total
    (bisection in floats; the exact loop in :func:`divisor_counts` fixes the few seats that
    rounding or ties leave over). Layer l has clamp(ceil(lam w_l - 1/2), low_l, cap_l) seats."""
    def counts(lam: float) -> list[int]:
        return [max(lo, min(cap, math.ceil(lam * w - 0.5))) if w > 0 else lo
                for w, cap, lo in zip(weights, caps, lows)]

    W = sum(weights)
    if W == 0:
        return list(lows)
    lo_lam, hi_lam = 0.0, (total + 1.0) / min(w for w in weights if w > 0) + 1.0
    for _ in range(200):
        mid = 0.5 * (lo_lam + hi_lam)
        if mid in (lo_lam, hi_lam):
            break
        if sum(counts(mid)) <= total:
            lo_lam = mid
        else:
            hi_lam = mid
    return counts(lo_lam)


def _key_less(k1: int, w1: int, k2: int, w2: int) -> bool:
    """(2 k1 + 1) / w1 < (2 k2 + 1) / w2 in exact arithmetic (weight 0 = infinite key)."""
    if w1 == 0:
        return False
    if w2 == 0:
        return True
    return (2 * k1 + 1) * w2 < (2 * k2 + 1) * w1


def tiered_counts(total: int, weights: Sequence[int], caps: Sequence[int], tiers: Sequence[Sequence[int]]) -> list[int]:
    """Divisor counts where each layer's seats below ``tiers[t][l]`` come before every later tier
    (tiers are non-decreasing per layer and <= caps). The first tier is taken whole."""
    lows = list(tiers[0]) if tiers else [0] * len(weights)
    for tier in list(tiers[1:]) + [caps]:
        highs = [max(lo, min(h, c)) for lo, h, c in zip(lows, tier, caps)]
        if total <= sum(highs):
            return divisor_counts(total, weights, highs, lows)
        lows = highs
    return lows


def pooled_counts(keys: Sequence[torch.Tensor], total: int, lows: Sequence[int]) -> list[int]:
    """Counts per layer of the first ``total`` seats when every layer first takes its ``lows[l]``
    best entries (by its own key), then the rest follow the pooled order of all keys (descending,
    ties to the earlier layer and lower index). ``keys[l]`` is 1-D; forced entries carry +inf."""
    sizes = [k.numel() for k in keys]
    rest = total - sum(lows)
    if rest < 0:
        raise ValueError(f"total={total} is below the {sum(lows)} seats every layer must take first")
    if not any(lows):
        keep = topk_mask(torch.cat([k.flatten() for k in keys]), total)
        return [count_true(p) for p in keep.split(sizes)]
    parts = []
    for k, low in zip(keys, lows):
        k = k.flatten()
        if low > 0:  # a layer's first `low` seats are its own best entries: out of the pool
            k = k.masked_fill(topk_mask(k, low), -math.inf)
        parts.append(k)
    pool = torch.cat(parts)
    keep = topk_mask(pool, rest)
    # entries of value -inf can only be picked once every finite entry is; never in a real budget
    return [low + count_true(p) for p, low in zip(keep.split(sizes), lows)]


def erk_densities(layers: tuple[PrunableLayer, ...], sparsity: float) -> list[float]:
    """Erdos-Renyi-Kernel layer densities (Evci et al. 2020): density_l proportional to
    sum(shape)/prod(shape), scaled to the global budget, layers that would exceed 1 kept dense.
    (The ``erk`` allocation realises the same densities as exact integer counts.)"""
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


def apportion(ideal: list[float], unit: list[int], lows: list[int], highs: list[int], target: int) -> list[int]:
    """Integer counts c_l in [lows, highs] near ``ideal`` such that sum(c_l * unit_l) is close to
    ``target``: start from the rounded ideal, then repeatedly apply the single +-1 change that
    reduces |total - target| most (ties: the earlier layer, +1 before -1) until none does.
    (Used by methods whose units are whole kernels, e.g. the expander masks.)"""
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


def dict_counts(per_layer: Mapping[str, float], names: Sequence[str], sizes: Sequence[int]) -> list[int]:
    """Counts of a dict of per-layer sparsities: ``n_keep(s_l, n_l)`` each."""
    return [n_keep(per_layer[n], size) for n, size in zip(names, sizes)]
