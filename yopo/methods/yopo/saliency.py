"""YOPO's once-only saliency: S = | |W| - VH | from a rank-r NMF of each layer's |W| (Sec. 3.2)."""
from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

import torch

from ...core.config import opt, sparsity_rule, validate_fields
from ...core.layers import flat
from ...core.progress import track
from . import hardware
from .nmf import INITS, LOSSES, SOLVERS, get_update, init_factors

NORMALIZE = ("none", "median")
FULL_RANK = ("clip", "magnitude", "reduce")
RESIDUAL_SCALE = ("none", "layer_rms", "weight_mean")
PATHS_STRUCTURES = ("flow", "spread", "spread_flow", "auto")
PATHS_FLOW_WEIGHTS = ("auto", "scale", "magnitude")
PATHS_COVER = ("auto", "rows", "units")


class RankWarning(UserWarning):
    """A layer whose NMF rank reaches min(out, in): the NMF can fit |W| exactly, so its residual is
    rounding noise, not a saliency."""


def _check_fraction(name: str, value) -> None:
    from ...core.validate import check_float

    v = check_float(name, value, 0.0)
    if v >= 1.0:
        raise ValueError(f"{name}={value!r} is out of range; allowed: 0 <= {name} < 1 (0 = use --rank)")
STORAGE_DTYPES = ("float32", "bfloat16", "float16")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
KERNELS = ("auto", "fused", "torch")
# The fused kernel (kernel.py) serves float32 MU batches of at least this many entries under
# kernel="auto". Smaller models never load numba (importing it, its initialization and the cached
# kernel cost 1-3 s once per process, far more than all of ResNet-20's NMF).
FUSED_MIN_ELEMS = 1 << 18
# fast=True: AMU for this many passes over W instead of MU-200 (benchmarks/solvers.py: AMU reaches
# MU-200's objective within 15-20 passes on ResNet-20, VGG-19 and ResNet-50)
FAST_SOLVER = "amu"
FAST_PASSES = 20


def _check_combinations(cfg: "YopoConfig") -> None:
    """The cross-field rules (single-field rules are declared on the fields)."""
    if not cfg.paths:
        idle = [f"{k}={getattr(cfg, k)!r}" for k, v in (("paths_target", None), ("paths_rounds", 100),
                                                          ("input_shape", ()), ("paths_structure", "flow"),
                                                          ("paths_flow_weights", "auto"), ("paths_cover", "auto"))
                if getattr(cfg, k) != v]
        if idle:
            raise ValueError(f"{', '.join(idle)} act only with paths=True (--paths)")
    elif cfg.paths_structure == "spread" and cfg.paths_rounds != 100:
        raise ValueError(f"paths_rounds={cfg.paths_rounds!r} acts only on the path flow; paths_structure='spread' "
                         f"runs no rounds (use paths_structure='flow' or 'auto')")
    elif cfg.paths_structure == "spread" and cfg.paths_flow_weights != "auto":
        raise ValueError(f"paths_flow_weights={cfg.paths_flow_weights!r} acts only on the path flow; "
                         f"paths_structure='spread' runs no flow (use paths_structure='flow', 'spread_flow' or 'auto')")
    if cfg.paths and cfg.paths_structure == "flow" and cfg.paths_cover != "auto":
        raise ValueError(f"paths_cover={cfg.paths_cover!r} acts only on the spreading structures; "
                         f"paths_structure='flow' keeps whole units by their flow (use paths_structure='spread', "
                         f"'spread_flow' or 'auto')")
    if cfg.nmf_solver != "mu" and cfg.loss != "frobenius":
        raise ValueError(f"nmf_solver={cfg.nmf_solver!r} supports loss='frobenius' only; got loss={cfg.loss!r}")
    if cfg.fast and (cfg.nmf_solver != "mu" or cfg.iters != 200):
        raise ValueError(f"fast=True replaces MU-200 by {FAST_SOLVER} for {FAST_PASSES} passes; it cannot be "
                         f"combined with nmf_solver={cfg.nmf_solver!r}, iters={cfg.iters!r} (set those instead)")
    if cfg.kernel == "fused":
        if cfg.nmf_solver != "mu" or cfg.loss != "frobenius" or cfg.storage_dtype != "float32" or cfg.fast:
            raise ValueError("kernel='fused' runs MU with loss='frobenius' on float32 storage only; got "
                             f"nmf_solver={cfg.nmf_solver!r}, loss={cfg.loss!r}, storage_dtype="
                             f"{cfg.storage_dtype!r}, fast={cfg.fast!r}")
        if hardware.fused_kernel() is None:
            raise ValueError("kernel='fused' needs numba: pip install 'yopo[fast]' (or use kernel='auto')")


