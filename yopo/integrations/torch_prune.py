"""YOPO as a ``torch.nn.utils.prune`` pruning method.

Global (one threshold over several layers, as YOPO-G)::

    from torch.nn.utils import prune
    from yopo.integrations.torch_prune import YopoPruning, yopo_importance_scores

    params = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    prune.global_unstructured(params, pruning_method=YopoPruning, amount=0.9,
                              importance_scores=yopo_importance_scores(params, model=model))

Per layer (the layer's own |W| is factored)::

    YopoPruning.apply(model.fc, "weight", amount=0.5, rank=7, iters=200)

``global_unstructured`` hands the pruning method one flat vector of all importance scores, so
the per-layer NMF cannot run inside it: the YOPO saliency comes in through ``importance_scores``
(:func:`yopo_importance_scores`). Forgetting it would silently give magnitude-like pruning of raw
weights; YOPO saliencies are nonnegative and raw weights are not, so :class:`YopoPruning` refuses
scores with negative entries with a one-line error saying what to pass.

``amount`` follows ``torch.nn.utils.prune``: a float fraction (``round(amount * n)`` entries
pruned) or an int count. The entries kept are the highest scores, ties to the lower index, as
in ``yopo.calibrate``; with ``model=`` the saliency equals ``yopo.score(model, "yopo", seed=...)``
(same per-layer seeds), so the global mask equals ``yopo.calibrate(..., mode="global",
min_keep=0)`` at the same number of pruned weights.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from ..core.calibration import topk_mask


def _current(module: nn.Module, name: str) -> torch.Tensor:
    # an already pruned tensor is reparametrized: its unmasked values live in <name>_orig
    orig = getattr(module, name + "_orig", None)
    return orig if isinstance(orig, torch.Tensor) else getattr(module, name)


def yopo_importance_scores(parameters, *, model: nn.Module | None = None, seed: int = 0,
                           **yopo_opts) -> dict[tuple[nn.Module, str], torch.Tensor]:
    """YOPO saliency S = | |W| - VH | of every ``(module, name)`` in ``parameters``, keyed as
    ``global_unstructured``'s ``importance_scores`` expects. ``yopo_opts``: :class:`yopo.YopoConfig`
    fields (rank, iters, ...). ``model`` names the parameters (their per-layer NMF seeds then match
    ``yopo.score``); without it they are named by position."""
    from ..methods.yopo import YopoConfig, yopo_saliency

    parameters = list(parameters)
    names = {id(m): n for n, m in model.named_modules()} if model is not None else {}
    weights, keys = {}, {}
    for i, (module, name) in enumerate(parameters):
        if model is None:
            mod_name = str(i)
        elif id(module) in names:
            mod_name = names[id(module)]
        else:
            raise ValueError(f"parameter {i} ({type(module).__name__}.{name}) is not part of the given model")
        key = f"{mod_name}.{name}" if mod_name else name
        weights[key] = _current(module, name).detach()
        keys[key] = (module, name)
    scores = yopo_saliency(weights, YopoConfig(**yopo_opts), seed=seed)
    return {keys[k]: s for k, s in scores.items()}


class YopoPruning(prune.BasePruningMethod):
    """Prune the entries with the lowest YOPO saliency (see module doc)."""

    PRUNING_TYPE = "unstructured"

    def __init__(self, amount) -> None:
        prune._validate_pruning_amount_init(amount)
        self.amount = amount

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        if bool((t < 0).any()):
            raise ValueError("YopoPruning got scores with negative entries (raw weights?); pass "
                             "importance_scores=yopo_importance_scores(parameters, model=model) to "
                             "prune.global_unstructured, or call YopoPruning.apply(module, name, amount)")
        n = t.numel()
        n_prune = prune._compute_nparams_toprune(self.amount, n)
        prune._validate_pruning_amount(n_prune, n)
        mask = default_mask.clone(memory_format=torch.contiguous_format)
        keep = topk_mask(t.detach().flatten().float(), n - n_prune)
        mask.view(-1)[~keep] = 0
        return mask

    @classmethod
    def apply(cls, module, name, amount, importance_scores=None, *, seed: int = 0,  # type: ignore[override]
              **yopo_opts):
        """Prune ``module.<name>`` by the YOPO saliency of that tensor alone (``yopo_opts``:
        rank, iters, ...), or by ``importance_scores`` when given."""
        if importance_scores is None:
            importance_scores = yopo_importance_scores([(module, name)], seed=seed, **yopo_opts)[(module, name)]
        elif yopo_opts:
            raise ValueError(f"YOPO options {sorted(yopo_opts)} cannot act with importance_scores given")
        return super().apply(module, name, amount=amount, importance_scores=importance_scores)


def yopo_unstructured(module: nn.Module, name: str, amount, *, seed: int = 0, **yopo_opts) -> nn.Module:
    """``torch.nn.utils.prune``-style function: ``yopo_unstructured(model.fc, "weight", 0.5)``."""
    YopoPruning.apply(module, name, amount, seed=seed, **yopo_opts)
    return module
