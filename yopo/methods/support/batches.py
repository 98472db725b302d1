"""One batch (or a few) from the caller's data, for the data-dependent methods."""
from __future__ import annotations

from collections.abc import Iterable

import torch

from ...core.validate import check_int


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
