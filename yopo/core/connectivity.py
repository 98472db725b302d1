"""Connectivity of a masked network: which kept weights lie on some input-to-output path.

A kept weight that no input can reach, or whose output reaches no logit, is dead weight: it
counts as kept but cannot change the function. The *effective sparsity* (Vysogorets & Kempe,
"Connectivity matters", 2023) counts such weights as pruned.

How it is computed (one forward and one backward pass, any architecture that runs on a
nonnegative input): a copy of the model in float64 where every prunable weight is its mask scaled
by 1 / (mean kept fan-in of its layer) (any positive scale keeps the set of paths, and this one
keeps activations near 1 so deep nets neither overflow nor underflow), every other weight is
|w|, biases are 0, normalization layers are the identity and max-pooling is average pooling (a
max picks one input per window and would hide the others' paths). On an all-ones input, a unit's
activation is positive iff some input path reaches it, and d(sum of outputs)/d w_ij > 0 iff unit
j is reached from the input and unit i reaches an output. So a kept weight is effective iff its
gradient is nonzero.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .layers import PRUNABLE_TYPES, get_weight
from .validate import name_list

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
_MAXPOOL = {nn.MaxPool1d: nn.AvgPool1d, nn.MaxPool2d: nn.AvgPool2d, nn.MaxPool3d: nn.AvgPool3d,
            nn.AdaptiveMaxPool1d: nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool2d: nn.AdaptiveAvgPool2d,
            nn.AdaptiveMaxPool3d: nn.AdaptiveAvgPool3d}


def linearized(model: nn.Module) -> nn.Module:
    """A float64 eval-mode copy of ``model`` whose paths are its topology: every parameter is |w|,
    biases are 0, normalization layers are the identity and max-pooling is average pooling."""
    net = copy.deepcopy(model).double().eval()
    for name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, _NORMS):
                setattr(module, child_name, nn.Identity())
            elif type(child) in _MAXPOOL:
                kw = ({"output_size": child.output_size} if "Adaptive" in type(child).__name__ else
                      {"kernel_size": child.kernel_size, "stride": child.stride, "padding": child.padding})
                setattr(module, child_name, _MAXPOOL[type(child)](**kw))
    with torch.no_grad():
        for n, p in net.named_parameters():
            if n.endswith("bias"):
                p.zero_()
            else:
                p.abs_()
    return net


def input_shape_of(model: nn.Module, spatial: int = 32) -> tuple[int, ...]:
    """A per-sample input shape for ``model`` guessed from its first prunable layer (Linear: its
    in_features; ConvNd: its in_channels and ``spatial`` per spatial dim)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            return (m.in_features,)
        if isinstance(m, PRUNABLE_TYPES):
            return (m.in_channels,) + (spatial,) * (m.weight.dim() - 2)
    raise ValueError(f"model {type(model).__name__} has no prunable layers")


def effective_masks(model: nn.Module, masks: dict[str, torch.Tensor],
                    input_shape: tuple[int, ...] | None = None) -> dict[str, torch.Tensor]:
    """{name: bool tensor}: the kept weights of ``masks`` that lie on some input-output path of
    ``model`` (weights without a mask count as dense). ``input_shape`` is one sample's shape (no
    batch dim); default: guessed by :func:`input_shape_of`. The model is not changed."""
    net = linearized(model)
    shape = tuple(input_shape) if input_shape else input_shape_of(model)
    weights = {}
    with torch.no_grad():
        for n, m in masks.items():
            w = get_weight(net, n)
            m2 = m.to(device=w.device, dtype=torch.float64).reshape(w.shape)
            rows = max(1, w.shape[0])
            fan_in = float(m2.sum()) / rows
            w.copy_(m2 / max(fan_in, 1.0))
            weights[n] = w
    for p in net.parameters():
        p.requires_grad_(False)
    for w in weights.values():
        w.requires_grad_(True)
    device = next(iter(weights.values())).device
    out = net(torch.ones((1,) + shape, dtype=torch.float64, device=device))
    out = out if isinstance(out, torch.Tensor) else out[0]
    out.sum().backward()
    return {n: (masks[n].to(device).reshape(w.shape).bool() & (w.grad != 0)).reshape(masks[n].shape).cpu()
            for n, w in weights.items()}


