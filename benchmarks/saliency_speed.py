"""Saliency speed: the batched YOPO engine vs the plain per-layer reference loop, and the time to
re-threshold a stored family to a new sparsity.

For ResNet-20, VGG-19 (CIFAR) and ResNet-50 (torchvision, random init): YOPO saliency with the
paper's defaults (MU, rank 7, T=200, float32) against ``nmf_reference`` called layer by layer, both
in this process, as a ratio; mask agreement of the two at 90% global sparsity; the bfloat16-storage
variant; and ``mort`` time for one new sparsity on the stored scores. Prints a table and writes
benchmarks/results/saliency_speed.json.

    python benchmarks/saliency_speed.py [--runs 3] [--ref-runs 1] [--models resnet20 vgg19 resnet50]
"""
from __future__ import annotations

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)

import argparse

import torch

from _common import env, mask_agreement, model_weights, save, timed
from yopo.core.calibration import mort
from yopo.methods.yopo.nmf import nmf_reference
from yopo.methods.yopo.saliency import YopoConfig, _prepare, layer_seed, residual, yopo_saliency


def reference_loop(weights: dict, cfg: YopoConfig, seed: int = 0) -> dict:
    out = {}
    for n, w in weights.items():
        a = _prepare(w, n, cfg)
        V, H = nmf_reference(a, min(cfg.rank, *a.shape), cfg.iters, seed=layer_seed(seed, n), eps=cfg.eps)
        out[n] = residual(a, V, H).reshape(w.shape)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ref-runs", type=int, default=1)
    ap.add_argument("--models", nargs="*", default=["resnet20", "vgg19", "resnet50"])
    args = ap.parse_args()
    info = env()
    print(f"# {info['cpu']}, {info['cores']} cores, torch {info['torch']}, {info['threads']} threads, "
          f"OMP_WAIT_POLICY={info['omp_wait_policy']}, load {info['loadavg_at_start']}")
    rows = []
    cfg = YopoConfig()
    for name in args.models:
        ws = model_weights(name)
        numel = sum(w.numel() for w in ws.values())
        yopo_saliency({k: v for k, v in list(ws.items())[:2]}, YopoConfig(iters=2))  # warm-up
        t_eng, ts_eng, S = timed(lambda: yopo_saliency(ws, cfg), args.runs)
        t_bf, ts_bf, Sb = timed(lambda: yopo_saliency(ws, YopoConfig(storage_dtype="bfloat16")), args.runs)
        t_ref, ts_ref, R = timed(lambda: reference_loop(ws, cfg), args.ref_runs)
        m_eng, m_ref, m_bf = (mort(x, 0.9).masks for x in (S, R, Sb))
        t_cal, ts_cal, _ = timed(lambda: mort(S, 0.8), 5)
        max_rel = max(float(((S[n] - R[n]).abs() / R[n].abs().clamp_min(1e-6)).max()) for n in S)
        row = {"model": name, "layers": len(ws), "weights": numel, "runs": args.runs, "ref_runs": args.ref_runs,
               "engine_s": t_eng, "engine_all_s": ts_eng, "reference_s": t_ref, "reference_all_s": ts_ref,
               "speedup_vs_reference": t_ref / t_eng, "bf16_s": t_bf, "bf16_all_s": ts_bf,
               "bf16_speedup_vs_reference": t_ref / t_bf,
               "mask_agreement_engine_vs_reference_at_0.9": mask_agreement(m_eng, m_ref),
               "mask_agreement_bf16_vs_float32_at_0.9": mask_agreement(m_bf, m_eng),
               "max_rel_score_diff_engine_vs_reference": max_rel,
               "calibrate_new_sparsity_s": t_cal, "calibrate_all_s": ts_cal}
        rows.append(row)
        print(f"{name:9s} {numel / 1e6:6.2f}M weights  engine {t_eng:7.2f}s  reference {t_ref:7.2f}s  "
              f"ratio {t_ref / t_eng:5.2f}x  bf16 {t_bf:6.2f}s ({t_ref / t_bf:5.2f}x)  "
              f"agree(ref) {row['mask_agreement_engine_vs_reference_at_0.9']:.6f}  "
              f"agree(bf16) {row['mask_agreement_bf16_vs_float32_at_0.9']:.6f}  re-threshold {t_cal:.3f}s", flush=True)
    info["loadavg_at_end"] = __import__("os").getloadavg()
    p = save("saliency_speed.json", {"env": info, "config": {"rank": cfg.rank, "iters": cfg.iters, "solver": "mu"},
                                     "rows": rows})
    print(f"wrote {p}")


if __name__ == "__main__":
    main()
