"""Helpers shared by the baseline methods: one batch from the caller's data, the encoding of
iterative / mask-producing methods as scores, layer-budget apportionment and the layer chain.

Score encodings
---------------
``calibrate`` orders entries by score (global mode) and keeps a prefix of that order, so a method
that natively produces a *mask* rather than continuous scores is represented by scores whose
order puts its selected entries first:

* **Mask methods** (X-Net, RReg, PHEW, NPB): selected entries score ``1 + r``, the rest ``r``, with
  ``r`` in [0, 1) a deterministic tiebreak (seeded, or the method's own preference). Selected
  entries are exactly those with score >= 1 (:func:`native_mask`).
* **Iterative methods** (SynFlow, iterative SNIP): the K-round schedule removes entries in rounds.
  An entry last dropped in round k (1..K) scores ``2**(k - K - 1) * (1 + r)``; a survivor of all K
  rounds scores ``1 + r``, with ``r`` in [0, 1) its rank (normalized) by that round's score among
  the entries dropped in that round (for survivors: among the survivors, by the final round's
  score). The order is (round, within-round score), so survivors score >= 1 (:func:`native_mask`)
  and entries dropped later rank above entries dropped earlier. K <= 120 keeps every value a
  normal float32.

With ``mode="global"`` and ``min_keep=0``, ``calibrate(scores, native_sparsity(scores))``
reproduces the method's own mask exactly; at the default ``min_keep=1`` it differs only where the
method left an output row empty. At other sparsities / modes the scores still give an exact
budget (ties are broken by position inside ``calibrate``).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from ..calibrate import n_keep, topk_mask
from ..layers import PrunableLayer
from ..validate import check_float, check_int, check_sparsity

MAX_ROUNDS = 120


# ----------------------------------------------------------------------------------------- data

def _is_pair(data) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)


def get_batch(data, batch_size: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``(x, y)`` batch of ``batch_size`` examples (fewer if the data has fewer).

    ``data`` is a single ``(x, y)`` pair (its first ``batch_size`` rows are used) or an iterable
    of ``(x, y)`` batches (a DataLoader): batches are taken in the order the iterable yields them
    and concatenated until ``batch_size`` examples are collected. Nothing is shuffled here, so the
    batch is as deterministic as the caller's data.
    """
    check_int("batch_size", batch_size, 1)
    if _is_pair(data):
        x, y = data
    else:
        if not isinstance(data, Iterable):
            raise TypeError(f"data must be an (x, y) pair of tensors or an iterable of (x, y) batches; "
                            f"got {type(data).__name__}")
        xs, ys, n = [], [], 0
        for item in data:
            if not _is_pair(item):
                raise TypeError(f"every data batch must be an (x, y) pair of tensors; got {type(item).__name__}")
            xs.append(item[0])
            ys.append(item[1])
            n += item[0].shape[0]
            if n >= batch_size:
                break
        if not xs:
            raise ValueError("data is empty: the iterable yielded no (x, y) batches")
        x, y = torch.cat(xs), torch.cat(ys)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"data x has {x.shape[0]} rows but y has {y.shape[0]}")
    x, y = x[:batch_size], y[:batch_size]
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y


