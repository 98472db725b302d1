"""Ranking: which weights inside a layer survive, given how many the layer keeps (see allocation).

Each ranking is a fixed total order of a layer's entries; a layer that keeps k entries keeps the
first k, so masks nest across budgets. Forced survivors (``min_keep`` per row, ``col_keep`` per
column) come first in every ranking.

* ``score``: by score, descending; ties to the lower flat index (the paper's ranking).
* ``rows``: row-balanced. Every output row (neuron / filter) gets an equal share of the layer's
  budget, and inside a row the entries go by score. The order is (depth of the entry in its row's
  score order, score descending, row index): all rows get their best entry before any row gets its
  second, and so on. Why: a score whose scale differs between rows starves whole rows under
  ``score`` ranking. YOPO's residual is such a score: a rank-r NMF fits some rows of |W| almost
  exactly (their residuals are tiny) and leaves the residual in the others, so a 10-class
  classifier kept weights in only 5 of its 10 rows at 95% with SynFlow's layer budgets, and those
  classes could never be predicted. Inside one row the residual is comparable (one template).
"""
from __future__ import annotations

import torch

from .selection import count_true, topk_mask

RANKINGS = ("score", "rows")


def select(key2d: torch.Tensor, k: int, ranking: str, forced: torch.Tensor | None = None) -> torch.Tensor:
    """Mask (o, d) bool of the first ``k`` entries of the layer's order. ``key2d`` (o, d) is the
    layer's score (higher = better); ``forced`` (o, d) bool entries come first (k must be at least
    their count)."""
    if ranking == "score":
        key = key2d.flatten()
        if forced is not None:
            key = key.masked_fill(forced.flatten(), torch.inf)
        return topk_mask(key, k).reshape(key2d.shape)
    if ranking == "rows":
        return _rows(key2d, k, forced)
    raise ValueError(f"ranking={ranking!r} is not allowed; choose one of {list(RANKINGS)}")


def _rows(key2d: torch.Tensor, k: int, forced: torch.Tensor | None) -> torch.Tensor:
    o, d = key2d.shape
    n = o * d
    if k >= n:
        return torch.ones(o, d, dtype=torch.bool, device=key2d.device)
    out = torch.zeros(o, d, dtype=torch.bool, device=key2d.device)
    if k <= 0:
        return out
    key = key2d if forced is None else key2d.masked_fill(forced, torch.inf)
    # each row's entries by score descending, ties to the lower column (stable sort of -key)
    order = torch.sort(-key, dim=1, stable=True).indices  # (o, d): column of depth t in row i
    nf = torch.ones_like(out) if forced is None else ~forced.gather(1, order)  # (o, d) by depth
    n_forced = n - count_true(nf)
    if k < n_forced:
        raise ValueError(f"k={k} is below the {n_forced} forced entries of the layer")
    if forced is not None:
        out |= forced
    need = k - n_forced
    if need == 0:
        return out
    per_depth = nf.sum(0)  # non-forced entries at each depth
    cum = per_depth.cumsum(0)
    # t*: the deepest depth taken whole; entries at depth t* are split by score
    t = int(torch.searchsorted(cum, torch.tensor(need, device=cum.device), right=True))
    taken_whole = int(cum[t - 1]) if t > 0 else 0
    if t > 0:
        whole = nf[:, :t]  # non-forced entries above depth t
        cols = order[:, :t]
        out.scatter_(1, cols, whole | out.gather(1, cols))
    rest = need - taken_whole
    if rest > 0:
        cand = nf[:, t]  # rows whose depth-t entry is non-forced
        vals = key.gather(1, order[:, t : t + 1]).squeeze(1).masked_fill(~cand, -torch.inf)
        rows = torch.nonzero(topk_mask(vals, rest)).flatten()  # best scores first, ties lower row
        out[rows, order[rows, t]] = True
    return out
