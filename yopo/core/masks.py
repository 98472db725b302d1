"""Apply masks to a model and keep pruned weights at exactly zero through training.

``apply_masks`` sets every pruned weight to 0 in place (a fill, not a product: an Inf or NaN in a
pruned position becomes 0, not NaN), stores the mask as a non-persistent buffer ``<attr>_mask``
beside the parameter ``<attr>`` (``weight_mask`` for ordinary layers, ``in_proj_weight_mask`` for
MultiheadAttention's packed projection) and registers a gradient hook that fills the gradient of
pruned entries with 0. With zero weights and zero gradients, SGD (momentum, weight decay), Adam and
AdamW leave pruned entries at 0, as does AMP's GradScaler. For optimizers whose state predates the
mask, :func:`enforce_after_step` re-zeroes after every step.

Checkpoints: the mask buffer is *not* in ``model.state_dict()``, so the state dict of a masked
model is the state dict of a plain model (zeros in the pruned positions) and loads strictly into
an unmasked model of the same architecture. Save and restore masks explicitly: put
``get_masks(model)`` beside the state dict and call ``apply_masks(model, masks)`` after loading
(or use the bit-packed ``yopo.save_mask`` / ``yopo.load_mask``). A masked module still accepts an
older state dict that carries ``<name>_mask`` entries: its load hook consumes them and updates the
mask; loading dense weights into a masked model keeps the pruned entries at 0.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils.weak import WeakIdKeyDictionary

from .layers import prunable_layers
from .validate import check_choice

#: how the kept weights start when masks are applied (``apply_masks(kept_scale=...)``)
KEPT_SCALES = ("none", "layer_rms", "auto")
MASK_BUFFER = "weight_mask"  # the mask of ``<attr>`` is the buffer ``<attr>_mask`` (torch prune's name)
# hook handles keyed weakly by parameter: a deep copy of a masked model gets fresh parameters
# (without hooks), and apply_masks on the copy must not find a stale handle
_HOOKS = WeakIdKeyDictionary()


def _module_and_attr(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_name, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(module_name) if module_name else model
    except AttributeError:
        module = None
    if module is None or not isinstance(getattr(module, attr, None), torch.Tensor):
        raise KeyError(f"mask for {name!r} matches no parameter of {type(model).__name__}")
    return module, attr


def check_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Raise a one-line error at the first mask whose name or shape does not fit ``model``."""
    for name, m in masks.items():
        module, attr = _module_and_attr(model, name)
        w = getattr(module, attr)
        if tuple(m.shape) != tuple(w.shape):
            raise ValueError(f"mask {name!r} has shape {tuple(m.shape)} but the weight has {tuple(w.shape)}")


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor], *, kept_scale: str = "none",
                input_shape: tuple[int, ...] | None = None) -> nn.Module:
    """Set the pruned weights of ``model`` to 0 in place and keep them 0; returns the model.

    ``masks`` maps parameter names to bool (or 0/1) tensors of the weight's shape. Applying masks
    again replaces the earlier ones. Pruned entries are *filled* with 0 (an Inf or NaN there
    becomes 0), and so is their gradient.

    ``kept_scale`` (:data:`KEPT_SCALES`): ``none`` leaves the kept weights as they are (the paper:
    train from the same initialization); ``layer_rms`` first multiplies each layer's kept weights by
    one factor so that their RMS equals the RMS of the layer's whole (still dense) weight, the
    scale its init scheme drew it at. A ranking that keeps a layer's largest weights (magnitude,
    SNIP, YOPO's residual) otherwise starts the layer 1.5-3x larger than a random mask of the same
    count would; behind a normalization the weight scale sets the layer's effective learning rate
    (lr / |w|^2), so such a layer starts 2-9x slower (docs/method_quality.md). Positions and signs
    are unchanged; it needs the dense weights, so masking a layer that is already masked with it
    is an error. ``auto`` (the recommended preset): ``layer_rms`` if every masked layer but the
    last is followed by a normalization (:func:`yopo.core.connectivity.normalized_net`, one
    forward per layer on a seeded batch of shape ``(4, *input_shape)``, default: guessed from the
    first layer), else ``none``: without normalization the weight scale is also the signal, which
    a sparse mask already shrinks with the kept fan-in, and the measured effect there was mixed.
    """
    check_choice("kept_scale", kept_scale, KEPT_SCALES)
    check_masks(model, masks)
    if kept_scale == "auto":
        kept_scale = resolve_kept_scale(model, masks, input_shape)
    if kept_scale == "layer_rms":
        _check_dense(model, masks)  # every layer first: nothing is half-applied
    for name, m in masks.items():
        module, attr = _module_and_attr(model, name)
        w = getattr(module, attr)  # "weight", or e.g. MultiheadAttention's "in_proj_weight"
        buf = attr + "_mask"
        mask = m.to(device=w.device, dtype=torch.bool)
        if kept_scale == "layer_rms":
            _scale_kept_to_layer_rms(w, mask)
        w.masked_fill_(~mask, 0)
        # non-persistent: a masked model's state dict loads into a plain model (see module doc)
        module._buffers.pop(buf, None)
        module.register_buffer(buf, mask, persistent=False)
        for handle in _HOOKS.pop(w, ()):
            handle.remove()
        # the hooks read the buffer at call time, so .to(device) and mask updates are honoured
        _HOOKS[w] = (w.register_hook(lambda g, mod=module, b=buf: g.masked_fill(~mod._buffers[b], 0)),
                     module.register_load_state_dict_pre_hook(
                         lambda mod, sd, prefix, *_, a=attr: _consume_legacy_mask(mod, sd, prefix, a)),
                     module.register_load_state_dict_post_hook(
                         lambda mod, _incompatible, a=attr: _rezero_after_load(mod, a)))
    return model


