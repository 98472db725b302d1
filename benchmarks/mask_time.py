"""Mask-computation time per scoring method, as a ratio to YOPO measured in the same run (CPU).

Time = ``yopo.score(...)`` + ``yopo.calibrate(..., sparsity, mode="global")`` on a freshly
initialized CIFAR-style model (ResNet-20 and VGG-19 by default), median of ``--runs`` runs per
method (a method whose first run exceeds ``--max-seconds`` is not repeated). Data-dependent
methods get one random CIFAR-shaped batch of ``--batch-size`` (the paper's 1024 is too slow for a
shared CPU; pass --batch-size 1024 to match it). Iterative / mask methods run to their native
``target_sparsity`` = ``--sparsity``. Writes a JSON of the evidence (machine, settings, every
timing) to benchmarks/results/mask_time.json.

    python benchmarks/mask_time.py                      # defaults: resnet20 vgg19, 3 runs, 1 thread
    python benchmarks/mask_time.py --models resnet20 --methods yopo synflow --runs 5

Paper, Table 8 (GPU, their implementations): YOPO 40-600x faster than NPB/PHEW, ~14x than SynFlow.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yopo  # noqa: E402
from yopo.methods import native_sparsity  # noqa: E402
from yopo.models import get_model  # noqa: E402

TARGETED = {"synflow", "iter_snip", "xnet", "rreg", "phew", "npb"}
BATCHED = {"snip", "grasp", "prospr", "iter_snip"}


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_method(model, method, sparsity, batch, batch_size, runs, max_seconds):
    opts = {}
    if method in TARGETED:
        opts["target_sparsity"] = sparsity
    if method in BATCHED:
        opts["batch_size"] = batch_size
    data = None if yopo.get_method(method).data_free else batch
    times, info = [], {}
    for r in range(runs):
        t0 = time.perf_counter()
        scores = yopo.score(model, method, seed=0, data=data, **opts)
        masks = yopo.calibrate(scores, sparsity, mode="global")
        times.append(time.perf_counter() - t0)
        if r == 0:
            info = {"options": opts, "sparsity_after_calibration": yopo.sparsity(masks),
                    "native_sparsity": native_sparsity(scores) if method in TARGETED else None}
            if times[0] > max_seconds:
                break
    return times, info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="*", default=["resnet20", "vgg19"])
    p.add_argument("--methods", nargs="*", default=None, help="default: every registered method")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=60.0, help="do not repeat a method slower than this")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "mask_time.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    warnings.simplefilter("ignore")
    methods = a.methods or yopo.available_methods()
    if "yopo" not in methods:
        methods = ["yopo"] + methods
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(a.batch_size, 3, 32, 32, generator=g), torch.randint(0, 10, (a.batch_size,), generator=g))
    result = {
        "machine": {"cpu": _cpu_name(), "cores_visible": os.cpu_count(), "torch_threads": a.threads,
                    "torch": torch.__version__, "python": platform.python_version(), "device": "cpu"},
        "settings": {"sparsity": a.sparsity, "runs": a.runs, "batch_size": a.batch_size,
                     "max_seconds": a.max_seconds, "statistic": "median", "timed": "score + calibrate(global)"},
        "models": {},
    }
    for model_name in a.models:
        torch.manual_seed(0)
        model = get_model(model_name, num_classes=10)
        n = sum(l.numel for l in yopo.prunable_layers(model))
        rows = {}
        for method in methods:
            times, info = time_method(model, method, a.sparsity, batch, a.batch_size, a.runs, a.max_seconds)
            rows[method] = {"times_s": times, "median_s": statistics.median(times), **info}
            print(f"{model_name:9s} {method:10s} median {rows[method]['median_s']:9.3f} s over {len(times)} run(s)",
                  flush=True)
        base = rows["yopo"]["median_s"]
        for r in rows.values():
            r["ratio_to_yopo"] = r["median_s"] / base
        result["models"][model_name] = {"prunable_weights": n, "methods": rows}
        print(f"\n{model_name} ({n} prunable weights), time / YOPO time (median, sparsity {a.sparsity}):")
        for method, r in sorted(rows.items(), key=lambda kv: kv[1]["median_s"]):
            print(f"  {method:10s} {r['median_s']:9.3f} s  {r['ratio_to_yopo']:8.2f}x")
        print()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
