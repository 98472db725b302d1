"""Apply masks to a model and keep pruned weights at exactly zero through training.

``apply_masks`` sets every pruned weight to 0 in place (a fill, not a product: an Inf or NaN in a
pruned position becomes 0, not NaN), stores the mask as a non-persistent ``weight_mask`` buffer on
its module and registers a gradient hook that fills the gradient of pruned entries with 0. With
zero weights and zero gradients, SGD (momentum, weight decay), Adam and AdamW leave pruned entries
at 0, as does AMP's GradScaler. For optimizers whose state predates the mask,
:func:`enforce_after_step` re-zeroes after every step.

Checkpoints: the mask buffer is *not* in ``model.state_dict()``, so the state dict of a masked
model is the state dict of a plain model (zeros in the pruned positions) and loads strictly into
an unmasked model of the same architecture. Save and restore masks explicitly: put
``get_masks(model)`` beside the state dict and call ``apply_masks(model, masks)`` after loading
(or use the bit-packed ``yopo.save_mask`` / ``yopo.load_mask``). A masked module still accepts an older state dict that
carries ``<name>.weight_mask`` entries: its load hook consumes them and updates the mask.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils.weak import WeakIdKeyDictionary

from .layers import prunable_layers

MASK_BUFFER = "weight_mask"
# gradient-hook handles keyed weakly by parameter: a deep copy of a masked model gets fresh
# parameters (without hooks), and apply_masks on the copy must not find a stale handle
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
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Set the pruned weights of ``model`` to 0 in place and keep them 0; returns the model.

    ``masks`` maps parameter names to bool (or 0/1) tensors of the weight's shape. Applying masks
    again replaces the earlier ones. Pruned entries are *filled* with 0 (an Inf or NaN there
    becomes 0), and so is their gradient.
    """
    check_masks(model, masks)
    for name, m in masks.items():
        module, attr = _module_and_attr(model, name)
        if attr != "weight":
            raise ValueError(f"only '.weight' parameters are maskable; got {name!r}")
        w = module.weight
        mask = m.to(device=w.device, dtype=torch.bool)
        w.masked_fill_(~mask, 0)
        # non-persistent: a masked model's state dict loads into a plain model (see module doc)
        module._buffers.pop(MASK_BUFFER, None)
        module.register_buffer(MASK_BUFFER, mask, persistent=False)
        for handle in _HOOKS.pop(w, ()):
            handle.remove()
        # the hooks read the buffer at call time, so .to(device) and mask updates are honoured
        _HOOKS[w] = (w.register_hook(lambda g, mod=module: g.masked_fill(~mod._buffers[MASK_BUFFER], 0)),
                     module.register_load_state_dict_pre_hook(_consume_legacy_mask),
                     module.register_load_state_dict_post_hook(_rezero_after_load))
    return model


def _consume_legacy_mask(module, state_dict, prefix, *_):
    """Load hook of a masked module: a ``<prefix>weight_mask`` entry (checkpoints written before
    masks left the state dict) replaces the mask instead of failing a strict load as unexpected."""
    old = module._buffers.get(MASK_BUFFER)
    if old is None or hasattr(module, "weight_orig"):  # masks removed (a stale hook of a copy) / torch prune
        return
    mask = state_dict.pop(prefix + MASK_BUFFER, None)
    if mask is not None:
        if tuple(mask.shape) != tuple(old.shape):
            raise ValueError(f"{prefix}{MASK_BUFFER} has shape {tuple(mask.shape)} but the weight has "
                             f"{tuple(old.shape)}")
        module._buffers[MASK_BUFFER] = mask.to(device=old.device, dtype=torch.bool)


@torch.no_grad()
def _rezero_after_load(module, _incompatible):
    # loading dense weights into a masked model must not revive pruned entries
    mask = module._buffers.get(MASK_BUFFER)
    if mask is not None and not hasattr(module, "weight_orig"):
        module.weight.masked_fill_(~mask, 0)


