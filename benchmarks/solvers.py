"""Objective vs time of the NMF solvers (mu, amu, hals) on whole models, and mask agreement.

For each model, the layers are batched exactly as ``yopo_saliency`` batches them for each solver
(MU on the fused one-pass kernel where the engine uses it: float32 batches of >= 2^18 entries with
numba installed)
(``plan_batches``: same-shaped layers together; HALS packs small layers into zero-padded batches;
same seeds, rank 7). Each solver is run pass by pass; the objective
sum_l ||W_l - V_l H_l||_F^2 over all layers is recorded at checkpoints (time spent evaluating it
is excluded). Reported: the time each fast solver needs to reach the objective of 200 plain MU
steps, as a fraction of MU-200's time (medians of --repeats alternating timings in the same
process), and the agreement of its 90%
global mask with MU-200's. Writes benchmarks/results/solvers.json.

    python benchmarks/solvers.py [--models resnet20 vgg19 resnet50] [--max-passes 60]
"""
from __future__ import annotations

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)

import argparse
import statistics
import time

from _common import env, env_line, mask_agreement, model_weights, save
from yopo.core.calibration import mort
from yopo.methods.yopo.nmf import get_update, init_factors, objective
from yopo.methods.yopo import hardware
from yopo.methods.yopo.saliency import (YopoConfig, _prepare, _threads, _use_fused, layer_seed, plan_batches, residual,
                                        stack_batch)

CHECK = [1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150, 200]


def groups(ws: dict, cfg: YopoConfig):
    """The engine's batches for ``cfg.nmf_solver`` (``plan_batches``: HALS packs small layers)."""
    mats = {n: _prepare(w, n, cfg) for n, w in ws.items()}
    return [(b, stack_batch(b, mats)) for b in plan_batches({n: tuple(a.shape) for n, a in mats.items()}, cfg)]


def trace(batches, solver: str, passes: int, seed: int = 0):
    """[(passes, seconds, objective)] at checkpoints, and the final scores."""
    fn = get_update("frobenius", solver)
    # MU runs where the engine runs it: on the fused kernel for large float32 batches (numba)
    fused = {id(W): solver == "mu" and _use_fused(W, W.dtype, YopoConfig()) for _, W in batches}
    state = []
    for b, W in batches:
        V, H = init_factors(W, b.rank, "uniform", [layer_seed(seed, n) for n in b.names],
                            list(b.shapes) if b.padded else None)
        state.append((b, W, V, H))
    elapsed, points, done = 0.0, [], 0
    for p in [c for c in CHECK if c <= passes]:
        for b, W, V, H in state:
            small = 1 if W.numel() < (1 << 20) and not fused[id(W)] else 0  # the engine's thread rule
            t = time.perf_counter()
            with _threads(small):
                (hardware.fused_kernel().mu_frobenius if fused[id(W)] else fn)(W, V, H, p - done, 1e-8)
            elapsed += time.perf_counter() - t
        done = p
        # the objective over the real (unpadded) entries only
        points.append((p, elapsed, float(sum(float(objective(W[j:j + 1, :o, :d], V[j:j + 1, :o], H[j:j + 1, :, :d]).sum())
                                             for b, W, V, H in state for j, (o, d) in enumerate(b.shapes)))))
    scores = {}
    for b, W, V, H in state:
        S = residual(W, V, H)
        for j, (n, (o, d)) in enumerate(zip(b.names, b.shapes)):
            scores[n] = S[j, :o, :d]
    return points, scores


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=["resnet20", "vgg19", "resnet50"])
    ap.add_argument("--max-passes", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (medians)")
    ap.add_argument("--quick", action="store_true", help="resnet20 + vgg19, 30 passes, 1 repeat; solvers_draft.json")
    args = ap.parse_args()
    if args.quick:
        args.models = [m for m in args.models if m != "resnet50"]
        args.max_passes, args.repeats = 30, 1
    info = env()
    print(env_line(info) + f"; objective traces: 1 run; times: median of {args.repeats}")
    rows = []
    for name in args.models:
        ws = model_weights(name)
        plans = {s: groups(ws, YopoConfig(nmf_solver=s)) for s in ("mu", "amu", "hals")}
        batches = plans["mu"]
        trace(batches[:1], "mu", 2)  # warm-up
        mu_pts, mu_S = trace(batches, "mu", 200)
        t_mu, f_mu = mu_pts[-1][1], mu_pts[-1][2]
        m_mu = mort({n: mu_S[n].reshape(ws[n].shape) for n in ws}, 0.9).masks
        row = {"model": name, "mu200_seconds": [t_mu], "mu200_objective": f_mu, "mu_trace": mu_pts, "solvers": {}}
        hits = {}
        for solver in ("amu", "hals"):
            pts, S = trace(plans[solver], solver, args.max_passes)
            hit = next(((p, t, f) for p, t, f in pts if f <= f_mu), None)
            hits[solver] = hit
            m = mort({n: S[n].reshape(ws[n].shape) for n in ws}, 0.9).masks
            if hit is not None:  # the mask at the pass count that first reaches MU-200's objective
                _, S_hit = trace(plans[solver], solver, hit[0])
                m = mort({n: S_hit[n].reshape(ws[n].shape) for n in ws}, 0.9).masks
            row["solvers"][solver] = {
                "trace": pts, "passes_to_mu200": hit[0] if hit else None,
                "seconds_to_mu200": [hit[1]] if hit else None,
                "objective_ratio_at_hit": hit[2] / f_mu if hit else None,
                "final_objective_ratio": pts[-1][2] / f_mu,
                "mask_agreement_with_mu200_at_0.9": mask_agreement(m, m_mu)}
        # repeat the timings (MU-200, then each solver up to its hit), alternating, for medians
        for _ in range(args.repeats - 1):
            row["mu200_seconds"].append(trace(batches, "mu", 200)[0][-1][1])
            for solver, hit in hits.items():
                if hit is not None:
                    row["solvers"][solver]["seconds_to_mu200"].append(trace(plans[solver], solver, hit[0])[0][-1][1])
        t_mu = statistics.median(row["mu200_seconds"])
        for solver in ("amu", "hals"):
            sv = row["solvers"][solver]
            frac = statistics.median(sv["seconds_to_mu200"]) / t_mu if sv["seconds_to_mu200"] else None
            sv["time_fraction_of_mu200"] = frac
            print(f"{name:9s} {solver:5s} MU-200 {t_mu:7.2f}s (median of {len(row['mu200_seconds'])}) | reaches "
                  f"MU-200 objective after {sv['passes_to_mu200']} passes, "
                  f"{statistics.median(sv['seconds_to_mu200']) if sv['seconds_to_mu200'] else float('nan'):.2f}s = "
                  f"{frac if frac is not None else float('nan'):.3f} of MU-200 time | mask agreement "
                  f"{sv['mask_agreement_with_mu200_at_0.9']:.4f}", flush=True)
        rows.append(row)
    info["loadavg_at_end"] = __import__("os").getloadavg()
    p = save("solvers.json", {"env": info, "rows": rows}, draft=args.quick)
    print(f"wrote {p}")


if __name__ == "__main__":
    main()
