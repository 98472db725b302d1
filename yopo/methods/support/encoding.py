"""The encoding of iterative / mask-producing methods as scores (shared by SynFlow, iterative
SNIP, X-Net, RReg, PHEW and NPB), and how to read their native mask back.

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

from __future__ import annotations

import math

import torch

from ...core.selection import n_keep, topk_mask
from ...core.layers import PrunableLayer

MAX_ROUNDS = 120


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