def resolve_kept_scale(model: nn.Module, masks: dict[str, torch.Tensor],
                       input_shape: tuple[int, ...] | None = None) -> str:
    """What ``kept_scale="auto"`` does on ``model`` (dense) with ``masks``: ``layer_rms`` or ``none``."""
    from .connectivity import normalized_net

    names = [l.name for l in prunable_layers(model) if l.name in masks]
    try:
        normalized = normalized_net(model, names, input_shape)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:  # the net does not take one float tensor
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ValueError(f"kept_scale='auto' runs {type(model).__name__} on a float input to test for normalization "
                         f"layers and it failed ({type(e).__name__}: {first}); pass input_shape, or choose "
                         f"kept_scale='none' or 'layer_rms'") from e
    return "layer_rms" if normalized else "none"


def _check_dense(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """``layer_rms`` needs each layer's dense weights: refuse a masked layer or a pruned checkpoint."""
    for name, m in masks.items():
        module, attr = _module_and_attr(model, name)
        w = getattr(module, attr)
        if attr + "_mask" in module._buffers:
            raise ValueError(f"kept_scale='layer_rms' scales {name!r} to the RMS of its dense weights, but it is "
                             f"already masked (its pruned entries are 0): apply it once, to the initialization")
        mask = m.to(device=w.device, dtype=torch.bool)
        pruned = w[~mask]
        if pruned.numel() and not pruned.any() and w[mask].any():
            # a plain model loaded from a pruned checkpoint (its kept weights were rescaled when it
            # was first masked): the RMS over its zeros would shrink them by sqrt(density)
            raise ValueError(f"kept_scale='layer_rms' scales {name!r} to the RMS of its dense weights, but every "
                             f"pruned entry is already 0 (a pruned checkpoint?): use kept_scale='none' there")


def _scale_kept_to_layer_rms(w: torch.Tensor, mask: torch.Tensor) -> None:
    """Multiply ``w`` in place by RMS(w) / RMS(w[mask]) (float64 sums; a layer that keeps nothing,
    or only zeros, is left as it is)."""
    kept = w[mask].double()
    now = kept.pow(2).mean().sqrt() if kept.numel() else kept.new_zeros(())
    if now > 0:
        w.mul_((w.double().pow(2).mean().sqrt() / now).to(w.dtype))


def _consume_legacy_mask(module, state_dict, prefix, attr: str) -> None:
    """Load hook of a masked module: a ``<prefix><attr>_mask`` entry (checkpoints written before
    masks left the state dict) replaces the mask instead of failing a strict load as unexpected."""
    buf = attr + "_mask"
    old = module._buffers.get(buf)
    if old is None or hasattr(module, attr + "_orig"):  # masks removed (a stale hook of a copy) / torch prune
        return
    mask = state_dict.pop(prefix + buf, None)
    if mask is not None:
        if tuple(mask.shape) != tuple(old.shape):
            raise ValueError(f"{prefix}{buf} has shape {tuple(mask.shape)} but the weight has {tuple(old.shape)}")
        module._buffers[buf] = mask.to(device=old.device, dtype=torch.bool)


@torch.no_grad()
def _rezero_after_load(module, attr: str) -> None:
    # loading dense weights into a masked model must not revive pruned entries
    mask = module._buffers.get(attr + "_mask")
    if mask is not None and not hasattr(module, attr + "_orig"):
        getattr(module, attr).masked_fill_(~mask, 0)


def split_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(plain state dict, masks) from a state dict that may carry ``<module>.<attr>_mask`` entries
    (yopo checkpoints written before masks left the state dict). ``torch.nn.utils.prune``
    reparametrizations (``<attr>_orig``) are left alone."""
    plain, masks = {}, {}
    for k, v in state.items():
        base = k[: -len("_mask")] if k.endswith("_mask") else None
        if base is not None and base in state and base + "_orig" not in state:
            masks[base] = v.bool()
        else:
            plain[k] = v
    return plain, masks


def masked_modules(model: nn.Module):
    """(parameter name, module) for every weight carrying a yopo mask (buffer ``<attr>_mask``
    beside the parameter ``<attr>``; torch prune's ``<attr>_orig`` reparametrizations excluded)."""
    for module_name, module in model.named_modules():
        for buf, value in list(module._buffers.items()):
            attr = buf[: -len("_mask")]
            if (buf.endswith("_mask") and isinstance(value, torch.Tensor) and attr in module._parameters
                    and not hasattr(module, attr + "_orig")):
                yield (f"{module_name}.{attr}" if module_name else attr), module


def _attr(name: str) -> str:
    return name.rpartition(".")[2]


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The masks currently applied to ``model`` (bool, keyed by parameter name)."""
    return {name: mod._buffers[_attr(name) + "_mask"].bool() for name, mod in masked_modules(model)}


@torch.no_grad()
def reapply(model: nn.Module) -> None:
    """Set every pruned weight to 0 again (a fill: Inf/NaN there become 0; cheap; used after
    optimizer steps)."""
    for name, module in masked_modules(model):
        getattr(module, _attr(name)).masked_fill_(~module._buffers[_attr(name) + "_mask"], 0)


def enforce_after_step(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Re-zero pruned weights after every ``optimizer.step()``; returns the hook handle."""
    return optimizer.register_step_post_hook(lambda *_: reapply(model))


def remove_masks(model: nn.Module) -> nn.Module:
    """Bake: drop mask buffers and hooks, leaving plain (zeroed) weights."""
    for name, module in list(masked_modules(model)):
        for handle in _HOOKS.pop(getattr(module, _attr(name)), ()):
            handle.remove()
        del module._buffers[_attr(name) + "_mask"]
    return model


def assert_pruned_zero(model: nn.Module) -> None:
    """Raise ``RuntimeError`` naming the first layer where a pruned weight is not exactly 0."""
    for name, module in masked_modules(model):
        w, m = getattr(module, _attr(name)), module._buffers[_attr(name) + "_mask"]
        bad = int((w.detach()[~m.bool()] != 0).sum())
        if bad:
            raise RuntimeError(f"{bad} pruned weights of {name} are nonzero")


def to_torch_prune(model: nn.Module) -> nn.Module:
    """Convert yopo masks into ``torch.nn.utils.prune`` reparametrizations (weight_orig * weight_mask)."""
    masks = get_masks(model)
    remove_masks(model)
    for name, m in masks.items():
        module, attr = _module_and_attr(model, name)
        prune.custom_from_mask(module, attr, m)
    return model


def from_torch_prune(model: nn.Module) -> dict[str, torch.Tensor]:
    """Read ``torch.nn.utils.prune`` masks (``weight_mask`` buffers), make the pruning permanent
    with ``prune.remove`` and apply them as yopo masks. Returns the masks."""
    masks = {}
    for module_name, module in model.named_modules():
        for p in list(module._parameters):
            attr = p[: -len("_orig")]
            if p.endswith("_orig") and isinstance(getattr(module, attr + "_mask", None), torch.Tensor):
                masks[f"{module_name}.{attr}" if module_name else attr] = getattr(module, attr + "_mask").bool().clone()
                prune.remove(module, attr)
    apply_masks(model, masks)
    return masks


def sparsity(masks_or_model) -> float:
    """Fraction of prunable weights that are zero (model) or masked out (dict of masks)."""
    if isinstance(masks_or_model, nn.Module):
        model = masks_or_model
        total = zeros = 0
        for layer in prunable_layers(model):
            module = model.get_submodule(layer.module_name) if layer.module_name else model
            w = getattr(module, layer.attr).detach()  # the effective weight (torch prune: orig * mask)
            total += w.numel()
            zeros += int((w == 0).sum())
        return zeros / total
    if isinstance(masks_or_model, dict) and masks_or_model:
        total = sum(m.numel() for m in masks_or_model.values())
        kept = sum(int(m.bool().sum()) for m in masks_or_model.values())
        return 1.0 - kept / total
    raise TypeError(f"sparsity() takes an nn.Module or a non-empty dict of masks; got {type(masks_or_model).__name__}")
