"""The optimized MORT internals give exactly the results of a straightforward sort-based reference."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import importlib

C = importlib.import_module("yopo.core.selection")
from yopo.core.calibration import mort, robust_stats, topk_mask, webster  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def small_cutoffs(monkeypatch):
    # exercise the bracketed selection on test-sized inputs
    monkeypatch.setattr(C, "_SELECT_MIN", 64)
    monkeypatch.setattr(C, "_SAMPLE", 32)
    monkeypatch.setattr(C, "_CHUNK", 100)


def ref_topk(key: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the first k of the order (value descending, lower index first): a stable sort."""
    order = torch.sort(key.double(), descending=True, stable=True).indices
    m = torch.zeros(key.numel(), dtype=torch.bool)
    m[order[:k]] = True
    return m


def ref_forced(S2: torch.Tensor, min_keep: int, col_keep: int) -> torch.Tensor:
    f = torch.zeros_like(S2, dtype=torch.bool)
    for i in range(S2.shape[0]):
        f[i, ref_topk(S2[i], min(min_keep, S2.shape[1]))] = True
    for j in range(S2.shape[1]):
        f[ref_topk(S2[:, j], min(col_keep, S2.shape[0])), j] = True
    return f


def ref_mort(scores, sparsity, mode, robust, min_keep, col_keep):
    names = list(scores)
    S2 = {n: scores[n].reshape(scores[n].shape[0], -1).float() for n in names}
    forced = {n: ref_forced(S2[n], min_keep, col_keep) for n in names}
    sizes = [S2[n].numel() for n in names]
    total = sum(sizes)
    F = sum(int(forced[n].sum()) for n in names)
    K = max(C.n_keep(sparsity, total), F)
    if mode == "local":
        ks = webster(K, sizes, [int(forced[n].sum()) for n in names])
        return {n: ref_topk(torch.where(forced[n].flatten(), math.inf, S2[n].flatten().double()), k).reshape(scores[n].shape)
                for n, k in zip(names, ks)}
    keys = []
    for n in names:
        x = S2[n].flatten()
        if mode == "layerwise":
            loc, scale = robust_stats(x, robust)
            scale = C.safe_scale(scale, x)
            x = (x - loc) / scale
        keys.append(torch.where(forced[n].flatten(), math.inf, x.double()))
    keep = ref_topk(torch.cat(keys), K)
    return {n: p.reshape(scores[n].shape) for n, p in zip(names, keep.split(sizes))}


def _scores(seed, ties=False):
    g = torch.Generator().manual_seed(seed)
    s = {"conv.weight": torch.rand(8, 4, 3, 3, generator=g), "fc1.weight": torch.rand(30, 20, generator=g),
         "fc2.weight": torch.rand(5, 30, generator=g)}
    if ties:
        s = {n: (v * 6).floor() for n, v in s.items()}
    return s


@pytest.mark.parametrize("mode", ["global", "layerwise", "local"])
@pytest.mark.parametrize("robust", ["mad", "std"])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("keep", [(1, 0), (0, 0), (2, 1)])
def test_mort_matches_sort_reference(mode, robust, ties, keep):
    scores = _scores(1, ties)
    if robust == "std" and mode != "layerwise":  # robust cannot act there: rejected
        with pytest.raises(ValueError, match="robust acts with allocation='layerwise' only"):
            mort(scores, 0.5, mode=mode, robust=robust)
        return
    for sp in (0.0, 0.5, 0.9, 0.97):
        cal = mort(scores, sp, mode=mode, robust=robust, min_keep=keep[0], col_keep=keep[1])
        ref = ref_mort(scores, sp, mode, robust, *keep)
        for n in scores:
            assert torch.equal(cal.masks[n], ref[n]), (mode, robust, ties, keep, sp, n)
        assert cal.kept == sum(int(m.sum()) for m in ref.values())


def test_alpha_is_largest_dropped_key():
    scores = _scores(2)
    cal = mort(scores, 0.8, mode="global", min_keep=0)
    pooled = torch.cat([s.flatten() for s in scores.values()])
    keep = torch.cat([m.flatten() for m in cal.masks.values()])
    loc, scale = robust_stats(pooled, "mad")
    assert cal.alpha == pytest.approx((float(pooled[~keep].max()) - loc) / scale, rel=0, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=400), st.data())
def test_select_is_kthvalue(vals, data):
    x = torch.tensor(vals, dtype=torch.float32)
    k = data.draw(st.integers(1, x.numel()))
    assert float(C.kth_smallest(x, k)) == float(x.kthvalue(k).values)
    k2 = min(k + 1, x.numel())
    a, b = C.select_kth(x, [k, k2], transform=lambda t: t.double().sub_(0.3).abs_())
    y = x.double().sub(0.3).abs()
    assert float(a) == float(y.kthvalue(k).values) and float(b) == float(y.kthvalue(k2).values)


def test_select_adversarial_order_falls_back():
    # sorted input with a huge block of equal values around the quantile
    x = torch.cat([torch.zeros(500), torch.arange(1000.0), torch.full((500,), 7.0)]).sort().values.flip(0)
    for k in (1, 10, 700, 1500, 2000):
        assert float(C.kth_smallest(x, k)) == float(x.kthvalue(k).values)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1, width=32), min_size=1, max_size=300), st.data())
def test_topk_and_median(vals, data):
    x = torch.tensor(vals, dtype=torch.float32)
    k = data.draw(st.integers(0, x.numel()))
    assert torch.equal(topk_mask(x, k), ref_topk(x, k))
    med, mad = robust_stats(x, "mad")
    srt = x.double().sort().values
    n = x.numel()
    ref_med = float(srt[(n - 1) // 2]) if n % 2 else 0.5 * (float(srt[n // 2 - 1]) + float(srt[n // 2]))
    assert med == ref_med
    d = (x.double() - ref_med).abs().sort().values
    assert mad == (float(d[(n - 1) // 2]) if n % 2 else 0.5 * (float(d[n // 2 - 1]) + float(d[n // 2])))


def test_nan_and_inf_still_rejected():
    for bad in (math.nan, math.inf, -math.inf):
        s = {"a.weight": torch.tensor([[1.0, bad], [0.5, 0.2]])}
        with pytest.raises(ValueError, match="NaN or Inf"):
            mort(s, 0.5)