def split_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(plain state dict, masks) from a state dict that may carry ``<module>.weight_mask`` entries
    (yopo checkpoints written before masks left the state dict). ``torch.nn.utils.prune``
    reparametrizations (``weight_orig``) are left alone."""
    plain, masks = {}, {}
    suffix = "." + MASK_BUFFER
    for k, v in state.items():
        base = k[: -len(MASK_BUFFER)] if k == MASK_BUFFER or k.endswith(suffix) else None
        if base is not None and base + "weight_orig" not in state:
            masks[base + "weight"] = v.bool()
        else:
            plain[k] = v
    return plain, masks


def masked_modules(model: nn.Module):
    """(parameter name, module) for every module carrying a yopo mask."""
    for module_name, module in model.named_modules():
        if isinstance(module._buffers.get(MASK_BUFFER), torch.Tensor) and not hasattr(module, "weight_orig"):
            yield (f"{module_name}.weight" if module_name else "weight"), module


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The masks currently applied to ``model`` (bool, keyed by parameter name)."""
    return {name: mod._buffers[MASK_BUFFER].bool() for name, mod in masked_modules(model)}


@torch.no_grad()
def reapply(model: nn.Module) -> None:
    """Set every pruned weight to 0 again (a fill: Inf/NaN there become 0; cheap; used after
    optimizer steps)."""
    for _, module in masked_modules(model):
        module.weight.masked_fill_(~module._buffers[MASK_BUFFER], 0)


def enforce_after_step(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Re-zero pruned weights after every ``optimizer.step()``; returns the hook handle."""
    return optimizer.register_step_post_hook(lambda *_: reapply(model))


def remove_masks(model: nn.Module) -> nn.Module:
    """Bake: drop mask buffers and hooks, leaving plain (zeroed) weights."""
    for _, module in list(masked_modules(model)):
        for handle in _HOOKS.pop(module.weight, ()):
            handle.remove()
        del module._buffers[MASK_BUFFER]
    return model


def assert_pruned_zero(model: nn.Module) -> None:
    """Raise ``RuntimeError`` naming the first layer where a pruned weight is not exactly 0."""
    for name, module in masked_modules(model):
        bad = int((module.weight.detach()[~module._buffers[MASK_BUFFER].bool()] != 0).sum())
        if bad:
            raise RuntimeError(f"{bad} pruned weights of {name} are nonzero")


def to_torch_prune(model: nn.Module) -> nn.Module:
    """Convert yopo masks into ``torch.nn.utils.prune`` reparametrizations (weight_orig * weight_mask)."""
    masks = get_masks(model)
    remove_masks(model)
    for name, m in masks.items():
        module, _ = _module_and_attr(model, name)
        prune.custom_from_mask(module, "weight", m)
    return model


def from_torch_prune(model: nn.Module) -> dict[str, torch.Tensor]:
    """Read ``torch.nn.utils.prune`` masks (``weight_mask`` buffers), make the pruning permanent
    with ``prune.remove`` and apply them as yopo masks. Returns the masks."""
    masks = {}
    for module_name, module in model.named_modules():
        if hasattr(module, "weight_orig") and isinstance(getattr(module, "weight_mask", None), torch.Tensor):
            masks[f"{module_name}.weight" if module_name else "weight"] = module.weight_mask.bool().clone()
            prune.remove(module, "weight")
    apply_masks(model, masks)
    return masks


def sparsity(masks_or_model) -> float:
    """Fraction of prunable weights that are zero (model) or masked out (dict of masks)."""
    if isinstance(masks_or_model, nn.Module):
        model = masks_or_model
        total = zeros = 0
        for layer in prunable_layers(model):
            module = model.get_submodule(layer.module_name) if layer.module_name else model
            w = module.weight.detach()
            total += w.numel()
            zeros += int((w == 0).sum())
        return zeros / total
    if isinstance(masks_or_model, dict) and masks_or_model:
        total = sum(m.numel() for m in masks_or_model.values())
        kept = sum(int(m.bool().sum()) for m in masks_or_model.values())
        return 1.0 - kept / total
    raise TypeError(f"sparsity() takes an nn.Module or a non-empty dict of masks; got {type(masks_or_model).__name__}")
