"""One registry for every scoring method (YOPO and the baselines), one way to call them.

A method is a function ``fn(model, ctx, cfg) -> {parameter name: score tensor}`` plus a frozen
dataclass ``cfg`` of its options. Scores have the weight's shape; higher = more important.
``score()`` picks the prunable layers, validates the options, gives data only to methods that
use data, and guarantees the caller's model is unchanged (methods that need to modify a model get
a deep copy; the rest are checked to leave parameters, buffers and train/eval flags as they were).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from .layers import LayerScores, PrunableLayer, get_weight, prunable_layers
from .validate import check_choice, check_int


@dataclass(frozen=True)
class ScoreContext:
    """What every method receives besides the model and its own options."""

    layers: tuple[PrunableLayer, ...]
    seed: int
    device: torch.device
    data: Any = None  # data-dependent methods only: an iterable of (x, y) batches or one (x, y)

    def weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {l.name: get_weight(model, l.name) for l in self.layers}


@dataclass(frozen=True)
class Method:
    name: str
    fn: Callable[[nn.Module, ScoreContext, Any], dict[str, torch.Tensor]]
    config: type
    data_free: bool
    mutates: bool  # the function changes the model it is given (gets a deep copy)
    description: str


_METHODS: dict[str, Method] = {}


@dataclass(frozen=True)
class NoOptions:
    """The options of a method that has none."""


def register(name: str, *, config: type = NoOptions, data_free: bool = True, mutates: bool = False,
             description: str = ""):
    """Decorator: ``@register("snip", config=SnipConfig, data_free=False, mutates=True)``."""
    def deco(fn):
        if name in _METHODS:
            raise ValueError(f"scoring method {name!r} is already registered")
        _METHODS[name] = Method(name, fn, config, data_free, mutates, description or (fn.__doc__ or "").strip().split("\n")[0])
        return fn
    return deco


def _load_builtin() -> None:
    from .. import methods  # noqa: F401  (registers the built-in methods)


def available_methods() -> list[str]:
    _load_builtin()
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    _load_builtin()
    check_choice("method", name, sorted(_METHODS))
    return _METHODS[name]


def make_config(method: Method, opts: dict):
    """The method's options object; a config validates its fields when built (rules declared with
    ``yopo.core.config.opt``), so a bad value is a one-line error naming it."""
    fields = {f.name for f in dataclasses.fields(method.config)}
    bad = sorted(set(opts) - fields)
    if bad:
        renamed = getattr(method.config, "RENAMED", {})
        hints = [f"{k} -> {renamed[k]}" for k in bad if k in renamed]
        raise ValueError(f"unknown option(s) {bad} for method {method.name!r}"
                         + (f" (renamed: {', '.join(hints)})" if hints else "") + f"; allowed: {sorted(fields)}")
    # JSON round trips (family metadata, sweep records) turn tuples into lists
    return method.config(**{k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()})


def with_target(method: str, opts: dict, sparsity: float, input_shape: tuple[int, ...] | None = None) -> dict:
    """Defaults a pipeline knows better than the method: iterative methods (SynFlow, Iter-SNIP) and
    expander masks prune to their native ``target_sparsity`` = the calibration target, and a
    data-free method that builds its own input (SynFlow's all-ones) gets the data's sample shape.
    Options the caller set explicitly win."""
    fields = {f.name for f in dataclasses.fields(get_method(method).config)}
    out = dict(opts)
    target = target_option(method, opts)
    # an option left at None / empty is unset (a full options record holds every field)
    if target is not None and opts.get(target) is None and not isinstance(sparsity, dict):
        out[target] = sparsity
    if "input_shape" in fields and not opts.get("input_shape") and input_shape and uses_input_shape(method, out):
        out["input_shape"] = tuple(int(v) for v in input_shape)
    return out


def target_option(method: str, opts: dict) -> str | None:
    """The option of ``method`` that takes the calibration target (iterative and mask methods'
    ``target_sparsity``; YOPO's ``paths_target`` with ``paths``), or None: scores that depend on
    the target get one family per sparsity in a sweep."""
    cfg = get_method(method).config
    hook = getattr(cfg, "target_option", None)
    if hook is not None:
        return hook(opts)
    return "target_sparsity" if "target_sparsity" in {f.name for f in dataclasses.fields(cfg)} else None


def uses_input_shape(method: str, opts: dict) -> bool:
    """Whether ``method`` with ``opts`` builds its own input (SynFlow's all-ones; YOPO only with
    ``paths``) and so needs the data's sample shape."""
    cfg = get_method(method).config
    if "input_shape" not in {f.name for f in dataclasses.fields(cfg)}:
        return False
    hook = getattr(cfg, "uses_input_shape", None)
    return bool(hook(opts)) if hook is not None else True


def scoring_batch_size(method: str, opts: dict, default):
    """How many examples a data-dependent method scores on: its own ``batch_size`` option (SNIP,
    GraSP: 1024 as in App. E), else ``default``."""
    return getattr(make_config(get_method(method), opts), "batch_size", default)


def _snapshot(model: nn.Module):
    return ({k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items() if isinstance(v, torch.Tensor)},
            [(m, m.training) for m in model.modules()],
            [(p, p.requires_grad) for p in model.parameters()])


def _unchanged(model: nn.Module, snap) -> str | None:
    state, modes, grads = snap
    now = model.state_dict(keep_vars=True)
    for k, v in state.items():
        if k not in now or not torch.equal(now[k].detach(), v):
            return k
    if any(m.training != t for m, t in modes) or any(p.requires_grad != g for p, g in grads):
        return "train/eval or requires_grad flags"
    return None


def score(model: nn.Module, method: str = "yopo", *, seed: int = 0, device=None, data=None,
          exclude=(), include=None, **opts) -> dict[str, torch.Tensor]:
    """Saliency of every prunable weight of ``model`` by ``method``.

    Returns {parameter name: float32 tensor of the weight's shape} on the scoring device
    (``device`` or the model's), as a :class:`yopo.core.layers.LayerScores` (a dict that also
    names the weights stored (in, out), for calibration). ``opts`` are the method's options (see ``yopo methods``).
    """
    m = get_method(method)
    cfg = make_config(m, opts)
    check_int("seed", seed, 0)
    layers = tuple(prunable_layers(model, exclude=exclude, include=include))
    for l in layers:
        w = get_weight(model, l.name)
        if not torch.isfinite(w).all():
            raise ValueError(f"weight {l.name!r} has NaN or Inf entries; scoring needs finite weights")
    if device is None:
        device = get_weight(model, layers[0].name).device
    device = torch.device(device)
    if not m.data_free and data is None:
        raise ValueError(f"method {method!r} needs data: pass data=(x, y) or an iterable of batches")
    ctx = ScoreContext(layers, seed, device, None if m.data_free else data)
    if m.mutates:
        scores = m.fn(copy.deepcopy(model), ctx, cfg)
    else:
        snap = _snapshot(model)
        scores = m.fn(model, ctx, cfg)
        where = _unchanged(model, snap)
        if where is not None:  # a bug in the method, not the caller's fault
            raise RuntimeError(f"method {method!r} changed the caller's model ({where}); register it mutates=True")
    out = LayerScores(transposed=[l.name for l in layers if l.transposed])
    for l in layers:
        s = scores[l.name].detach().float()
        if tuple(s.shape) != l.shape:
            raise RuntimeError(f"method {method!r} returned shape {tuple(s.shape)} for {l.name}, expected {l.shape}")
        out[l.name] = s
    return out