def get_batches(data, count: int, batch_size: int, device=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` consecutive batches of ``batch_size`` (an (x, y) pair is cut into consecutive
    slices, an iterable is read in order; both wrap around when exhausted)."""
    check_int("count", count, 1)
    x, y = get_batch(data, count * batch_size, device)
    n = x.shape[0]
    out = []
    for c in range(count):
        idx = torch.arange(c * batch_size, (c + 1) * batch_size) % n
        out.append((x[idx[: min(batch_size, n)]], y[idx[: min(batch_size, n)]]))
    return out


# ------------------------------------------------------------------------------------ schedules

def exponential_schedule(sparsity: float, rounds: int) -> list[float]:
    """Sparsity after round k = 1..K: ``1 - (1 - s)**(k/K)`` (density decays geometrically; the
    last round hits ``s`` exactly)."""
    return [1.0 - (1.0 - sparsity) ** (k / rounds) for k in range(1, rounds) ] + [sparsity]


def linear_schedule(sparsity: float, rounds: int) -> list[float]:
    return [sparsity * k / rounds for k in range(1, rounds + 1)]


SCHEDULES = {"exponential": exponential_schedule, "linear": linear_schedule}


def check_common(target_sparsity: float, rounds: int | None = None) -> None:
    check_sparsity(target_sparsity, "target_sparsity")
    if rounds is not None:
        check_int("iters", rounds, 1, MAX_ROUNDS)


def _rank01(key: torch.Tensor) -> torch.Tensor:
    """Normalized ascending rank in [0, 1) (stable: equal keys rank by position, lower index
    higher, matching calibrate's tie rule)."""
    n = key.numel()
    if n == 0:
        return key.new_zeros(0, dtype=torch.float64)
    # sort descending by key, then ascending index; rank 0 = best -> r close to 1
    order = torch.sort(key.double(), descending=True, stable=True).indices
    r = torch.empty(n, dtype=torch.float64, device=key.device)
    r[order] = torch.arange(n - 1, -1, -1, dtype=torch.float64, device=key.device)
    return r / n


_BELOW_TWO = 2.0 - 2.0 ** -23  # largest float32 below 2


def _mantissa(key: torch.Tensor) -> torch.Tensor:
    """1 + normalized rank, as float32 in [1, 2) (scaling it by a power of two stays exact)."""
    return (1.0 + _rank01(key)).float().clamp(max=_BELOW_TWO)


class IterativeEncoder:
    """Runs the bookkeeping of a K-round global pruning schedule over pooled entries and encodes
    the outcome as scores (see the module docstring)."""

    def __init__(self, layers: tuple[PrunableLayer, ...], rounds: int, device):
        self.layers = layers
        self.sizes = [l.numel for l in layers]
        self.total = sum(self.sizes)
        self.rounds = rounds
        self.alive = torch.ones(self.total, dtype=torch.bool, device=device)
        self.score = torch.zeros(self.total, dtype=torch.float32, device=device)
        self.k = 0

    def step(self, key: torch.Tensor, sparsity: float, revive: bool = False) -> torch.Tensor:
        """Keep the ``n_keep(sparsity)`` best entries by ``key`` (pooled, float64). Without
        ``revive``, dropped entries stay dropped. Returns the new alive mask (pooled)."""
        self.k += 1
        key = key.double()
        if revive:
            cand = key
        else:  # excluded entries are never read below (dropped/kept sets are subsets of alive)
            cand = key.masked_fill_(~self.alive, -torch.inf)
        keep = topk_mask(cand, n_keep(sparsity, self.total))
        dropped = self.alive & ~keep
        if dropped.any():
            self.score[dropped] = _mantissa(key[dropped]) * math.ldexp(1.0, self.k - self.rounds - 1)
        self.alive = keep
        if self.k == self.rounds:
            self.score[keep] = _mantissa(key[keep])
        return keep

    def split(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        return {l.name: part.reshape(l.shape) for l, part in zip(self.layers, pooled.split(self.sizes))}

    def scores(self) -> dict[str, torch.Tensor]:
        if self.k != self.rounds:
            raise RuntimeError(f"schedule ran {self.k} of {self.rounds} rounds")
        return self.split(self.score)


def encode_mask(masks: dict[str, torch.Tensor], tiebreak: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scores of a mask method: ``mask + r`` with ``r`` in [0, 1) (clamped below 1 in float32)."""
    below_one = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)).item()
    return {n: m.float() + tiebreak[n].float().clamp(0.0, below_one) for n, m in masks.items()}


def native_mask(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The mask a mask-producing or iterative method selected natively: entries scoring >= 1."""
    return {n: s >= 1.0 for n, s in scores.items()}


def native_sparsity(scores: dict[str, torch.Tensor]) -> float:
    """The sparsity of :func:`native_mask` (what X-Net/RReg/PHEW/NPB achieved for their target)."""
    total = sum(s.numel() for s in scores.values())
    return 1.0 - sum(int((s >= 1.0).sum()) for s in scores.values()) / total


def seeded_uniform(seed: int, shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g)


# ------------------------------------------------------------------------- budgets and structure

def kernel_view(layer: PrunableLayer) -> tuple[int, int, int]:
    """(out, in, kernel size) of a prunable layer; a Linear layer has kernel size 1. Expander and
    graph methods treat channels as nodes and whole kernels as edges (kernel granularity)."""
    o, i = layer.shape[0], layer.shape[1]
    return o, i, layer.numel // (o * i)


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


def node_map(n_from: int, n_to: int) -> torch.Tensor:
    """Index map from the output nodes of one layer to the input nodes of the next in the layer
    chain: the identity when the sizes agree, else proportional (``j * n_to // n_from``)."""
    return torch.arange(n_from) * n_to // n_from


def check_bool(name: str, value) -> bool:
    """Booleans must be real bools: a string such as "False" is truthy and must not slip through."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be a bool (True/False; on the CLI --{name.replace('_', '-')} / "
                        f"--no-{name.replace('_', '-')})")
    return value


def check_prob(name: str, value) -> float:
    return check_float(name, value, 0.0, 1.0)


def first_prunable_module(model: nn.Module) -> nn.Module:
    from ..layers import PRUNABLE_TYPES

    for m in model.modules():
        if isinstance(m, PRUNABLE_TYPES):
            return m
    raise ValueError(f"model {type(model).__name__} has no prunable layers")
