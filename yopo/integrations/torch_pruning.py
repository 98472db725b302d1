"""Physical channel removal with Torch-Pruning (DepGraph, Fang et al. 2023): the pruned model is a
smaller dense model whose residual connections, BatchNorm layers and classifier stay consistent.

Optional dependency: ``pip install torch-pruning`` (extra ``structured``).

    from yopo.integrations.torch_pruning import prune_channels
    small, plan = prune_channels(model, torch.zeros(1, 3, 32, 32), 0.5, method="yopo", rank=7, iters=200)
    plan.sparsity, plan.layer_channels()          # exact channel budget, kept/total per layer

* :func:`channel_groups` traces the model once and lists the coupled output channels
  (:class:`yopo.core.structured.ChannelGroup`): for a ResNet stage, the stem/previous projection,
  every block's second conv and the shortcut conv share one group; a block's first conv is a group
  of its own. The classifier's outputs (``keep_outputs``, default ``(":last",)``) are never removed,
  only its inputs follow the channels removed before it. A group holding an ``exclude``d layer is
  left whole.
* :func:`remove_channels` removes the channels a :class:`yopo.core.structured.ChannelPlan` drops.
* :func:`prune_channels` = score (any registered method) -> plan at an exact channel budget ->
  remove. Returns a new model (the caller's is unchanged unless ``inplace=True``).
"""
from __future__ import annotations

import copy
import fnmatch

import torch
from torch import nn

from ..core.layers import PRUNABLE_TYPES, prunable_layers
from ..core.structured import DEFAULT_AGGREGATE, DEFAULT_ALLOCATION, ChannelGroup, ChannelPlan, plan_channels


def _tp():
    try:
        import torch_pruning
    except ImportError:
        raise ValueError("physical channel removal needs the optional package torch-pruning "
                         "(pip install torch-pruning, or pip install 'yopo[structured]')") from None
    return torch_pruning


def _resolve(model: nn.Module, patterns) -> list[str]:
    """Module names of the prunable layers matching ``patterns`` (globs, ``:first``, ``:last``)."""
    layers = prunable_layers(model)
    out = []
    for p in patterns:
        hit = [l for l in layers if (p == ":first" and l is layers[0]) or (p == ":last" and l is layers[-1])
               or fnmatch.fnmatchcase(l.name, p) or fnmatch.fnmatchcase(l.module_name, p)]
        if not hit:
            raise ValueError(f"pattern {p!r} matches no prunable layer of {type(model).__name__}")
        out += [l.module_name for l in hit]
    return out


def _graph(model: nn.Module, example_inputs):
    tp = _tp()
    was = model.training
    model.eval()  # tracing runs a forward: keep BatchNorm running statistics untouched
    try:
        with torch.enable_grad():
            dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs, verbose=False)
    finally:
        model.train(was)
    return dg


def _groups(model: nn.Module, dg, keep_outputs, exclude):
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, n in enumerate(names.values())}
    ignored = [model.get_submodule(n) for n in _resolve(model, tuple(keep_outputs) + tuple(exclude))]
    out = []
    for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=PRUNABLE_TYPES):
        members, root = [], None
        for dep, idxs in group:
            mod = dep.target.module
            if isinstance(mod, PRUNABLE_TYPES) and dg.is_out_channel_pruning_fn(dep.handler):
                members.append((names[mod], len(idxs)))
                root = root or (mod, dep.handler)
        if not members:
            continue
        members.sort(key=lambda x: order[x[0]])
        channels = {c for _, c in members}
        if len(channels) != 1:
            raise ValueError(f"channel group of {members[0][0]!r} couples layers of different widths "
                             f"{sorted(channels)}; not supported")
        layer_names = tuple(f"{n}.weight" if n else "weight" for n, _ in members)
        out.append((ChannelGroup(layer_names, channels.pop()), root))
    return out


def channel_groups(model: nn.Module, example_inputs, *, keep_outputs=(":last",), exclude=()) -> list[ChannelGroup]:
    """The coupled output-channel groups of ``model`` (see module doc), in model order of their
    first layer. ``example_inputs``: a batch the model accepts (one sample is enough)."""
    dg = _graph(model, example_inputs)
    groups = [g for g, _ in _groups(model, dg, keep_outputs, exclude)]
    order = {l.name: i for i, l in enumerate(prunable_layers(model))}
    return sorted(groups, key=lambda g: order[g.layers[0]])


@torch.no_grad()
def _prune(model, example_inputs, plan: ChannelPlan, keep_outputs, exclude) -> nn.Module:
    dg = _graph(model, example_inputs)
    found = {g.layers: root for g, root in _groups(model, dg, keep_outputs, exclude)}
    for g, keep in zip(plan.groups, plan.keep):
        if g.layers not in found:
            raise ValueError(f"channel group {g.layers[0]!r} of the plan is not a group of this model "
                             f"(different model, keep_outputs or exclude?)")
        drop = torch.nonzero(~keep).flatten().tolist()
        if drop:
            module, handler = found[g.layers]
            with torch.enable_grad():
                dg.get_pruning_group(module, handler, idxs=drop).prune()
    return model


def remove_channels(model: nn.Module, plan: ChannelPlan, example_inputs, *, keep_outputs=(":last",),
                    exclude=()) -> nn.Module:
    """Remove in place the output channels ``plan`` drops (and every input that reads them);
    returns ``model``. ``keep_outputs``/``exclude`` must be those the plan's groups came from."""
    from ..core.masks import get_masks
    if get_masks(model):
        raise ValueError("the model carries yopo masks; remove_masks(model) first (channel removal changes shapes)")
    return _prune(model, example_inputs, plan, keep_outputs, exclude)


def prune_channels(model: nn.Module, example_inputs, sparsity: float, *, method: str = "yopo",
                   aggregate: str = DEFAULT_AGGREGATE, allocation: str = DEFAULT_ALLOCATION, keep_outputs=(":last",),
                   exclude=(), min_channels: int = 1, seed: int = 0, data=None, inplace: bool = False,
                   **method_opts) -> tuple[nn.Module, ChannelPlan]:
    """Score ``model`` with ``method``, plan an exact channel budget at channel ``sparsity`` over
    the coupled groups and remove the dropped channels. Returns (pruned model, plan)."""
    from ..core.registry import score

    groups = channel_groups(model, example_inputs, keep_outputs=keep_outputs, exclude=exclude)
    names = [n for g in groups for n in g.layers]
    include = [n[: -len(".weight")] if n.endswith(".weight") else n for n in names]
    scores = score(model, method, seed=seed, data=data, include=include, **method_opts)
    weights = {n: model.get_parameter(n) for n in names} if aggregate == "relative" else None
    plan = plan_channels(scores, sparsity, groups=groups, aggregate=aggregate, allocation=allocation,
                         weights=weights, min_channels=min_channels)
    target = model if inplace else copy.deepcopy(model)
    return remove_channels(target, plan, example_inputs, keep_outputs=keep_outputs, exclude=exclude), plan
