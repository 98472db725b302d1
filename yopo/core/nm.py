"""N:M semi-structured masks: exactly N entries kept in every group of M consecutive weights along
the input dimension, chosen by the scores of any registered method (or a stored family).

Where the groups run (what the hardware expects). Sparse tensor cores (NVIDIA Ampere and later,
``torch.sparse.to_sparse_semi_structured``) compress the *reduction* dimension of a matrix
product, the input dimension of a layer:

* ``Linear`` weight (out, in): groups of M consecutive entries of each row (the last dim).
* ``Conv1d/2d/3d`` weight (out, in, *k): a convolution runs as an implicit GEMM whose reduction
  index is (kernel position, input channel) with the input channel fastest (channels-last), so a
  group is M consecutive *input channels* at one output channel and one kernel position:
  ``w[o, c:c+M, kh, kw]`` (as NVIDIA's ASP does). Grouped convs use their per-group in-channels
  ``in_channels / groups`` (the weight's dim 1).

The input dimension must be divisible by M. Otherwise :func:`nm_calibrate` raises a one-line
error naming the layer, its size and M, unless ``indivisible="dense"`` leaves such layers dense
(listed in the result's ``dense``; the achieved sparsity then counts them as kept).

Exactness and order: within a group the entries are ranked by score, higher first, ties to the
lower input index (a stable sort), and the first N are kept. The rank does not depend on N, so
for a fixed M the masks are nested: 1:4 inside 2:4 inside 3:4. Same scores -> same mask bytes.
Sparsity over the patterned layers is exactly 1 - N/M.

Min-keep: the pattern itself is the survival guarantee: every row keeps exactly N/M of its
entries (at least N >= 1), so ``min_keep`` of unstructured calibration (<= N * in / M per row) is
always met and is not an option here; ``col_keep`` has no N:M meaning and is not offered.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from .validate import check_choice

INDIVISIBLE = ("error", "dense")


@dataclass(frozen=True)
class NMPattern:
    """N kept out of every M consecutive input entries (1 <= N < M)."""

    n: int
    m: int

    def __post_init__(self):
        if isinstance(self.n, bool) or isinstance(self.m, bool) or not isinstance(self.n, int) \
                or not isinstance(self.m, int) or not 1 <= self.n < self.m:
            raise ValueError(f"pattern {self.n}:{self.m} is not allowed; use N:M with integers 1 <= N < M "
                             f"(e.g. 2:4)")

    @classmethod
    def parse(cls, pattern) -> "NMPattern":
        """``"2:4"``, ``(2, 4)`` or an :class:`NMPattern`."""
        if isinstance(pattern, NMPattern):
            return pattern
        if isinstance(pattern, str):
            hit = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", pattern)
            if hit is None:
                raise ValueError(f"pattern={pattern!r} is not allowed; use 'N:M' with integers 1 <= N < M (e.g. '2:4')")
            return cls(int(hit.group(1)), int(hit.group(2)))
        if isinstance(pattern, (tuple, list)) and len(pattern) == 2:
            return cls(*pattern)
        raise ValueError(f"pattern={pattern!r} is not allowed; use 'N:M' with integers 1 <= N < M (e.g. '2:4')")

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


@dataclass
class NMCalibration:
    """N:M masks (bool, the weights' shapes) plus what was kept and which layers were left dense."""

    masks: dict[str, torch.Tensor]
    pattern: NMPattern
    kept: int
    total: int
    dense: tuple[str, ...] = ()  # layers left dense (input dim not divisible by M, indivisible="dense")
    target: float = field(init=False)

    def __post_init__(self):
        self.target = self.pattern.sparsity

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / self.total


def groups_view(t: torch.Tensor, m: int) -> torch.Tensor:
    """(out, in, *k) -> (out * prod(k) * in / m, m): rows are the N:M groups (see module doc).
    A copy for convs (the input channel is moved last); :func:`from_groups` inverts it."""
    moved = t.movedim(1, -1) if t.dim() > 2 else t
    return moved.reshape(-1, m)


def from_groups(g: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`groups_view` for a weight of ``shape``."""
    if len(shape) > 2:
        moved = (shape[0], *shape[2:], shape[1])
        return g.reshape(moved).movedim(-1, 1).contiguous()
    return g.reshape(shape)


def group_ranks(scores: torch.Tensor, m: int) -> torch.Tensor:
    """Rank (0 = best) of every entry within its group of ``m``: higher score first, ties to the
    lower input index. Same shape as ``scores`` (int64)."""
    g = groups_view(scores.detach().float(), m)
    order = torch.sort(g, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(m, device=g.device).expand_as(order))
    return from_groups(ranks, tuple(scores.shape))


def _input_dim(shape: tuple[int, ...]) -> int:
    return shape[1] if len(shape) >= 2 else shape[0]


def _indivisible_error(name: str, d: int, pat: NMPattern) -> ValueError:
    return ValueError(f"layer {name!r}: input dimension {d} is not divisible by M={pat.m} (pattern {pat}); leave "
                      f"such layers dense with indivisible='dense' (--nm-indivisible dense) or exclude the layer")


def check_divisible(shapes: dict[str, tuple[int, ...]], pattern) -> None:
    """Raise the one-line error of :func:`nm_calibrate` for the first layer (name -> weight shape)
    whose input dimension is not divisible by M (a check before scoring)."""
    pat = NMPattern.parse(pattern)
    for name, shape in shapes.items():
        if _input_dim(tuple(shape)) % pat.m:
            raise _indivisible_error(name, _input_dim(tuple(shape)), pat)


def nm_calibrate(scores, pattern, *, indivisible: str = "error") -> NMCalibration:
    """N:M masks from ``scores`` ({parameter name: tensor of the weight's shape}, higher = keep)
    or a :class:`yopo.Family` (its stored scores: no rescoring). ``pattern``: ``"2:4"`` etc.
    ``indivisible``: ``"error"`` (default) or ``"dense"`` for layers whose input dimension is not
    divisible by M."""
    pat = NMPattern.parse(pattern)
    check_choice("indivisible", indivisible, INDIVISIBLE)
    scores = getattr(scores, "scores", scores)  # a Family
    if not isinstance(scores, dict) or not scores:
        raise ValueError("scores must be a non-empty dict {parameter name: tensor} or a Family")
    masks, dense, kept, total = {}, [], 0, 0
    for name, s in scores.items():
        if not isinstance(s, torch.Tensor) or s.dim() < 2:
            raise ValueError(f"scores[{name!r}] must be a weight-shaped tensor (out, in, ...); got "
                             f"{tuple(getattr(s, 'shape', ()))}")
        if not torch.isfinite(s).all():
            raise ValueError(f"scores[{name!r}] has NaN or Inf entries; scores must be finite")
        d = _input_dim(tuple(s.shape))
        total += s.numel()
        if d % pat.m:
            if indivisible == "error":
                raise _indivisible_error(name, d, pat)
            masks[name] = torch.ones_like(s, dtype=torch.bool)
            dense.append(name)
            kept += s.numel()
            continue
        masks[name] = group_ranks(s, pat.m) < pat.n
        kept += s.numel() * pat.n // pat.m
    return NMCalibration(masks, pat, kept, total, tuple(dense))


def nm_masks(scores, pattern, *, indivisible: str = "error") -> dict[str, torch.Tensor]:
    """Boolean N:M masks {name: BoolTensor}; see :func:`nm_calibrate`."""
    return nm_calibrate(scores, pattern, indivisible=indivisible).masks


def is_nm(t: torch.Tensor, pattern) -> bool:
    """True when every group of M consecutive input entries of ``t`` (a mask or a weight) has at
    most N nonzeros (the condition sparse tensor cores need)."""
    pat = NMPattern.parse(pattern)
    if _input_dim(tuple(t.shape)) % pat.m:
        return False
    return bool(((groups_view(t, pat.m) != 0).sum(dim=1) <= pat.n).all())


# --- export: 2:4 Linear weights as torch.sparse semi-structured tensors (sparse tensor cores) ---

SEMI_STRUCTURED_DTYPES = ("float16", "bfloat16")


class SemiStructuredUnavailable(RuntimeError):
    """This machine cannot hold semi-structured sparse tensors (no CUDA GPU of compute capability
    8.0 or newer)."""


def semi_structured_unavailable(device=None) -> str | None:
    """Why ``torch.sparse.to_sparse_semi_structured`` cannot run on ``device`` (one line), or
    ``None`` when it can (a CUDA GPU of compute capability >= 8.0: Ampere, Hopper, ...)."""
    if device is not None and torch.device(device).type != "cuda":
        return f"semi-structured sparse tensors need a CUDA device; got device={str(device)!r}"
    if not torch.cuda.is_available():
        return ("semi-structured sparse tensors (torch.sparse.to_sparse_semi_structured) need a CUDA GPU of "
                "compute capability >= 8.0; this machine has no CUDA GPU")
    cap = torch.cuda.get_device_capability(device)
    if cap < (8, 0):
        return (f"semi-structured sparse tensors need compute capability >= 8.0; "
                f"{torch.cuda.get_device_name(device)} has {cap[0]}.{cap[1]}")
    return None


@torch.no_grad()
def to_semi_structured(model, *, dtype: str = "float16", device="cuda"):
    """Bake ``model`` (masks removed, pruned weights 0) and convert every ``Linear`` weight that
    is 2:4 sparse along its input dimension to a semi-structured sparse tensor, on ``device`` in
    ``dtype`` (float16 or bfloat16, what the kernels take). Convolutions stay dense (PyTorch has
    no semi-structured conv). Returns (model, {linear name: "2:4 sparse" or why it stayed dense}).
    Raises :class:`SemiStructuredUnavailable` (one line) where the device cannot do it."""
    from torch import nn
    from torch.sparse import to_sparse_semi_structured

    from .masks import remove_masks

    check_choice("dtype", dtype, SEMI_STRUCTURED_DTYPES)
    reason = semi_structured_unavailable(device)
    if reason is not None:
        raise SemiStructuredUnavailable(reason)
    remove_masks(model)
    model.to(device=device, dtype=getattr(torch, dtype)).eval()
    report = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        w = module.weight.detach()
        if not is_nm(w, "2:4"):
            report[name] = "dense: weight is not 2:4 along its input dimension"
            continue
        try:
            module.weight = nn.Parameter(to_sparse_semi_structured(w.contiguous()), requires_grad=False)
        except RuntimeError as e:  # shape/dtype constraints of the kernels, reported per layer
            report[name] = "dense: " + str(e).strip().split("\n")[0]
            continue
        report[name] = "2:4 sparse"
    return model, report
