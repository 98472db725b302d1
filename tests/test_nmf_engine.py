"""The batched NMF engine against the plain reference loop; fast solvers; reduced-precision storage."""
from __future__ import annotations

import pytest
import torch

from yopo.methods.yopo.nmf import (SOLVERS, amu_frobenius, get_update, hals_frobenius, init_factors, mu_frobenius,
                                   mu_is, mu_kl, nmf, nmf_reference, objective)
from yopo.methods.yopo.saliency import YopoConfig, layer_seed, residual, yopo_saliency


pytestmark = pytest.mark.usefixtures("one_thread")


def _absw(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * 0.05).abs()


def _top(x: torch.Tensor, frac: float = 0.1) -> torch.Tensor:
    k = int(frac * x.numel())
    m = torch.zeros(x.numel(), dtype=torch.bool)
    m[x.flatten().topk(k).indices] = True
    return m


def agreement(a: torch.Tensor, b: torch.Tensor, frac: float = 0.1) -> float:
    """Fraction of entries on which the keep-top-``frac`` masks of two score tensors agree."""
    return float((_top(a, frac) == _top(b, frac)).float().mean())


@pytest.mark.parametrize("shape", [(32, 288), (96, 40), (7, 500)])
def test_engine_matches_reference(shape):
    W = _absw(*shape)
    V, H = nmf_reference(W, 7, 200, seed=3)
    Vb, Hb = nmf(W.unsqueeze(0), 7, 200, seeds=[3])
    S_ref, S = residual(W, V, H), residual(W, Vb[0], Hb[0])
    assert torch.allclose(S, S_ref, rtol=1e-3, atol=1e-5)
    assert agreement(S, S_ref) >= 0.999


def test_saliency_matches_reference_per_layer():
    ws = {"a.weight": torch.randn(16, 8, 3, 3), "b.weight": torch.randn(16, 8, 3, 3), "c.weight": torch.randn(10, 64)}
    cfg = YopoConfig()
    S = yopo_saliency(ws, cfg, seed=5)
    for n, w in ws.items():
        a = w.reshape(w.shape[0], -1).abs()
        V, H = nmf_reference(a, min(7, *a.shape), 200, seed=layer_seed(5, n))
        ref = residual(a, V, H).reshape(w.shape)
        assert agreement(S[n], ref) >= 0.999
        assert torch.allclose(S[n], ref, rtol=1e-3, atol=1e-5)


def test_batching_does_not_change_scores():
    ws = {f"l{i}.weight": torch.randn(24, 50) for i in range(5)}
    a = yopo_saliency(ws, YopoConfig(iters=50, max_batch_elems=1))
    b = yopo_saliency(ws, YopoConfig(iters=50, max_batch_elems=1 << 26))
    for n in ws:
        assert torch.allclose(a[n], b[n], rtol=1e-3, atol=1e-5)
        assert agreement(a[n], b[n]) >= 0.999


def _mu_naive(W, V, H, iters, eps):
    for _ in range(iters):
        V = V * (W @ H.transpose(1, 2)) / (V @ H @ H.transpose(1, 2) + eps)
        H = H * (V.transpose(1, 2) @ W) / (V.transpose(1, 2) @ V @ H + eps)
    return V, H


def test_mu_frobenius_is_eq8():
    W = _absw(2, 20, 30)
    V0, H0 = init_factors(W, 4, "uniform", [1, 2])
    V, H = V0.clone(), H0.clone()
    mu_frobenius(W, V, H, 30, 1e-8)
    Vn, Hn = _mu_naive(W, V0, H0, 30, 1e-8)
    assert torch.allclose(V, Vn, rtol=1e-4) and torch.allclose(H, Hn, rtol=1e-4)


