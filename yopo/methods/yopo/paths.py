"""YOPO's path-flow structure (``YopoConfig.paths``): connect the kept weights end to end.

Why: at high sparsity, which *units* stay connected matters more than which single weights are
kept. Masks that keep weights scattered over every neuron (as a per-weight score does) strand many
of them off every input-output path, while a few neurons connected end to end train well. SynFlow
(Tanaka et al. 2020) gets this by iterative flow conservation on |W|. Here the flow runs on the
*topology*: a linearized copy of the net (:func:`yopo.core.connectivity.linearized`) whose prunable
weights are all equal within a layer, c_l = mean |W_l| (the layer's init scale), slightly perturbed
by the YOPO residual S: c_l * (1 + eps * S / max S), eps = 1e-3. So the score of a weight is the
number of input-output paths through it, each path weighted by the init scales of its layers (the
expected SynFlow flow, without the per-weight magnitude noise), and the residual decides among
weights with the same count. The layer scales matter where paths of different depths meet: in a
ResNet a unit-weight count favours the two-conv residual branch over the 1x1 downsampling shortcut;
init scales narrow the gap, yet the flow still empties ResNet-20's shortcuts at 95% and above
(SynFlow's |W| flow keeps a few weights there), which is why the recommended preset adds a
per-layer floor (``min_layer_density``). The rounds prune the weights on the fewest paths, pooled over
layers; because the flow of a layered net is conserved from layer to layer, no layer is emptied,
and the rich-get-richer dynamics concentrate the budget on units connected end to end. Weights a
floor (``min_layer_density``) or ``min_keep`` forces back into a layer are taken from those that
would lie on a path of the final mask (``reconnect``): without it, the floor's weights in ResNet-20's
downsampling shortcuts were all stranded (no path), a layer kept in name only. Measured
on the small benchmarks (docs/method_quality.md): a unit-weight flow matched or beat SynFlow's
|W| flow, and replacing the residual tie-break by a random one changed nothing measurable.
"""
from __future__ import annotations

import torch

from ...core.connectivity import input_shape_of, linearized
from ...core.layers import get_weight
from ..support.flow import iterative_flow

TIE_EPS = 1e-3  # relative weight of the residual against the unit path count


def path_flow(model, ctx, scores: dict[str, torch.Tensor], cfg) -> dict[str, torch.Tensor]:
    """Encoded scores of the path flow (see module doc) from YOPO's residual ``scores``."""
    net = linearized(model).to(ctx.device)
    weights = {}
    with torch.no_grad():
        for n, s in scores.items():
            w = get_weight(net, n)  # |W| in the linearized copy
            s = s.to(device=w.device, dtype=w.dtype)
            w.copy_(w.mean() * (1.0 + TIE_EPS * s / s.max().clamp_min(1e-30)))
            weights[n] = w
    if cfg.paths_target is None:
        raise ValueError("paths=True needs paths_target: the sparsity the path flow prunes to (prune, train and "
                         "sweep fill in the calibration target)")
    shape = tuple(cfg.input_shape) if cfg.input_shape else input_shape_of(model)
    try:
        return iterative_flow(net, weights, ctx.layers, target=cfg.paths_target, rounds=cfg.paths_rounds,
                              schedule="exponential", input_shape=shape, device=ctx.device, reconnect=True)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:  # the net does not take a float tensor
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ValueError(f"paths=True runs {type(model).__name__} on one all-ones float input of shape "
                         f"(1, {', '.join(map(str, shape))}) and it failed ({type(e).__name__}: {first}); the path "
                         f"flow needs a network fed by one float tensor (conv nets, MLPs): pass its input_shape, "
                         f"or use paths=False (--preset paper)") from e
