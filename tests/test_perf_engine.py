"""Performance-related engine behaviour: hardware-aware storage, the fused MU kernel (same updates,
thread-count independent), the `fast` option, determinism guarantees."""
from __future__ import annotations

import warnings

import pytest
import torch

from yopo.methods.yopo import hardware
from yopo.methods.yopo.nmf import init_factors, mu_frobenius, nmf_reference
from yopo.methods.yopo.saliency import (FAST_PASSES, FAST_SOLVER, FUSED_MIN_ELEMS, YopoConfig, _use_fused,
                                        residual, yopo_saliency)


def _absw(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * 0.05).abs()


def _weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(64, 32, 3, 3, generator=g), "b.weight": torch.randn(100, 200, generator=g),
            "c.weight": torch.randn(37, 90, generator=g)}


def _top(x: torch.Tensor, frac: float = 0.1) -> torch.Tensor:
    m = torch.zeros(x.numel(), dtype=torch.bool)
    m[x.flatten().topk(int(frac * x.numel())).indices] = True
    return m


def agreement(a, b, frac=0.1) -> float:
    return float((_top(a, frac) == _top(b, frac)).float().mean())


@pytest.fixture
def threads():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------- reduced-precision storage

def test_cpu_flags_decide_native_bf16(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_info", lambda: ("AVX2 CPU", frozenset({"avx2", "fma"})))
    assert not hardware.native_low_precision("bfloat16")
    assert not hardware.native_low_precision("float16")
    monkeypatch.setattr(hardware, "cpu_info", lambda: ("SPR", frozenset({"avx2", "avx512_bf16", "amx_bf16"})))
    assert hardware.native_low_precision("bfloat16")
    assert hardware.native_low_precision("float32")
    with pytest.raises(ValueError, match="dtype='int8' is not allowed"):
        hardware.native_low_precision("int8")


def test_unknown_flags_fall_back_to_one_timing(monkeypatch):
    calls = []
    monkeypatch.setattr(hardware, "cpu_info", lambda: ("unknown", None))
    monkeypatch.setattr(hardware, "_timed_native", lambda name: calls.append(name) or False)
    assert not hardware.native_low_precision("bfloat16")
    assert calls == ["bfloat16"]


def test_timed_detection_runs_and_is_cached():
    hardware._timed_native.cache_clear()
    first = hardware._timed_native("bfloat16")
    assert isinstance(first, bool)
    assert hardware._timed_native("bfloat16") is first and hardware._timed_native.cache_info().hits >= 1


def test_cuda_capability_decides_native(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert not hardware.native_low_precision("bfloat16", "cuda")
    assert hardware.native_low_precision("float16", "cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert hardware.native_low_precision("bfloat16", "cuda")


def test_bf16_storage_falls_back_to_float32_with_one_line_warning(monkeypatch):
    monkeypatch.setattr(hardware, "native_low_precision", lambda name, device="cpu": False)
    ws = _weights()
    full = yopo_saliency(ws, YopoConfig(iters=20))
    with pytest.warns(RuntimeWarning, match=r"storage_dtype='bfloat16' is not computed natively .*using float32"):
        low = yopo_saliency(ws, YopoConfig(iters=20, storage_dtype="bfloat16"))
    for n in ws:
        assert torch.equal(low[n], full[n])  # exactly the float32 computation
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        yopo_saliency(ws, YopoConfig(iters=2, storage_dtype="bfloat16"))
    msgs = [str(w.message) for w in rec if "natively" in str(w.message)]
    assert len(msgs) == 1 and "\n" not in msgs[0]  # one note per call, one line


def test_bf16_storage_is_used_where_native(monkeypatch):
    monkeypatch.setattr(hardware, "native_low_precision", lambda name, device="cpu": True)
    ws = _weights()
    full = yopo_saliency(ws, YopoConfig(iters=50))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback note
        low = yopo_saliency(ws, YopoConfig(iters=50, storage_dtype="bfloat16"))
    assert any(not torch.equal(low[n], full[n]) for n in ws)  # really computed from bf16 storage
    for n in ws:
        assert low[n].dtype == torch.float32 and agreement(low[n], full[n]) >= 0.99


def test_this_machines_answer_is_consistent_with_its_flags():
    flags = hardware.cpu_info()[1]
    if flags is None:
        pytest.skip("no /proc/cpuinfo flags here")
    native = any(f in flags for f in hardware.NATIVE_CPU_FLAGS["bfloat16"])
    assert hardware.native_low_precision("bfloat16") == native


# ---------------------------------------------------------------- fused kernel

kernel = hardware.fused_kernel()
needs_numba = pytest.mark.skipif(kernel is None, reason="numba not installed (extra 'fast')")


@needs_numba
@pytest.mark.parametrize("shape", [(2, 200, 300), (1, 37, 90), (3, 8, 20), (1, 130, 17)])
def test_fused_kernel_makes_the_same_updates_as_eq8(shape, threads):
    W = _absw(*shape)
    B, o, d = shape
    V0, H0 = init_factors(W, min(5, o, d), "uniform", list(range(B)))
    V1, H1 = V0.clone(), H0.clone()
    torch.set_num_threads(1)
    mu_frobenius(W, V1, H1, 50, 1e-8)  # the batched torch engine
    V2, H2 = V0.clone(), H0.clone()
    kernel.mu_frobenius(W, V2, H2, 50, 1e-8)
    torch.testing.assert_close(V2, V1, rtol=2e-4, atol=1e-7)
    torch.testing.assert_close(H2, H1, rtol=2e-4, atol=1e-7)
    torch.testing.assert_close(kernel.residual(W, V2, H2), residual(W, V2, H2), rtol=1e-5, atol=1e-7)


@needs_numba
def test_fused_saliency_agrees_with_the_plain_loop():
    # the must-have: mask agreement >= 0.9999 with the plain per-layer loop at 90% sparsity
    w = torch.randn(256, 64, 3, 3, generator=torch.Generator().manual_seed(3))
    S = yopo_saliency({"w": w}, YopoConfig(kernel="fused"), seed=1)["w"]
    a = w.reshape(256, -1).abs()
    from yopo.methods.yopo.saliency import layer_seed
    V, H = nmf_reference(a, 7, 200, seed=layer_seed(1, "w"))
    ref = residual(a, V, H).reshape(w.shape)
    assert agreement(S, ref, 0.1) >= 0.9999
    torch.testing.assert_close(S, ref, rtol=1e-3, atol=1e-5)


@needs_numba
def test_fused_kernel_is_bitwise_independent_of_the_thread_count(threads):
    W = _absw(2, 300, 257, seed=4)  # several row groups, a partial block of rows
    V0, H0 = init_factors(W, 7, "uniform", [1, 2])
    out = []
    for n in (1, 2, 3):
        torch.set_num_threads(n)
        V, H = V0.clone(), H0.clone()
        kernel.mu_frobenius(W, V, H, 30, 1e-8)
        out.append((V, H, kernel.residual(W, V, H)))
    for V, H, S in out[1:]:
        assert torch.equal(V, out[0][0]) and torch.equal(H, out[0][1]) and torch.equal(S, out[0][2])


@needs_numba
def test_fused_per_channel_variant_matches_the_torch_engine():
    ws = {"w": torch.randn(40, 300, generator=torch.Generator().manual_seed(2))}
    cfg = dict(per_channel=True, iters=50)
    a = yopo_saliency(ws, YopoConfig(kernel="fused", **cfg))["w"]
    b = yopo_saliency(ws, YopoConfig(kernel="torch", **cfg))["w"]
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@needs_numba
def test_auto_uses_the_fused_kernel_only_for_large_float32_mu_batches():
    big = torch.zeros(1, 512, FUSED_MIN_ELEMS // 512)
    small = torch.zeros(1, 64, 576)
    assert _use_fused(big, torch.float32, YopoConfig())
    assert not _use_fused(small, torch.float32, YopoConfig())
    assert _use_fused(small, torch.float32, YopoConfig(kernel="fused"))
    assert not _use_fused(big, torch.float32, YopoConfig(kernel="torch"))
    assert not _use_fused(big, torch.bfloat16, YopoConfig())
    assert not _use_fused(big, torch.float32, YopoConfig(nmf_solver="hals"))
    assert not _use_fused(big, torch.float32, YopoConfig(loss="kl"))


def test_fused_kernel_without_numba_is_an_error(monkeypatch):
    monkeypatch.setattr(hardware, "fused_kernel", lambda: None)
    with pytest.raises(ValueError, match="kernel='fused' needs numba"):
        YopoConfig(kernel="fused")
    YopoConfig()  # auto: falls back to the torch engine
    S = yopo_saliency({"w": torch.randn(600, 500)}, YopoConfig(iters=3))
    assert S["w"].shape == (600, 500)


def test_fused_kernel_rejects_settings_it_cannot_run():
    for bad in (dict(nmf_solver="hals"), dict(loss="kl"), dict(storage_dtype="bfloat16"), dict(fast=True)):
        with pytest.raises(ValueError, match="kernel='fused' runs MU"):
            YopoConfig(kernel="fused", **bad)
    with pytest.raises(ValueError, match="kernel='gpu' is not allowed"):
        YopoConfig(kernel="gpu")


# ---------------------------------------------------------------- fast option

def test_fast_is_amu_for_the_passes_that_reach_mu200():
    ws = _weights(1)
    fast = yopo_saliency(ws, YopoConfig(fast=True), seed=2)
    same = yopo_saliency(ws, YopoConfig(nmf_solver=FAST_SOLVER, iters=FAST_PASSES), seed=2)
    mu = yopo_saliency(ws, YopoConfig(), seed=2)
    for n in ws:
        assert torch.equal(fast[n], same[n])
        assert agreement(fast[n], mu[n]) >= 0.9


def test_fast_rejects_settings_it_would_override():
    with pytest.raises(ValueError, match="fast=True replaces MU-200"):
        YopoConfig(fast=True, iters=100)
    with pytest.raises(ValueError, match="fast=True replaces MU-200"):
        YopoConfig(fast=True, nmf_solver="hals")
    with pytest.raises(TypeError, match="fast='yes' must be a bool"):
        YopoConfig(fast="yes")


# ---------------------------------------------------------------- determinism guarantees

def test_small_layers_give_the_same_bytes_on_any_thread_count(threads):
    # batches under 2^20 entries always run on one thread (documented guarantee)
    ws = _weights(5)
    out = []
    for n in (1, 2):
        torch.set_num_threads(n)
        out.append(yopo_saliency(ws, YopoConfig(iters=30, kernel="torch"), seed=0))
    assert all(torch.equal(out[0][k], out[1][k]) for k in ws)


def test_same_thread_count_gives_the_same_bytes(threads):
    torch.set_num_threads(2)
    ws = {"big": torch.randn(1100, 1000, generator=torch.Generator().manual_seed(0))}  # > 2^20: all threads
    a = yopo_saliency(ws, YopoConfig(iters=5, kernel="torch"))
    b = yopo_saliency(ws, YopoConfig(iters=5, kernel="torch"))
    assert torch.equal(a["big"], b["big"])


@needs_numba
def test_large_layers_on_the_fused_kernel_give_the_same_bytes_on_any_thread_count(threads):
    ws = {"big": torch.randn(1100, 1000, generator=torch.Generator().manual_seed(0))}
    out = []
    for n in (1, 2):
        torch.set_num_threads(n)
        out.append(yopo_saliency(ws, YopoConfig(iters=5))["big"])
    assert torch.equal(out[0], out[1])
