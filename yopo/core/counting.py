"""Parameter and FLOP counts, dense and after masking, per layer and in total.

FLOPs are forward-pass FLOPs for ONE sample as counted by ``torch.utils.flop_counter`` (one
multiply-add = 2 FLOPs; convolutions and matrix products only, which dominate). The masked FLOPs
of a prunable layer are its dense FLOPs times the density of its weight (kept / total); other
counted ops keep their dense FLOPs. The projections of ``nn.MultiheadAttention`` (``in_proj_weight``
and ``out_proj``) run inside its forward: their FLOPs are the module's weight products split in
proportion to the weights' sizes (exact for self-attention).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .layers import prunable_layers
from .masks import get_masks


@dataclass
class LayerCount:
    name: str  # parameter name of the weight, e.g. "layer1.0.conv1.weight"
    params: int
    params_kept: int
    flops: int
    flops_kept: float

    @property
    def density(self) -> float:
        return self.params_kept / self.params if self.params else 1.0


@dataclass
class Counts:
    """Totals over the whole model plus one :class:`LayerCount` per prunable layer."""

    params: int  # every parameter of the model (biases and norm layers included)
    params_kept: int  # params minus pruned weights
    flops: int
    flops_kept: int
    layers: list[LayerCount] = field(default_factory=list)

    @property
    def sparsity(self) -> float:
        """Fraction of prunable weights pruned."""
        total = sum(l.params for l in self.layers)
        return 1.0 - sum(l.params_kept for l in self.layers) / total if total else 0.0

    def as_dict(self) -> dict:
        return {"params": self.params, "params_kept": self.params_kept, "flops": self.flops,
                "flops_kept": self.flops_kept, "sparsity": self.sparsity,
                "layers": [{"name": l.name, "params": l.params, "params_kept": l.params_kept, "flops": l.flops,
                            "flops_kept": l.flops_kept, "density": l.density} for l in self.layers]}


def count_params(model: nn.Module, masks: dict[str, torch.Tensor] | None = None) -> tuple[int, int]:
    """(all parameters, parameters kept); ``masks`` defaults to the masks applied to ``model``."""
    masks = get_masks(model) if masks is None else masks
    total = sum(p.numel() for p in model.parameters())
    pruned = sum(int((~m.bool()).sum()) for m in masks.values())
    return total, total - pruned


def _op_flops(model: nn.Module, example: torch.Tensor) -> dict[str, dict[str, int]]:
    """Dense forward FLOPs per module name ("" = whole model) and per aten op, for ``example``.
    Runs in eval mode, restores the mode."""
    from torch.utils.flop_counter import FlopCounterMode
    was = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        # with grad enabled: in eval mode under no_grad, nn.TransformerEncoderLayer and
        # nn.MultiheadAttention take fused fast paths whose FLOPs the counter does not see
        with torch.enable_grad(), FlopCounterMode(display=False) as fc:
            model(example)
    finally:
        for m, t in was:
            m.train(t)
    out: dict[str, dict[str, int]] = {}
    for key, ops in fc.get_flop_counts().items():
        if key == "Global":
            path = ""
        else:  # "<RootClass>.<module path>" or "<RootClass>"
            _, _, path = key.partition(".")
            if not path:
                continue
        acc = out.setdefault(path, {})
        for op, n in ops.items():
            acc[str(op)] = acc.get(str(op), 0) + int(n)
    out.setdefault("", {})
    return out


def module_flops(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Dense forward FLOPs per module name ("" = whole model) for the input ``example``
    (a batch; divide by its size for per-sample counts). Runs in eval mode, restores the mode."""
    return {k: sum(v.values()) for k, v in _op_flops(model, example).items()}


# products of a weight with activations; MultiheadAttention runs its projections through these
# inside its own forward (out_proj is never called as a module), its attention products are bmm/sdpa
_WEIGHT_OPS = ("aten.mm", "aten.addmm", "aten.linear")


def _mha_flops(model: nn.Module, ops: dict[str, dict[str, int]]) -> dict[str, float]:
    """FLOPs of each projection weight of every ``nn.MultiheadAttention``: the module's
    weight-activation products split in proportion to the weights' sizes (exact for
    self-attention, where q, k, v and the output run over the same tokens)."""
    out: dict[str, float] = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.MultiheadAttention):
            continue
        proj = {f"{name}.{a}" if name else a: getattr(mod, a)
                for a in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
                if isinstance(getattr(mod, a, None), torch.Tensor)}
        proj[f"{name}.out_proj.weight" if name else "out_proj.weight"] = mod.out_proj.weight
        total = sum(ops.get(name, {}).get(op, 0) for op in _WEIGHT_OPS)
        size = sum(w.numel() for w in proj.values())
        for pname, w in proj.items():
            out[pname] = total * w.numel() / size
    return out


def count(model: nn.Module, example: torch.Tensor | tuple[int, ...], masks: dict[str, torch.Tensor] | None = None,
          exclude=()) -> Counts:
    """Params and per-sample forward FLOPs, dense and masked, per prunable layer and total.

    ``example``: an input batch, or a per-sample input shape such as ``(3, 32, 32)`` (a zero batch
    of 2 on the model's device is then used). ``masks`` defaults to the masks applied to ``model``.
    """
    masks = get_masks(model) if masks is None else {k: v.bool() for k, v in masks.items()}
    if not isinstance(example, torch.Tensor):
        p = next(model.parameters())
        example = torch.zeros((2, *example), device=p.device, dtype=p.dtype)
    n = example.shape[0]
    ops = _op_flops(model, example)
    per_module = {k: sum(v.values()) for k, v in ops.items()}
    mha = _mha_flops(model, ops)
    total_flops = per_module[""] / n
    layers, saved = [], 0.0
    for l in prunable_layers(model, exclude=exclude):
        m = masks.get(l.name)
        kept = int(m.sum()) if m is not None else l.numel
        fl = (mha[l.name] if l.name in mha else per_module.get(l.module_name, 0)) / n
        fk = fl * kept / l.numel
        saved += fl - fk
        layers.append(LayerCount(l.name, l.numel, kept, int(round(fl)), fk))
    params, params_kept = count_params(model, masks)
    return Counts(params, params_kept, int(round(total_flops)), int(round(total_flops - saved)), layers)
