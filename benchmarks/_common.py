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


# CPU flags that decide which arithmetic is native (recorded with every figure)
FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "amx_tile",
                     "asimd", "bf16", "sve")


def env() -> dict:
    """The machine a figure comes from: CPU model and the flags that matter, cores, load, versions."""
    from yopo.methods.yopo.hardware import cpu_info, fused_kernel

    cpu, flags = cpu_info()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    k = fused_kernel()
    numba_version = None
    if k is not None:
        import numba
        numba_version = numba.__version__
    return {"cpu": cpu, "cpu_flags": sorted(f for f in FLAGS_OF_INTEREST if flags and f in flags),
            "cores": os.cpu_count(), "torch": torch.__version__, "numba": numba_version,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "loadavg_at_start": load}


def env_line(info: dict) -> str:
    return (f"# {info['cpu']} (flags: {' '.join(info['cpu_flags']) or 'none of interest'}), {info['cores']} cores, "
            f"torch {info['torch']}, numba {info['numba']}, {info['threads']} threads, "
            f"OMP_WAIT_POLICY={info['omp_wait_policy']}, load {info['loadavg_at_start']}")


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


def save(name: str, obj, draft: bool = False) -> Path:
    """Write the evidence JSON; ``draft`` (``--quick`` runs) adds a ``_draft`` suffix so a quick or
    contended run never overwrites a committed result."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    if OMP_DEFAULT:
        name = name.replace(".json", "_ompdefault.json")
    if draft:
        name = name.replace(".json", "_draft.json")
    p = RESULTS / name
    from yopo.core.io import write_text
    write_text(p, json.dumps(obj, indent=2) + "\n")
    return p


def read_seconds(W: torch.Tensor, runs: int = 30) -> float:
    """Best time of one cached read of W (``W.sum()`` after a warm-up; W stays in cache when it fits)."""
    W.sum()
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        W.sum()
        best = min(best, time.perf_counter() - t)
    return best


def mask_agreement(a: dict, b: dict) -> float:
    same = sum(int((a[n] == b[n]).sum()) for n in a)
    return same / sum(a[n].numel() for n in a)
