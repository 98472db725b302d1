"""Shared helpers of the benchmarks: environment line, models, timing."""
from __future__ import annotations

import os

# Passive OpenMP waiting, set before torch starts its OpenMP pool: on a shared CPU, spinning
# threads of small GEMMs slow each other down by up to 10x. YOPO_BENCH_OMP_DEFAULT=1 keeps the
# OpenMP default instead (results are then written with an "_ompdefault" suffix).
OMP_DEFAULT = os.environ.get("YOPO_BENCH_OMP_DEFAULT") == "1"
if not OMP_DEFAULT:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

import torch  # noqa: E402


def env() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "loadavg_at_start": load}


def model_weights(name: str) -> dict[str, torch.Tensor]:
    """Prunable weights of a freshly initialized model (seed 0; no download)."""
    from yopo.core.layers import get_weight, prunable_layers
    torch.manual_seed(0)
    if name == "resnet50":
        import torchvision
        model = torchvision.models.resnet50()  # weights=None: random init, nothing downloaded
    else:
        from yopo.models import get_model
        model = get_model(name, num_classes=10)
    return {l.name: get_weight(model, l.name).detach().clone() for l in prunable_layers(model)}


def timed(fn, runs: int):
    """(median seconds, all seconds, last result)."""
    ts, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), ts, out


def save(name: str, obj) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    if OMP_DEFAULT:
        name = name.replace(".json", "_ompdefault.json")
    p = RESULTS / name
    p.write_text(json.dumps(obj, indent=2) + "\n")
    return p


def mask_agreement(a: dict, b: dict) -> float:
    same = sum(int((a[n] == b[n]).sum()) for n in a)
    return same / sum(a[n].numel() for n in a)