def add_connectivity(cal, model: nn.Module, input_shape: tuple[int, ...] | None = None):
    """Fill ``LayerReport.effective`` of a :class:`yopo.core.calibration.Calibration` from the
    model (so ``cal.effective_sparsity`` is defined) and return ``cal``. Kept weights stranded off
    every input-output path (and layers whose kept weights all are) are warned about
    (CollapseWarning) and added to ``cal.warnings``."""
    import warnings

    from .calibration import CollapseWarning

    eff = effective_masks(model, cal.masks, input_shape)
    dead, stranded = [], 0
    for n, r in cal.layers.items():
        r.effective = int(eff[n].sum())
        if not r.excluded:
            stranded += r.kept - r.effective
            if r.kept and r.effective == 0:
                dead.append(n)
    msgs = []
    if dead:
        msgs.append(f"{len(dead)} layer(s) keep weights but none on an input-output path: "
                    f"{name_list(dead)}")
    if stranded:
        msgs.append(f"{stranded} of {cal.kept} kept weights lie on no input-output path (effective sparsity "
                    f"{cal.effective_sparsity:.4f} vs {cal.sparsity:.4f})")
    if msgs:
        cal.warnings.extend(msgs)
        warnings.warn("; ".join(msgs), CollapseWarning, stacklevel=2)
    return cal


def scale_invariant(model: nn.Module, names, input_shape: tuple[int, ...] | None = None, *,
                    batch: int = 4, seed: int = 0, tol: float = 0.1, max_spatial: int = 64) -> set[str]:
    """The prunable weights among ``names`` whose scale does not set the scale of the network's
    output: doubling the weight changes the norm of the outputs of a float32 copy of ``model`` by
    less than ``tol`` (relative), on a seeded N(0, 1) batch of shape ``(batch, *input_shape)``,
    with normalization layers using batch statistics (BatchNorm in training mode; dropout off).
    Spatial sizes above ``max_spatial`` are tested at ``max_spatial`` first (where a layer's output
    is normalized does not depend on the resolution, and an ImageNet ResNet-101 at 224 x 224 costs
    minutes); a net that cannot run that small is tested at its own size. The model is not changed.

    Why: a unit's pre-activation at init has a variance proportional to its kept fan-in. Where a
    normalization restores the scale after the layer (conv -> BatchNorm in ResNets and VGG-BN, or
    a pre-activation block whose residual sum is normalized before the next conv), a unit with
    few inputs trains like any other, so a sparse mask may spread its budget thinly over every
    unit; without one, the signal shrinks with the kept fan-in, layer after layer, and a mask
    should rather keep fewer units with many inputs (the YOPO path structure's ``auto``). Testing
    the function, not module types, covers any arrangement. Measured (norm ratio at doubling):
    ResNet-20 1.000, WRN-16-8 0.995-1.005 (pre-activation), the benchmarks' unnormalized MLPs and
    conv nets 1.33-2.06 (2 = a bias-free ReLU net, positively homogeneous; biases pull it
    down), so ``tol`` = 0.1 lies far from both."""
    net = copy.deepcopy(model).float().eval()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()  # batch statistics: the normalization a layer meets while it trains
    shape = tuple(input_shape) if input_shape else input_shape_of(model)
    device = next(net.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch,) + shape, generator=gen).to(device)

    def norm() -> float:
        out = net(x)
        return float((out if isinstance(out, torch.Tensor) else out[0]).float().norm())

    found, ref = set(), None
    with torch.no_grad():
        if len(shape) >= 2 and max(shape[1:]) > max_spatial:
            full = x
            x = torch.randn((batch, shape[0]) + tuple(min(s, max_spatial) for s in shape[1:]), generator=gen).to(device)
            try:
                ref = norm()
            except RuntimeError:  # e.g. a fixed-size classifier after a flatten
                x = full
        ref = max(norm() if ref is None else ref, 1e-30)
        for n in names:
            w = get_weight(net, n)
            keep = w.detach().clone()
            w.mul_(2.0)
            if abs(norm() / ref - 1.0) < tol:
                found.add(n)
            w.copy_(keep)
    return found


def normalized_net(model: nn.Module, names, input_shape: tuple[int, ...] | None = None) -> bool:
    """Whether every prunable layer of ``names`` (in model order) but the last, the output layer,
    is :func:`scale_invariant`: each hidden layer is followed by a normalization that restores
    the scale (ResNets, WRNs, VGG-BN). The one test behind the automatic choices of the
    recommended preset (the YOPO path structure and ``kept_scale``)."""
    hidden = list(names)[:-1]
    return bool(hidden) and scale_invariant(model, hidden, input_shape) == set(hidden)