def test_kl_is_buffered_match_naive():
    W = _absw(2, 12, 18) + 1e-3
    V0, H0 = init_factors(W, 3, "uniform", [1, 2])
    V, H = V0.clone(), H0.clone()
    mu_kl(W, V, H, 20, 1e-8)
    Vn, Hn = V0.clone(), H0.clone()
    for _ in range(20):
        R = W / (Vn @ Hn + 1e-8)
        Vn = Vn * (R @ Hn.transpose(1, 2)) / (Hn.sum(2).unsqueeze(1) + 1e-8)
        R = W / (Vn @ Hn + 1e-8)
        Hn = Hn * (Vn.transpose(1, 2) @ R) / (Vn.sum(1).unsqueeze(2) + 1e-8)
    assert torch.allclose(V, Vn, rtol=1e-4) and torch.allclose(H, Hn, rtol=1e-4)
    V, H = V0.clone(), H0.clone()
    mu_is(W, V, H, 20, 1e-8)
    Vn, Hn = V0.clone(), H0.clone()
    for _ in range(20):
        P = Vn @ Hn + 1e-8
        Vn = Vn * ((W / P**2) @ Hn.transpose(1, 2)) / ((1 / P) @ Hn.transpose(1, 2) + 1e-8)
        P = Vn @ Hn + 1e-8
        Hn = Hn * (Vn.transpose(1, 2) @ (W / P**2)) / (Vn.transpose(1, 2) @ (1 / P) + 1e-8)
    assert torch.allclose(V, Vn, rtol=1e-4) and torch.allclose(H, Hn, rtol=1e-4)


@pytest.mark.parametrize("solver", SOLVERS)
def test_solvers_decrease_objective(solver):
    W = _absw(1, 40, 120)
    V, H = init_factors(W, 5, "uniform", [0])
    fn = get_update("frobenius", solver)
    prev = float(objective(W, V, H))
    for _ in range(8):
        fn(W, V, H, 2, 1e-8)
        cur = float(objective(W, V, H))
        assert cur <= prev * (1 + 1e-6)
        prev = cur
    assert (V >= 0).all() and (H >= 0).all()


@pytest.mark.parametrize("fn", [amu_frobenius, hals_frobenius])
def test_fast_solvers_reach_mu200(fn):
    W = _absw(2, 64, 300, seed=1)
    V0, H0 = init_factors(W, 7, "uniform", [4, 5])
    V, H = V0.clone(), H0.clone()
    mu_frobenius(W, V, H, 200, 1e-8)
    target = objective(W, V, H)
    V, H = V0.clone(), H0.clone()
    fn(W, V, H, 30, 1e-8)  # 30 passes over W instead of 200 MU steps (each two passes)
    assert (objective(W, V, H) <= target).all()


def test_hals_keeps_every_component_alive():
    # |W| of a fan-in-scaled layer is ~100x smaller than the U[0,1) init; without rescaling the
    # init, a single sweep pins whole components of V at eps (4 of 7 here), and they only come
    # back through near-singular steps (dividing by G[k, k] ~ eps)
    W = _absw(2, 64, 300, seed=1)
    V, H = init_factors(W, 7, "uniform", [4, 5])
    hals_frobenius(W, V, H, 1, 1e-8, inner=1)
    assert (V.amax(dim=1) > 1e-4).all() and (H.amax(dim=2) > 1e-4).all()


def test_fast_solver_rejects_other_losses():
    with pytest.raises(ValueError, match="frobenius"):
        YopoConfig(nmf_solver="hals", loss="kl")
    with pytest.raises(ValueError):
        YopoConfig(nmf_solver="newton")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_storage_agrees(dtype, monkeypatch):
    # pretend the CPU computes the dtype natively, so the reduced-precision path runs (on a CPU
    # without it, storage falls back to float32: tests/test_perf_engine.py)
    from yopo.methods.yopo import hardware
    monkeypatch.setattr(hardware, "native_low_precision", lambda name, device="cpu": True)
    ws = {"a.weight": torch.randn(64, 32, 3, 3, generator=torch.Generator().manual_seed(0)),
          "b.weight": torch.randn(100, 200, generator=torch.Generator().manual_seed(1))}
    full = yopo_saliency(ws, YopoConfig())
    low = yopo_saliency(ws, YopoConfig(storage_dtype=dtype))
    for n in ws:
        assert low[n].dtype == torch.float32 and low[n].shape == ws[n].shape
        assert agreement(full[n], low[n]) >= 0.99


