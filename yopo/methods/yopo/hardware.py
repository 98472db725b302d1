"""What the hardware computes natively, detected once per process.

Reduced-precision storage of |W| only pays where the matrix units compute in that precision:
on a CPU without bf16 instructions, PyTorch emulates a bfloat16 GEMM and the NMF ran 13x slower
than in float32 (VGG-19, AVX2 EPYC: 125.9 s vs 9.7 s). :func:`storage_dtype` therefore keeps the
requested reduced precision only where it is native (CPU flags such as ``avx512_bf16`` /
``amx_bf16``, CUDA compute capability) and otherwise falls back to float32 with a one-line
warning. Where neither flags nor a capability tell (a CPU whose flags cannot be read), one small
product is timed in both precisions and the answer is cached for the process.

:func:`fused_kernel` returns the numba-compiled MU kernel (``kernel.py``) or None where numba
is not installed.
"""
from __future__ import annotations

import functools
import time
import warnings
from pathlib import Path

import torch

# CPU feature flags (as in /proc/cpuinfo) that give native GEMM arithmetic per storage dtype
NATIVE_CPU_FLAGS = {
    "bfloat16": ("avx512_bf16", "amx_bf16"),
    "float16": ("avx512_fp16", "amx_fp16"),
}
# minimum CUDA compute capability with tensor-core GEMMs in that dtype
NATIVE_CUDA_CAPABILITY = {"bfloat16": (8, 0), "float16": (7, 0)}
_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@functools.lru_cache(maxsize=None)
def cpu_info() -> tuple[str, frozenset[str] | None]:
    """(CPU model name, set of feature flags), read once from /proc/cpuinfo; flags are None where
    that file does not exist (macOS, Windows) or cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown", None
    model, flags = "unknown", None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key in ("flags", "Features") and flags is None:  # x86 / ARM
            flags = frozenset(value.split())
    return model, flags


@functools.lru_cache(maxsize=None)
def _timed_native(dtype_name: str) -> bool:
    """True if a skinny product (the NMF's shape) in ``dtype_name`` is not slower than in float32.

    Used only where the flags are unknown. Best of 5 for each, one thread, ~50 ms in all."""
    dtype = _TORCH_DTYPES[dtype_name]
    g = torch.Generator().manual_seed(0)
    W = torch.rand(512, 2048, generator=g)
    H = torch.rand(2048, 8, generator=g)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = {}
        for dt in (torch.float32, dtype):
            a, b = W.to(dt), H.to(dt)
            best = float("inf")
            for _ in range(5):
                t = time.perf_counter()
                for _ in range(4):
                    a @ b
                best = min(best, time.perf_counter() - t)
            times[dt] = best
    finally:
        torch.set_num_threads(old)
    return times[dtype] <= times[torch.float32]


def native_low_precision(dtype_name: str, device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` computes GEMMs in ``dtype_name`` ("bfloat16" / "float16") natively.

    CUDA: compute capability >= 8.0 for bfloat16, >= 7.0 for float16. CPU: one of the flags in
    ``NATIVE_CPU_FLAGS``; if the flags cannot be read, a small product is timed once (cached).
    Other devices (mps, xpu, ...): assumed native (they have no emulated path to avoid).
    """
    if dtype_name == "float32":
        return True
    if dtype_name not in NATIVE_CPU_FLAGS:
        raise ValueError(f"dtype={dtype_name!r} is not allowed; choose one of {['float32', *NATIVE_CPU_FLAGS]}")
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= NATIVE_CUDA_CAPABILITY[dtype_name]
    if device.type != "cpu":
        return True
    flags = cpu_info()[1]
    if flags is None:
        return _timed_native(dtype_name)
    return any(f in flags for f in NATIVE_CPU_FLAGS[dtype_name])


def storage_dtype(requested: str, device: torch.device | str = "cpu") -> str:
    """The dtype |W| is actually stored in during the NMF: ``requested`` where the device computes
    it natively, else "float32" with a one-line warning (an emulated bf16 GEMM is ~13x slower)."""
    if requested == "float32" or native_low_precision(requested, device):
        return requested
    device = torch.device(device)
    where = (f"CUDA capability {torch.cuda.get_device_capability(device)}" if device.type == "cuda"
             else f"this CPU ({cpu_info()[0]}; none of the flags {list(NATIVE_CPU_FLAGS[requested])})")
    warnings.warn(f"storage_dtype={requested!r} is not computed natively on {where}: using float32 "
                  "(emulated reduced-precision products are many times slower)", RuntimeWarning, stacklevel=2)
    return "float32"


@functools.lru_cache(maxsize=None)
def fused_kernel():
    """The compiled fused MU kernel module (``yopo.methods.yopo.kernel``), or None without numba.

    A numba that is installed but cannot be used (e.g. no writable cache location, numba raises
    RuntimeError when the module defines its cached functions) gives None with a warning."""
    try:
        from . import kernel
    except ImportError:
        return None
    except RuntimeError as e:
        warnings.warn(f"the fused NMF kernel is unavailable ({e}); using the torch engine", RuntimeWarning,
                      stacklevel=2)
        return None
    return kernel
