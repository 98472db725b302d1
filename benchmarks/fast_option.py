"""The ``fast`` YOPO option against the default MU-200, per model: time ratio, mask agreement at
90% (YOPO-G: global, MAD) and the NMF objective reached.

``fast=True`` runs AMU for ``FAST_PASSES`` passes over W instead of 200 MU steps (see
``yopo.methods.yopo.saliency``); the default MU-200 runs on the default engine (the fused kernel
for large layers when numba is installed). Both are timed in this process, alternating, medians of
``--runs``. The objective is sum_l ||W_l - V_l H_l||_F^2 of the factors, recomputed from the
scores (S = |W - VH| so ||S||_F^2 is the objective). Writes benchmarks/results/fast_option.json
(``--quick``: one run, ResNet-20 and VGG-19 unless --models says otherwise, *_draft.json).

    python benchmarks/fast_option.py [--models resnet20 vgg19 resnet50] [--runs 3] [--quick]
"""
from __future__ import annotations

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)

import argparse
import os
import statistics
import time

import torch

from _common import env, env_line, mask_agreement, model_weights, save
from yopo.core.calibration import mort
from yopo.methods.yopo.saliency import FAST_PASSES, FAST_SOLVER, YopoConfig, yopo_saliency


def objective(scores: dict) -> float:
    return float(sum(float(s.double().square().sum()) for s in scores.values()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=None, help="default: resnet20 vgg19 resnet50 "
                    "(--quick: resnet20 vgg19)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="resnet20 + vgg19, 1 run; writes fast_option_draft.json")
    args = ap.parse_args()
    # results of an explicit model list go to their own file, beside the default list's
    out_name = "fast_option.json" if args.models is None else f"fast_option_{'_'.join(args.models)}.json"
    if args.models is None:
        args.models = ["resnet20", "vgg19"] if args.quick else ["resnet20", "vgg19", "resnet50"]
    if args.quick:
        args.runs = 1
    info = env()
    print(env_line(info))
    print(f"fast = {FAST_SOLVER} for {FAST_PASSES} passes over W; default = MU-200 (kernel auto)")
    rows = []
    # hals10: the other fast solver at its passes to MU-200's objective (benchmarks/solvers.py), for comparison
    variants = {"mu200": YopoConfig(), "fast": YopoConfig(fast=True), "hals10": YopoConfig(nmf_solver="hals", iters=10)}
    for name in args.models:
        ws = model_weights(name)
        for c in variants.values():  # warm-up (fused kernel load)
            yopo_saliency(dict(list(ws.items())[-2:]), c)
        times = {k: [] for k in variants}
        out = {}
        for _ in range(args.runs):
            for k, c in variants.items():
                t = time.perf_counter()
                out[k] = yopo_saliency(ws, c)
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        m = {k: mort(v, 0.9).masks for k, v in out.items()}
        row = {"model": name, "weights": sum(w.numel() for w in ws.values()), "runs": args.runs, "seconds": times,
               "time_ratio_fast_over_mu200": med["fast"] / med["mu200"],
               "mask_agreement_at_0.9": mask_agreement(m["fast"], m["mu200"]),
               "objective_ratio_fast_over_mu200": objective(out["fast"]) / objective(out["mu200"]),
               "hals10_time_ratio": med["hals10"] / med["mu200"],
               "hals10_mask_agreement_at_0.9": mask_agreement(m["hals10"], m["mu200"]),
               "hals10_objective_ratio": objective(out["hals10"]) / objective(out["mu200"])}
        rows.append(row)
        print(f"{name:9s} MU-200 {med['mu200']:6.2f}s | fast {med['fast']:6.2f}s = {row['time_ratio_fast_over_mu200']:.3f}x"
              f" | mask agreement at 90% {row['mask_agreement_at_0.9']:.4f} | objective fast/MU-200 "
              f"{row['objective_ratio_fast_over_mu200']:.4f} || hals-10: {row['hals10_time_ratio']:.3f}x, agreement "
              f"{row['hals10_mask_agreement_at_0.9']:.4f}, objective {row['hals10_objective_ratio']:.4f}", flush=True)
    info["loadavg_at_end"] = os.getloadavg()
    p = save(out_name, {"env": info, "fast_solver": FAST_SOLVER, "fast_passes": FAST_PASSES, "rows": rows},
             draft=args.quick)
    print(f"wrote {p}")


if __name__ == "__main__":
    main()
