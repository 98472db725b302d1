"""Determinism across thread counts (issue 11, item 9): the same YOPO saliency computed with 1 and
with 2 (or --threads) intra-op threads, for the default engine (fused kernel for large layers when
numba is installed) and for the torch engine alone (``kernel="torch"``).

Reported per engine: whether the scores are bitwise equal, the largest score difference, and how
many entries of the 90% YOPO-G mask differ. Writes benchmarks/results/thread_determinism.json
(``--quick``: T=20, *_draft.json).

    python benchmarks/thread_determinism.py [--model vgg11] [--threads 1 2] [--quick]
"""
from __future__ import annotations

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)

import argparse
import os

import torch

from _common import env, env_line, model_weights, save
from yopo.core.calibration import mort
from yopo.methods.yopo.saliency import YopoConfig, yopo_saliency


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vgg11")
    ap.add_argument("--threads", type=int, nargs=2, default=[1, 2])
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="T=20; writes thread_determinism_draft.json")
    args = ap.parse_args()
    iters = 20 if args.quick else args.iters
    info = env()
    print(env_line(info))
    ws = model_weights(args.model)
    numel = sum(w.numel() for w in ws.values())
    rows = []
    old = torch.get_num_threads()
    for kernel in ("auto", "torch"):
        cfg = YopoConfig(iters=iters, kernel=kernel)
        out = []
        for n in args.threads:
            torch.set_num_threads(n)
            out.append(yopo_saliency(ws, cfg))
        torch.set_num_threads(old)
        a, b = out
        equal = all(torch.equal(a[k], b[k]) for k in ws)
        diff = max(float((a[k] - b[k]).abs().max()) for k in ws)
        ma, mb = mort(a, 0.9).masks, mort(b, 0.9).masks
        flips = sum(int((ma[k] != mb[k]).sum()) for k in ws)
        rows.append({"kernel": kernel, "bitwise_equal": equal, "max_abs_score_diff": diff,
                     "mask_entries_differing_at_0.9": flips, "weights": numel})
        print(f"{args.model} T={iters} kernel={kernel:5s} threads {args.threads[0]} vs {args.threads[1]}: bitwise "
              f"equal {equal}, max |dS| {diff:.3g}, mask entries differing at 90%: {flips} of {numel}")
    info["loadavg_at_end"] = os.getloadavg()
    p = save("thread_determinism.json", {"env": info, "model": args.model, "iters": iters,
                                         "threads": args.threads, "rows": rows}, draft=args.quick)
    print(f"wrote {p}")


if __name__ == "__main__":
    main()