def test_threads_option_keeps_results():
    ws = {"a.weight": torch.randn(30, 40)}
    a = yopo_saliency(ws, YopoConfig(iters=5, nmf_threads=1))
    b = yopo_saliency(ws, YopoConfig(iters=5, nmf_threads=2))
    assert torch.allclose(a["a.weight"], b["a.weight"], rtol=1e-3, atol=1e-5)
    assert torch.get_num_threads() >= 1


@pytest.mark.parametrize("fn", [mu_frobenius, amu_frobenius, hals_frobenius])
def test_thread_split_restores_threads_and_keeps_results(fn):
    # With 2 intra-op threads the products run on both and the small calls on one; the caller's
    # thread count is restored, also when the solver raises
    W = _absw(2, 64, 300, seed=2)
    V0, H0 = init_factors(W, 7, "uniform", [1, 2])
    V1, H1 = V0.clone(), H0.clone()
    fn(W, V1, H1, 20, 1e-8)  # one thread (module fixture)
    torch.set_num_threads(2)
    try:
        V2, H2 = V0.clone(), H0.clone()
        fn(W, V2, H2, 20, 1e-8)
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError):
            fn(W, V0.clone(), H0[:, :, :5].clone(), 2, 1e-8)  # H of the wrong width
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert torch.allclose(V1 @ H1, V2 @ H2, rtol=1e-3, atol=1e-5)


def test_plan_packs_small_layers_for_hals_only():
    from yopo.methods.yopo.saliency import PACK_MAX_ELEMS, plan_batches

    shapes = {"a": (16, 27), "b": (16, 144), "c": (16, 144), "d": (64, 576), "e": (512, 4608), "f": (3, 9)}
    mu = plan_batches(shapes, YopoConfig())
    assert not any(b.padded for b in mu) and sorted(n for b in mu for n in b.names) == sorted(shapes)
    hals = plan_batches(shapes, YopoConfig(nmf_solver="hals"))
    assert sorted(n for b in hals for n in b.names) == sorted(shapes)
    by_name = {n: b for b in hals for n in b.names}
    assert by_name["a"] is by_name["b"] is by_name["d"] and by_name["a"].padded  # rank 7, small: one batch
    assert (by_name["a"].o, by_name["a"].d) == (64, 576)
    assert by_name["e"].names == ("e",) and 512 * 4608 > PACK_MAX_ELEMS  # large: own batch
    assert by_name["f"].rank == 3 and by_name["f"] is not by_name["a"]  # another rank: another batch
    tight = plan_batches(shapes, YopoConfig(nmf_solver="hals", max_batch_elems=3 * 64 * 576))
    assert all(len(b.names) * b.o * b.d <= 3 * 64 * 576 or len(b.names) == 1 for b in tight)


def test_packed_hals_matches_each_layer_alone():
    g = torch.Generator().manual_seed(0)
    ws = {"conv.weight": torch.randn(16, 3, 3, 3, generator=g), "l1.weight": torch.randn(16, 16, 3, 3, generator=g),
          "l2.weight": torch.randn(32, 16, 3, 3, generator=g), "fc.weight": torch.randn(10, 64, generator=g)}
    cfg = YopoConfig(nmf_solver="hals", iters=10)
    packed = yopo_saliency(ws, cfg)
    for n, w in ws.items():
        alone = yopo_saliency({n: w}, cfg)[n]
        assert packed[n].shape == w.shape
        # padding columns changes only the summation length of the products (rounding), so
        # entries agree to ~1e-4 of |W|'s scale (~1 here) and the masks to within 0.1%
        assert torch.allclose(packed[n], alone, rtol=1e-3, atol=1e-4), n
        assert agreement(packed[n], alone) >= 0.999
