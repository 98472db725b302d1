"""Masked-training overhead per optimizer step vs dense (target: under 5%).

Same model (ResNet-20 by default), same init, same batch; one copy dense, one with a 90% YOPO-G
mask (gradient hooks + weight_mask buffers, as `yopo train` runs it). Steps alternate in rounds
(dense block, masked block, ...) so load drift on a shared machine hits both alike; the ratio is
median(masked step) / median(dense step). Writes JSON evidence to benchmarks/results/.

    .venv/bin/python benchmarks/train_overhead.py [--model resnet20] [--steps 30] [--rounds 5]
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import yopo  # noqa: E402
from yopo.models import build  # noqa: E402


def step_times(model, opt, x, y, n, device):
    out = []
    for _ in range(n):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="steps per block")
    ap.add_argument("--rounds", type=int, default=5, help="alternating dense/masked blocks")
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_overhead.json"))
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    dense = build(a.model, 10, init="kaiming_normal", seed=0).to(device)
    masked = copy.deepcopy(dense)
    masks = yopo.calibrate(yopo.score(masked, "yopo", seed=0, iters=50), a.sparsity)
    yopo.apply_masks(masked, masks)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (a.batch,), generator=g).to(device)
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
            for k, m in (("dense", dense), ("masked", masked))}
    models = {"dense": dense, "masked": masked}
    for k in models:  # warm-up
        step_times(models[k], opts[k], x, y, 3, device)
    times = {"dense": [], "masked": []}
    per_round = []
    for r in range(a.rounds):
        order = ("dense", "masked") if r % 2 == 0 else ("masked", "dense")
        rr = {}
        for k in order:
            t = step_times(models[k], opts[k], x, y, a.steps, device)
            times[k] += t
            rr[k] = statistics.median(t)
        per_round.append(rr["masked"] / rr["dense"])
    yopo.assert_pruned_zero(masked)
    md, mm = statistics.median(times["dense"]), statistics.median(times["masked"])
    ratio = mm / md
    res = {"model": a.model, "batch": a.batch, "device": str(device), "sparsity": yopo.sparsity(masked),
           "threads": torch.get_num_threads(), "steps_per_block": a.steps, "rounds": a.rounds,
           "median_dense_s": md, "median_masked_s": mm, "ratio": ratio, "overhead_pct": 100 * (ratio - 1),
           "ratio_per_round": per_round, "torch": torch.__version__, "platform": platform.platform(),
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
           "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "dense_step_s": times["dense"], "masked_step_s": times["masked"]}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from yopo.core.io import write_json
    write_json(out, res)
    print(f"{a.model} bs{a.batch} on {device}: dense {md * 1e3:.1f} ms/step, masked {mm * 1e3:.1f} ms/step, "
          f"ratio {ratio:.4f} ({100 * (ratio - 1):+.2f}%); per round {[round(v, 3) for v in per_round]} -> {out}")


if __name__ == "__main__":
    main()