@dataclass(frozen=True)
class YopoConfig:
    """Settings of the YOPO saliency (paper defaults: rank 7, 200 MU steps, eps 1e-8). Validated
    from these declarations when built (``ValueError``/``TypeError`` naming the field)."""

    #: fields renamed so that every command spells an option the same way (old -> new); old family
    #: files and streamed runs are read through this map, and the old names get a hint in errors
    RENAMED: ClassVar[dict] = {"init": "nmf_init", "solver": "nmf_solver", "threads": "nmf_threads"}

    rank: int = opt(7, "NMF rank r (clipped to min(out, in) with a warning)", low=1)
    iters: int = opt(200, "NMF steps T (multiplicative updates; passes over W for the fast solvers)", low=1)
    nmf_init: str = opt("uniform", "NMF factor init: seeded U[0,1), nonnegative SVD, or NNDSVD with zeros filled",
                        INITS)
    loss: str = opt("frobenius", "NMF objective", LOSSES)
    normalize: str = opt("none", "divide |W| by median(|W|)+eps before the NMF", NORMALIZE)
    per_channel: bool = opt(False, "factor each output row on its own (rank --per-channel-rank)")
    per_channel_rank: int = opt(1, "rank of the per-output-channel factorization", low=1)
    eps: float = opt(1e-8, "added to every multiplicative-update denominator", low=0.0, low_open=True)
    max_batch_elems: int = opt(1 << 22, "cap on B*o*d per batched NMF call (keeps a batch in cache; memory)", low=1)
    nmf_solver: str = opt("mu", "NMF solver: mu = the paper's multiplicative updates; amu = accelerated MU, "
                          "hals = accelerated HALS (frobenius loss; --iters then counts passes over W: "
                          "hals needs ~10, amu ~15-20 to reach MU-200's objective)", SOLVERS)
    storage_dtype: str = opt("float32", "dtype |W| is stored in during the NMF (products accumulate in "
                             "float32, factors and the residual stay float32)", STORAGE_DTYPES)
    nmf_threads: int = opt(0, "intra-op CPU threads during the NMF (0 = auto: 1 for batches under 2^20 entries, "
                           "where threads only add synchronization, else torch's setting)", low=0)
    kernel: str = opt("auto", "MU implementation for float32 on CPU: fused = one pass over W per step (needs "
                      "numba, extra 'fast'; thread-count independent), torch = two batched products per step, "
                      "auto = fused for batches of >= 2^18 entries when numba is installed", KERNELS)
    rank_fraction: float = opt(0.0, "if > 0: each layer's rank is ceil(f * min(out, in)) (at least 1) instead of "
                               "--rank, so small layers are not fit at full rank and wide ones get a rank that "
                               "grows with them", check=_check_fraction)
    full_rank: str = opt("clip", "a layer whose rank reaches min(out, in) (the NMF fits |W| exactly: its residual is "
                         "rounding noise): clip = the paper's (rank min(out, in), with a warning), magnitude = "
                         "score it by |W| (the rank-0 limit, Prop. 1a), reduce = rank min(out, in) - 1", FULL_RANK)
    residual_scale: str = opt("none", "divide each layer's residual by its RMS (layer_rms) or by the mean of its |W| "
                              "(weight_mean), so residuals compare across layers under a pooled allocation",
                              RESIDUAL_SCALE)
    paths: bool = opt(False, "connect the kept weights end to end: after the NMF, prune a linearized copy of the "
                      "net in --paths-rounds rounds to --paths-target, keeping the weights on the most input-output "
                      "paths (SynFlow's flow on |W|, conserved layer by layer, so no layer collapses), the YOPO "
                      "residual breaking ties among equivalent weights; one family serves every sparsity up to "
                      "the target (nested)")
    paths_target: float | None = opt(None, "with --paths: the sparsity the path flow prunes to (default: the "
                                     "calibration target; a family re-thresholded to lower sparsities gives the "
                                     "flow's earlier rounds, nested)", check=sparsity_rule)
    paths_rounds: int = opt(100, "with --paths: pruning rounds of the path flow", low=1, high=120)
    paths_structure: str = opt("flow", "with --paths: flow = the path flow (the budget concentrates on few units, "
                               "each connected end to end with many inputs); spread = every unit keeps inputs "
                               "(Erdos-Renyi-Kernel layer densities, each output row its equal share, ranked by "
                               "the residual); spread_flow = spread at the flow's layer densities instead of "
                               "ERK's; auto = spread_flow if every layer but the last is followed by a "
                               "normalization (its weight scale does not set the output's scale: fan-in cannot "
                               "starve a unit's signal), else flow", PATHS_STRUCTURES)
    paths_flow_weights: str = opt("auto", "with --paths: the weights the path flow runs on: scale = each layer's "
                                  "mean |W| (weights of a layer differ only by their path counts, so the flow's "
                                  "own mask connects whole units end to end), magnitude = |W| (SynFlow's flow: "
                                  "weights of a layer differ, so its layer densities vary smoothly instead of in "
                                  "whole-layer blocks); auto = magnitude (until 2026-12-03: scale for the flow's own "
                                  "mask)", PATHS_FLOW_WEIGHTS)
    paths_cover: str = opt("auto", "with --paths, the spreading structures: rows = every unit keeps inputs (each "
                           "output row its share of the layer's budget); units = every unit also keeps an output "
                           "(each input channel its best weight, where the layer keeps at least one weight per row "
                           "and per input channel), so no kept weight ends at a unit that feeds nothing; auto = "
                           "units (until 2026-12-03: rows)", PATHS_COVER)
    input_shape: tuple[int, ...] = opt((), "with --paths: one input sample's shape for the flow (default: the data's, "
                                       "or guessed from the first layer)", low=1)
    fast: bool = opt(False, f"replace MU-200 by {FAST_SOLVER.upper()} for {FAST_PASSES} passes over W (reaches "
                     "MU-200's objective in about half the time; a slightly different factorization: mask "
                     "agreement ~0.98, see docs/performance.md); needs the default nmf_solver and iters")

    def __post_init__(self):
        validate_fields(self)
        _check_combinations(self)

    @staticmethod
    def target_option(opts: dict) -> str | None:
        """The path flow prunes to the calibration target (pipelines fill ``paths_target``)."""
        return "paths_target" if opts.get("paths") else None

    @staticmethod
    def uses_input_shape(opts: dict) -> bool:
        """Only the path flow runs the net on an input (pipelines fill ``input_shape`` then)."""
        return bool(opts.get("paths"))


