"""Saliency speed: YOPO's engine against a fairly written plain per-layer MU loop, the cache floor,
and the time to re-threshold a stored family to a new sparsity.

For ResNet-20, VGG-19 (CIFAR) and ResNet-50 (torchvision, random init), all in this process:

- ``plain``: ``nmf_reference`` layer by layer, the loop a careful user writes (``V @ (H @ H.T)``,
  ``(V.T @ V) @ H``: two reads of W per step, the o x d product never formed);
- ``engine``: ``yopo_saliency`` with the defaults (``kernel="auto"``: the fused one-pass kernel for
  float32 batches of >= 2^18 entries when numba is installed, the batched torch engine otherwise);
- ``torch``: the batched torch engine everywhere (``kernel="torch"``);
- ``floor``: two cached reads of every layer per step, each read timed (``W.sum()``, best of 30) on
  the same layer, in this run, with the same threads;
- ``compute floor``: the products' multiply-adds (4 r o d per layer and step) at the FLOP rate of a
  square 1024^3 float32 product in this run (the CPU's practical FMA peak). For r = 7 a step does
  28 flops per weight against 8 bytes read, so on a CPU whose FMA peak is below 3.5 flops per byte
  of cached-read bandwidth, the compute floor is above the read floor;
- mask agreement at 90% (global, MAD) of the engine and of the torch engine with the plain loop;
- reduced-precision storage (bfloat16) only where the CPU computes it natively (else: skipped, with
  the reason recorded);
- ``mort`` time for one new sparsity on the stored scores.

The engine runs alternate with the plain loop (ABAB...), medians are reported, and every timing,
the CPU (model + flags), threads and load are saved to benchmarks/results/saliency_speed.json.
``--quick`` (T=20, one run each) writes saliency_speed_draft.json instead and never overwrites the
committed result.

    python benchmarks/saliency_speed.py                       # T=200, 3 runs (final numbers: idle machine)
    python benchmarks/saliency_speed.py --quick               # indicative, ~1 min
    python benchmarks/saliency_speed.py --models vgg19 --runs 5
"""
from __future__ import annotations

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch

from _common import ROOT, env, env_line, mask_agreement, model_weights, read_seconds, save
from yopo.core.calibration import mort
from yopo.methods.yopo import hardware
from yopo.methods.yopo.nmf import nmf_reference
from yopo.methods.yopo.saliency import YopoConfig, _prepare, layer_seed, residual, yopo_saliency


def plain_loop(weights: dict, cfg: YopoConfig, seed: int = 0) -> dict:
    """The fair baseline: one plain MU loop per layer (no batching, no fused kernel)."""
    out = {}
    with torch.no_grad():
        for n, w in weights.items():
            a = _prepare(w, n, cfg)
            V, H = nmf_reference(a, min(cfg.rank, *a.shape), cfg.iters, seed=layer_seed(seed, n), eps=cfg.eps)
            out[n] = residual(a, V, H).reshape(w.shape)
    return out


def floor_seconds(weights: dict, iters: int) -> float:
    """Two cached reads of every layer per step: sum over layers of 2 * iters * (one read's time)."""
    total, cache = 0.0, {}
    for w in weights.values():
        a = w.detach().reshape(w.shape[0], -1).abs().float().contiguous()
        if a.shape not in cache:
            cache[a.shape] = read_seconds(a)
        total += 2 * iters * cache[a.shape]
    return total


def gemm_flops(runs: int = 10) -> float:
    """Measured float32 compute ceiling of this CPU at the current thread count: FLOP/s of a square
    1024^3 product (MKL runs it near the FMA peak), best of ``runs``."""
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    a @ b
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 1024**3 / best


def flops_per_run(weights: dict, cfg: YopoConfig) -> float:
    """Multiply-adds of the two W products of MU, 2 * 2 * r * o * d per step (r clipped per layer)."""
    total = 0
    for w in weights.values():
        o, d = w.shape[0], w[0].numel()
        total += 4 * min(cfg.rank, o, d) * o * d
    return total * cfg.iters