RENAMED = YopoConfig.RENAMED


def layer_seed(seed: int, name: str) -> int:
    """A per-layer seed that depends only on the global seed and the parameter name."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63 - 1)


def residual(W: torch.Tensor, V: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """S = |W - V H| for (B, o, d) batches or single (o, d) matrices; rank 0 gives S = W.
    One (o, d) temporary: |VH - W| is computed in place (bitwise equal to |W - VH|)."""
    if V.shape[-1] == 0:
        return W.abs()
    return torch.matmul(V, H).sub_(W).abs_()


@contextlib.contextmanager
def _threads(n: int):
    """Temporarily set torch's intra-op thread count (n = 0: leave it)."""
    if n <= 0 or n == torch.get_num_threads():
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _prepare(w: torch.Tensor, name: str, cfg: YopoConfig, device=None) -> torch.Tensor:
    if not torch.isfinite(w).all():
        raise ValueError(f"weight {name!r} has NaN or Inf entries; saliency needs finite weights")
    w = w.detach()
    if device is not None:
        w = w.to(device)
    a = flat(w).abs().float()
    if cfg.normalize == "median":
        a = a / (a.flatten().kthvalue((a.numel() + 1) // 2).values + cfg.eps)
    return a


def layer_rank(name: str, o: int, d: int, cfg: YopoConfig) -> int:
    """The NMF rank used for an (o, d) layer; 0 means "score by |W|" (``full_rank='magnitude'``).

    The per-channel variant factors each row alone: a 1 x d matrix, full rank at rank 1."""
    if cfg.per_channel:
        want, top = cfg.per_channel_rank, 1
    else:
        want = max(1, math.ceil(cfg.rank_fraction * min(o, d))) if cfg.rank_fraction > 0 else cfg.rank
        top = min(o, d)
    if want < top:
        return want
    if cfg.full_rank == "magnitude":
        return 0
    if cfg.full_rank == "reduce" and top > 1:
        return top - 1
    if cfg.full_rank == "reduce":  # a single row or column: no rank below full but 0
        return 0
    bound = "1 (per-channel: one row at a time)" if cfg.per_channel else f"min(out={o}, in={d}) = {top}"
    warnings.warn(f"{name}: rank {want} >= {bound}: the NMF fits |W| exactly, so the residual "
                  f"is rounding noise, not a saliency (clipped to {top}; full_rank='magnitude' or a smaller rank "
                  f"avoids it)", RankWarning)
    return top


_SMALL = 1 << 20
# Solvers bound by the number of tensor calls on small layers: their small layers are packed into
# zero-padded batches (one call serves many shape groups). On ResNet-20, packing all 22 layers
# into one (22, 64, 576) batch took HALS (10 passes) from 0.035 s to 0.012 s and AMU to MU-200's
# objective from 0.08 s (25 passes) to 0.04 s (20 passes), but made MU-200 1.4x slower (0.13 s
# vs 0.095 s: padding triples its flops), so MU is never packed.
PACK_SOLVERS = ("hals", "amu")
PACK_MAX_ELEMS = 1 << 16  # layers of at most this many weights are packed


@dataclass(frozen=True)
class Batch:
    """Layers factored together: ``names`` with their (o, d) ``shapes``, stacked into one
    (len(names), o, d) batch at NMF rank ``rank``; a layer smaller than (o, d) is zero-padded."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, int], ...]
    o: int
    d: int
    rank: int

    @property
    def padded(self) -> bool:
        return any(s != (self.o, self.d) for s in self.shapes)


def plan_batches(shapes: dict[str, tuple[int, int]], cfg: YopoConfig) -> list[Batch]:
    """How the engine batches layers of the given (o, d) shapes: same-shape layers of the same rank
    together (at most ``cfg.max_batch_elems`` entries per batch); for the solvers in
    ``PACK_SOLVERS``, layers of at most ``PACK_MAX_ELEMS`` weights with the same rank are packed
    into zero-padded batches instead (sorted by size, so little is padding).

    Padding is exact for the factorization up to rounding: zero rows/columns of W add nothing to
    W H^T or V^T W, and the padding of V and H starts at zero (HALS then keeps it at eps, whose
    squares, ~1e-16, vanish in float32 against the Grams' entries).
    """
    groups: dict[tuple[int, int, int], list[str]] = defaultdict(list)
    for name, (o, d) in shapes.items():
        rank = layer_rank(name, o, d, cfg)
        if rank > 0:  # rank 0 (full_rank="magnitude"): no NMF, the layer is scored by |W|
            groups[(o, d, rank)].append(name)
    pack = cfg.nmf_solver in PACK_SOLVERS and not cfg.per_channel  # per-channel: rows of same-shaped layers
    batches: list[Batch] = []
    small: dict[int, list[str]] = defaultdict(list)
    for (o, d, rank), names in groups.items():
        if pack and o * d <= PACK_MAX_ELEMS:
            small[rank].extend(names)
            continue
        per = max(1, cfg.max_batch_elems // (o * d))
        for i in range(0, len(names), per):
            chunk = tuple(names[i : i + per])
            batches.append(Batch(chunk, tuple((o, d) for _ in chunk), o, d, rank))
    for rank, names in small.items():
        names = sorted(names, key=lambda n: (shapes[n][0] * shapes[n][1], shapes[n]))  # stable: ties keep order
        i = 0
        while i < len(names):
            chunk: list[str] = []
            O = D = 0
            while i < len(names):
                o, d = shapes[names[i]]
                O2, D2 = max(O, o), max(D, d)
                if chunk and (len(chunk) + 1) * O2 * D2 > cfg.max_batch_elems:
                    break
                chunk.append(names[i])
                O, D = O2, D2
                i += 1
            batches.append(Batch(tuple(chunk), tuple(shapes[n] for n in chunk), O, D, rank))
    return batches


def stack_batch(batch: Batch, mats: dict[str, torch.Tensor]) -> torch.Tensor:
    """The (B, o, d) float32 batch of ``batch`` (zero-padded where a layer is smaller)."""
    if not batch.padded:
        return mats[batch.names[0]].unsqueeze(0) if len(batch.names) == 1 else torch.stack(
            [mats[n] for n in batch.names])
    first = mats[batch.names[0]]
    W = first.new_zeros(len(batch.names), batch.o, batch.d)
    for j, (n, (o, d)) in enumerate(zip(batch.names, batch.shapes)):
        W[j, :o, :d] = mats[n]
    return W


def _use_fused(W: torch.Tensor, store: torch.dtype, cfg: YopoConfig) -> bool:
    """Whether this batch runs on the fused kernel (``kernel.py``)."""
    if cfg.kernel == "torch" or cfg.nmf_solver != "mu" or cfg.loss != "frobenius" or store != torch.float32:
        return False
    if W.device.type != "cpu" or W.dtype != torch.float32:
        if cfg.kernel == "fused":
            raise ValueError(f"kernel='fused' runs on float32 CPU tensors; got {W.dtype} on {W.device}")
        return False
    if cfg.kernel == "auto" and W.numel() < FUSED_MIN_ELEMS:
        return False
    return hardware.fused_kernel() is not None


def _factor_batch(W: torch.Tensor, rank: int, seeds: list[int], cfg: YopoConfig,
                  shapes: list[tuple[int, int]] | None = None, store: torch.dtype = torch.float32) -> torch.Tensor:
    """S = |W - VH| for a (B, o, d) float32 batch, factoring a copy stored in ``store``;
    ``shapes`` marks zero-padded members (see ``init_factors``). ``cfg`` is the effective
    configuration (``fast`` already resolved)."""
    # Small batches always run on one thread (threads only add synchronization there); on the
    # torch engine this also makes their result independent of the thread count (the fused kernel's
    # is on any count). See docs/performance.md, "Determinism".
    n = cfg.nmf_threads if cfg.nmf_threads > 0 else (1 if W.numel() < _SMALL and W.device.type == "cpu" else 0)
    if _use_fused(W, store, cfg):
        fused = hardware.fused_kernel()
        W = W.contiguous()
        V, H = init_factors(W, rank, cfg.nmf_init, seeds, shapes)
        V, H = V.contiguous(), H.contiguous()
        with _threads(n):  # the kernel runs on torch's thread count
            fused.mu_frobenius(W, V, H, cfg.iters, cfg.eps)
            return fused.residual(W, V, H)
    Ws = W if store == W.dtype else W.to(store)
    V, H = init_factors(Ws, rank, cfg.nmf_init, seeds, shapes)
    with _threads(n):
        get_update(cfg.loss, cfg.nmf_solver)(Ws, V, H, cfg.iters, cfg.eps)
        del Ws
        return residual(W, V, H)


def effective_config(cfg: YopoConfig) -> YopoConfig:
    """``cfg`` with ``fast`` resolved into the solver and passes it stands for."""
    if cfg.fast:
        return dataclasses.replace(cfg, fast=False, nmf_solver=FAST_SOLVER, iters=FAST_PASSES)
    return cfg


def yopo_saliency(weights: dict[str, torch.Tensor], cfg: YopoConfig, seed: int = 0,
                  device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Saliency for each named weight (any shape (o, ...)); returns float32 tensors of the same
    shapes on ``device`` (default: each weight's device), computed there.

    Layers are factored in batches (``plan_batches``): same-shaped layers together with batched
    matrix products (at most ``cfg.max_batch_elems`` entries per batch, so a batch stays
    cache-resident), small layers packed for call-bound solvers; each layer keeps its own seeded
    init, so batching does not change its factors.
    """
    cfg = effective_config(cfg)
    mats: dict[str, torch.Tensor] = {}
    for name, w in weights.items():
        dev = torch.device(device) if device is not None else w.device
        mats[name] = _prepare(w, name, cfg, dev)
    # reduced precision only where the device computes it natively (else float32, one warning)
    stores = {dev: _DTYPES[hardware.storage_dtype(cfg.storage_dtype, dev)]
              for dev in {a.device for a in mats.values()}}

    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for b in track(plan_batches({n: tuple(a.shape) for n, a in mats.items()}, cfg), "YOPO saliency", "layer",
                       weight=lambda b: len(b.names)):  # a bar on a terminal (yopo.core.progress)
            if cfg.per_channel:
                # each output row is its own 1 x d matrix: the batch is the rows of the layer(s)
                o = b.o
                W = torch.cat([mats[n] for n in b.names]).unsqueeze(1)  # (len*o, 1, d)
                seeds = [layer_seed(layer_seed(seed, n), str(row)) for n in b.names for row in range(o)]
                S = _factor_batch(W, b.rank, seeds, cfg, store=stores[W.device]).squeeze(1)
                for j, n in enumerate(b.names):
                    out[n] = S[j * o : (j + 1) * o].reshape(weights[n].shape)
                continue
            W = stack_batch(b, mats)
            S = _factor_batch(W, b.rank, [layer_seed(seed, n) for n in b.names], cfg,
                              list(b.shapes) if b.padded else None, store=stores[W.device])
            for j, (n, (o, d)) in enumerate(zip(b.names, b.shapes)):
                out[n] = S[j, :o, :d].reshape(weights[n].shape)
        for n, a in mats.items():
            if n not in out:  # rank 0 (full_rank="magnitude"): the residual of an empty template is |W|
                out[n] = a.clone().reshape(weights[n].shape)
            if cfg.residual_scale == "layer_rms":
                out[n] = out[n] / out[n].pow(2).mean().sqrt().clamp_min(1e-30)
            elif cfg.residual_scale == "weight_mean":
                out[n] = out[n] / a.mean().clamp_min(1e-30)
    return {n: out[n] for n in weights}