def kernel_load_seconds() -> float | None:
    """Wall time of a fresh process that imports numba and loads the (disk-cached) fused kernel
    and runs it once on a tiny matrix, minus a process that only imports torch: the one-time cost
    a `yopo prune` of a large model pays."""
    if hardware.fused_kernel() is None:
        return None
    code = ("import torch, sys; sys.path.insert(0, {root!r});{extra}")
    extra = ("from yopo.methods.yopo import hardware; k = hardware.fused_kernel(); W = torch.rand(1, 16, 32); "
             "V = torch.rand(1, 16, 2); H = torch.rand(1, 2, 32); k.mu_frobenius(W, V, H, 2, 1e-8); "
             "k.residual(W, V, H)")
    times = []
    for body in ("pass", extra):
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code.format(root=str(ROOT), extra=body)], check=True)
            best = min(best, time.perf_counter() - t)
        times.append(best)
    return times[1] - times[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each variant (alternating)")
    ap.add_argument("--iters", type=int, default=200, help="MU steps T")
    ap.add_argument("--models", nargs="*", default=["resnet20", "vgg19", "resnet50"])
    ap.add_argument("--quick", action="store_true", help="T=20, 1 run; writes saliency_speed_draft.json")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.iters, args.runs = 20, 1
    info = env()
    print(env_line(info))
    native_bf16 = hardware.native_low_precision("bfloat16", "cpu")
    load_s = kernel_load_seconds()
    if load_s is not None:
        print(f"one-time cost of the fused kernel in a new process (import numba + cached code): {load_s:.2f} s")
    rows = []
    cfg = YopoConfig(iters=args.iters)
    variants = {"engine": cfg, "torch": YopoConfig(iters=args.iters, kernel="torch")}
    if native_bf16:
        variants["bf16"] = YopoConfig(iters=args.iters, storage_dtype="bfloat16")
    for name in args.models:
        ws = model_weights(name)
        numel = sum(w.numel() for w in ws.values())
        for c in variants.values():  # warm-up (compiles / loads the fused kernel)
            yopo_saliency(ws, YopoConfig(**{**c.__dict__, "iters": 2}))
        plain_loop({k: v for k, v in list(ws.items())[:3]}, YopoConfig(iters=2))
        times: dict[str, list[float]] = {k: [] for k in ["plain", *variants]}
        out = {}
        for _ in range(args.runs):  # alternate, so a slow phase of a shared machine hits all variants
            t = time.perf_counter()
            out["plain"] = plain_loop(ws, cfg)
            times["plain"].append(time.perf_counter() - t)
            for k, c in variants.items():
                t = time.perf_counter()
                out[k] = yopo_saliency(ws, c)
                times[k].append(time.perf_counter() - t)
        floor = floor_seconds(ws, args.iters)
        compute_floor = flops_per_run(ws, cfg) / gemm_flops()
        med = {k: statistics.median(v) for k, v in times.items()}
        masks = {k: mort(v, 0.9).masks for k, v in out.items()}
        t_cal = statistics.median(_time(lambda: mort(out["engine"], 0.8)) for _ in range(5))
        row = {"model": name, "layers": len(ws), "weights": numel, "iters": args.iters, "runs": args.runs,
               "seconds": times, "median_seconds": med, "floor_seconds": floor,
               "speedup_engine_vs_plain": med["plain"] / med["engine"],
               "speedup_torch_vs_plain": med["plain"] / med["torch"],
               "engine_over_floor": med["engine"] / floor,
               "compute_floor_seconds": compute_floor, "engine_over_compute_floor": med["engine"] / compute_floor,
               "mask_agreement_engine_vs_plain_at_0.9": mask_agreement(masks["engine"], masks["plain"]),
               "mask_agreement_torch_vs_plain_at_0.9": mask_agreement(masks["torch"], masks["plain"]),
               "calibrate_new_sparsity_s": t_cal}
        if native_bf16:
            row["speedup_bf16_vs_plain"] = med["plain"] / med["bf16"]
            row["mask_agreement_bf16_vs_engine_at_0.9"] = mask_agreement(masks["bf16"], masks["engine"])
        rows.append(row)
        print(f"{name:9s} {numel / 1e6:6.2f}M weights, T={args.iters}: plain {med['plain']:7.2f}s | engine "
              f"{med['engine']:7.2f}s ({row['speedup_engine_vs_plain']:5.2f}x, {row['engine_over_floor']:4.2f}x the "
              f"floor {floor:6.2f}s; {row['engine_over_compute_floor']:4.2f}x the compute floor {compute_floor:6.2f}s)"
              f" | torch engine {med['torch']:7.2f}s ({row['speedup_torch_vs_plain']:5.2f}x) | "
              f"agreement engine/plain {row['mask_agreement_engine_vs_plain_at_0.9']:.6f}, torch/plain "
              f"{row['mask_agreement_torch_vs_plain_at_0.9']:.6f} | re-threshold {t_cal:.3f}s", flush=True)
        if native_bf16:
            print(f"{'':9s} bf16 storage {med['bf16']:.2f}s ({row['speedup_bf16_vs_plain']:.2f}x), agreement with "
                  f"float32 {row['mask_agreement_bf16_vs_engine_at_0.9']:.4f}")
    if not native_bf16:
        print("bf16 storage: skipped, this CPU has no native bf16 GEMM (no avx512_bf16/amx_bf16): "
              "yopo falls back to float32 with a warning")
    info["loadavg_at_end"] = os.getloadavg()
    p = save("saliency_speed.json", {
        "env": info, "config": {"rank": cfg.rank, "iters": args.iters, "solver": "mu", "quick": args.quick},
        "bf16_native": native_bf16, "fused_kernel_load_s": load_s, "rows": rows}, draft=args.quick)
    print(f"wrote {p}")


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
