"""YOPO's path structure (``YopoConfig.paths``): keep every kept weight useful, either by spreading
the budget over every unit or by connecting few units end to end (``paths_structure``).

Which one (``auto``, the recommended preset): if every hidden layer is followed by a normalization
(its weight scale does not set the output's scale, :func:`yopo.core.connectivity.scale_invariant`:
ResNets, WRNs, VGG-BN), a unit keeps its signal whatever its kept fan-in, so width is free:
``spread_flow`` keeps inputs in every unit (each output row its equal share of the layer's budget,
the residual ranking inside each row) at the path flow's layer densities. Both halves are measured
(docs/method_quality.md): on CIFAR-10 ResNet-20 the flow alone kept 258 of 794 units alive at 95%
and ERK-random, which keeps all 794, beat it by 4.8 points; on VGG-11 ERK's budgets, set by layer
dimensions alone, starve the early convs that every path crosses (conv2 keeps 25% under ERK, 100%
under the flow), and spreading at the flow's budgets beat spreading at ERK's (69.98 / 65.09 against
68.47 / 63.91 at 95 / 98%, 2 seeds).
Every unit also keeps an output (``paths_cover="units"``, what ``auto`` means since 2026-12-03):
each input channel of a layer first gets its best weight, then the rows share the rest
(:func:`cover_units`). Rows alone left classifier inputs without a weight (15 of ResNet-20's 64 at
98%: the residual of some input columns is small in every row), so the weights into those units
fed nothing: 27-206 kept weights stranded on ResNet-20 at 90-99%, 105 on VGG-11 at 99%; with the
cover none (benchmarks/collapse_check.py). A layer whose budget is below max(rows, channels) has no
cover, so it first gets the weights it lacks from the other layers (:func:`cover_budgets`); and the
cover's entries rank above the rows' shares, so a floor the calibration adds (``min_layer_density``)
is paid by the shares: CIFAR ResNet-50's floor took 654 of its classifier's 2048 cover entries at
99% (the net's smallest residuals) and stranded 2596 weights, none since. ``rows`` keeps the old
spreading.
Without normalization (the small MLPs and conv nets of the benchmarks) a unit's signal shrinks with
its fan-in, and the flow, which keeps fewer units each with many inputs, beat every spreading mask by
10-60 points at 95-98%. ``spread`` (ERK layer densities, rows balanced) stays available: it needs no
forward pass, and on ResNet-20 it matched ``spread_flow`` (68.99 / 63.04 against 68.67 / 63.27,
2 seeds).

The flow:

Why: at high sparsity, which *units* stay connected matters more than which single weights are
kept. Masks that keep weights scattered over every neuron (as a per-weight score does) strand many
of them off every input-output path, while a few neurons connected end to end train well. SynFlow
(Tanaka et al. 2020) gets this by iterative flow conservation on |W|. Here the same flow runs on a
linearized copy of the net (:func:`yopo.core.connectivity.linearized`) whose prunable weights are
|W| slightly perturbed by the YOPO residual S: |W| * (1 + eps * S / max S), eps = 1e-3
(``paths_flow_weights="magnitude"``, what ``auto`` means). So the score of a weight is the sum over
the input-output paths through it of the product of their |W|, and the residual decides among
weights with (nearly) the same flow. ``scale`` instead runs the flow on each layer's mean |W| (the
layer's init scale), so only path counts decide; it was ``auto``'s meaning for the flow's own mask
until 2026-12-03. At 5 seeds (docs/method_quality.md, "The flow's weights") it concentrated the
budget further (2 of the digits CNN's 32 conv2 channels alive at 95%, 5 under |W|) and was behind
SynFlow on the digits CNN and MLP at 95 and 98% where the |W| flow was ahead on 3 of those 4 cells.
Why |W|: without normalization the product of a path's weights is the signal it carries at init,
so a path of small weights is a weak one even if many paths share its units. The unit-weight flow
did better on the MNIST-1D net (+9 / +3 points at 90 / 95%), so the choice is not free; ``scale``
stays available. Where paths of different depths meet (ResNets) the unit-weight flow empties the
1x1 downsampling shortcuts at 95% and above and the |W| flow keeps only a few weights there, which
is why the recommended preset adds a per-layer floor (``min_layer_density``). The rounds prune the
weights on the least flow, pooled over layers; because the flow of a layered net is conserved from
layer to layer, no layer is emptied, and the rich-get-richer dynamics concentrate the budget on
units connected end to end. Weights a floor (``min_layer_density``) or ``min_keep`` forces back into
a layer are taken from those that would lie on a path of the final mask (``reconnect``): without
it, the floor's weights in ResNet-20's downsampling shortcuts were all stranded (no path), a layer
kept in name only. Replacing the residual tie-break by a random one changed nothing measurable on
the small benchmarks (3 seeds, unit-weight flow).
"""
from __future__ import annotations

import warnings

import torch

from ...core.calibration import CalibrationSettings, CollapseWarning, mort
from ...core.connectivity import input_shape_of, linearized, normalized_net
from ...core.layers import from_rows, get_weight, to_rows
from ...core.progress import get_logger
from ...core.ranking import select
from ...core.selection import count_true
from ..support.flow import iterative_flow

TIE_EPS = 1e-3  # relative weight of the residual against the unit path count


def path_flow(model, ctx, scores: dict[str, torch.Tensor], cfg) -> dict[str, torch.Tensor]:
    """Encoded scores of the path structure (see module doc) from YOPO's residual ``scores``:
    ``cfg.paths_structure`` flow, spread, spread_flow, or auto (spread_flow when every layer but the
    last is scale invariant, :func:`yopo.core.connectivity.scale_invariant`, else flow)."""
    if cfg.paths_target is None:
        raise ValueError("paths=True needs paths_target: the sparsity the path flow prunes to (prune, train and "
                         "sweep fill in the calibration target)")
    shape = tuple(cfg.input_shape) if cfg.input_shape else input_shape_of(model)
    structure = cfg.paths_structure
    if structure == "auto":
        names = [l.name for l in ctx.layers]
        structure = "spread_flow" if _on_the_net(model, shape, lambda: normalized_net(model, names, shape)) else "flow"
        get_logger("paths").info("paths_structure=auto: %s (%s)", structure,
                                 "every hidden layer is followed by a normalization" if structure == "spread_flow"
                                 else "some hidden layer is not followed by a normalization")
    if structure == "flow" and cfg.paths_cover != "auto":  # auto chose the flow (the explicit case fails earlier)
        raise ValueError(f"paths_cover={cfg.paths_cover!r} acts only on the spreading structures, and "
                         f"paths_structure='auto' chose 'flow' for {type(model).__name__} (some hidden layer is not "
                         f"followed by a normalization); leave paths_cover='auto' or force "
                         f"paths_structure='spread_flow'")
    cover = "units" if cfg.paths_cover == "auto" else cfg.paths_cover
    if structure == "spread":
        return spread(scores, cfg.paths_target, cover=cover)
    weighting = cfg.paths_flow_weights
    if weighting == "auto":  # |W| for both structures since 2026-12-03 (module doc)
        weighting = "magnitude"
    flow = _on_the_net(model, shape, lambda: _flow(model, ctx, scores, cfg, shape, weighting))
    if structure == "spread_flow":
        return spread(scores, cfg.paths_target, flow_densities(flow, cfg.paths_target), cover=cover)
    return flow


def flow_densities(flow: dict[str, torch.Tensor], target: float) -> dict[str, float]:
    """Per-layer sparsities of the flow's mask at ``target`` (its pooled top): the layer budgets a
    path count gives. A weight of an early layer is applied at every position of a large feature
    map and lies on many paths, so these budgets favour the early layers (ERK, from the layer's
    dimensions alone, gives ResNet-20's first stage and VGG-11's second and third convs half or
    less of what the flow gives). ``min_keep=1``: every output row keeps its best weight inside
    the budget, so no layer is emptied (the flow alone empties ResNet-20's 1x1 shortcuts at 95%)
    and spreading keeps every unit."""
    masks = _internal_masks(flow, target, CalibrationSettings(allocation="global", min_keep=1))
    return {n: 1.0 - float(m.sum()) / m.numel() for n, m in masks.items()}


def _internal_masks(scores: dict[str, torch.Tensor], target: float,
                    settings: CalibrationSettings) -> dict[str, torch.Tensor]:
    """``mort``'s masks for a step inside scoring, without its CollapseWarning: the caller's own
    calibration diagnoses the final mask, in its own settings' words."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)
        return mort(scores, target, settings).masks


def _on_the_net(model, shape, fn):
    """``fn()``, which runs ``model`` on a float input; its failure becomes one clear error."""
    try:
        return fn()
    except (RuntimeError, ValueError, TypeError, IndexError) as e:  # the net does not take a float tensor
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ValueError(f"paths=True runs {type(model).__name__} on a float input of shape "
                         f"(N, {', '.join(map(str, shape))}) and it failed ({type(e).__name__}: {first}); the path "
                         f"structure needs a network fed by one float tensor (conv nets, MLPs): pass its input_shape, "
                         f"or use paths=False (--preset paper)") from e


def spread(scores: dict[str, torch.Tensor], target: float, layer_sparsity: dict[str, float] | None = None,
           cover: str = "units") -> dict[str, torch.Tensor]:
    """Scores whose pooled top at ``target`` is the spread mask: Erdos-Renyi-Kernel layer densities
    (RigL's: a layer keeps in proportion to the sum of its dimensions over their product, so no
    layer is emptied and large layers are sparsest), each layer's budget split equally over its
    output rows (every unit keeps inputs), ranked by the residual inside each row. Kept entries
    score 2 + s, pruned ones s, with s = residual / max residual in [0, 1], so the calibration at
    the target returns the spread mask exactly, and lower sparsities add the pruned entries with the
    largest residuals. ``layer_sparsity`` (``spread_flow``): these layer budgets instead of ERK's.
    ``cover="units"``: each input channel of a layer also keeps its best entry (:func:`cover_units`),
    and these cover entries score 3 + s (below)."""
    alloc = "erk" if layer_sparsity is None else dict(layer_sparsity)
    masks = _internal_masks(scores, target, CalibrationSettings(allocation=alloc, ranking="rows", min_keep=0))
    if cover == "units":
        transposed = getattr(scores, "transposed", frozenset())
        counts = {n: count_true(m) for n, m in masks.items()}
        raised = cover_budgets(counts, {n: cover_size(scores[n], n in transposed) for n in masks})
        if raised != counts:  # some layer keeps too few to cover its units: rebuild at the raised budgets
            exact = {n: 1.0 - k / masks[n].numel() for n, k in raised.items()}
            masks = _internal_masks(scores, target, CalibrationSettings(allocation=exact, ranking="rows", min_keep=0))
        covers = {}
        for n, m in masks.items():
            masks[n], covers[n] = _cover(scores[n], m, n in transposed)
    else:
        covers = {n: torch.zeros_like(m) for n, m in masks.items()}
    top = max(float(s.max()) for s in scores.values())
    top = top if top > 0 else 1.0
    # the cover's entries a tier above the rest of the kept ones: where the calibration's floors
    # (min_layer_density) take weights back from the spread mask, pooled by score, they come from
    # the rows' shares, not from the entries that give a unit its only input or output (CIFAR
    # ResNet-50 at 99%: the floor took 654 of the classifier's 2048 cover entries, whose residuals
    # are the smallest of the net, and stranded 2596 weights of the last block)
    return {n: s / top + 2.0 * masks[n].to(s.dtype) + covers[n].to(s.dtype) for n, s in scores.items()}


def _channels(score: torch.Tensor, transposed: bool) -> int:
    """Input channels of a weight: its dimension 1 (a conv's kernel taps belong to one channel),
    the rows' length for a Linear stored (in, out) or a 1-D weight."""
    return to_rows(score, transposed).shape[1] if transposed or score.dim() < 2 else score.shape[1]


def cover_size(score: torch.Tensor, transposed: bool = False) -> int:
    """Fewest entries that give every output row and every input channel of a weight one entry:
    max(rows, channels)."""
    return max(to_rows(score, transposed).shape[0], _channels(score, transposed))


def cover_budgets(counts: dict[str, int], needs: dict[str, int]) -> dict[str, int]:
    """Per-layer kept counts with the same total where every layer keeps at least ``needs`` (its
    :func:`cover_size`): the weights a layer lacks are taken from the others in proportion to what
    they keep beyond their own need (largest remainders, ties to the earlier layer). Unchanged if no
    layer lacks any, or if the total cannot give every layer its need.

    Why: the cover needs max(rows, channels) entries, and the layer budgets (the flow's, ERK's) do
    not know it: a wide-input layer with few outputs and a small budget (a 10-class classifier on
    thousands of features) would leave input channels unread and strand the weights into them.
    Moving the few weights it lacks from the large layers costs them a negligible share of their
    budget. (On the nets of ``yopo models`` the flow's budgets already cover at 90-99%.)"""
    lack = {n: needs[n] - k for n, k in counts.items() if k < needs[n]}
    deficit = sum(lack.values())
    slack = {n: k - needs[n] for n, k in counts.items() if k > needs[n]}
    if deficit == 0 or sum(slack.values()) < deficit:
        return dict(counts)
    total = sum(slack.values())
    share = {n: deficit * v // total for n, v in slack.items()}
    order = sorted(slack, key=lambda n: -((deficit * slack[n]) % total))  # stable: ties to the earlier layer
    for n in order[:deficit - sum(share.values())]:
        share[n] += 1
    return {n: needs[n] if n in lack else k - share.get(n, 0) for n, k in counts.items()}


def cover_units(score: torch.Tensor, mask: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """``mask`` (the weight's shape, bool) with the same count re-chosen so that every input channel
    and every output row keeps at least one entry (the best ones by ``score``), the rest of the
    count split equally over the rows (ranking ``rows``). Needs count >= max(rows, channels) (a
    cover exists; :func:`spread` raises the layer budgets to it first, :func:`cover_budgets`); else
    ``mask`` is returned unchanged.

    Which entries cover: each channel's best entry (over all rows and kernel taps) and the best
    entry of each row those miss, if that many fit; else (count close to max(rows, channels)) a
    greedy cover of exactly max(rows, channels) entries: channels in order of their best score, each
    taking its best entry among the rows not yet covered while some remain.

    Why: rows alone give every unit inputs, not outputs. An input channel none of whose weights is
    kept feeds nothing, so every weight into that unit lies on no input-output path: the
    row-balanced residual left 15 of ResNet-20's 64 classifier inputs without a weight at 98%, and
    76 of the 5418 kept weights (the last block's weights into those channels) were stranded. With
    every row and every input channel of every layer covered, each unit of a layered net has an
    input and an output, so every kept weight lies on a path. Grouped convolutions are covered per
    group-local input index (their weight's dimension 1)."""
    return _cover(score, mask, transposed)[0]


def _cover(score: torch.Tensor, mask: torch.Tensor, transposed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(:func:`cover_units`'s mask, its cover entries: the ones chosen before the rows' shares),
    both in the weight's shape; no cover entries where the mask is returned unchanged."""
    S2 = to_rows(score, transposed).float()
    o, d = S2.shape
    channels = _channels(score, transposed)
    taps = d // channels
    k = count_true(mask)
    if k < cover_size(score, transposed) or k >= o * d:
        return mask, torch.zeros_like(mask)
    per = S2.reshape(o, channels, taps)
    row_best, tap_of = per.max(dim=2)  # (o, c): each (row, channel)'s best tap, ties to the lower tap
    col = torch.arange(channels, device=S2.device) * taps
    forced = torch.zeros(o, d, dtype=torch.bool, device=S2.device)
    best_row = row_best.argmax(dim=0)  # (c,): each channel's best row, ties to the lower row
    forced[best_row, col + tap_of[best_row, torch.arange(channels, device=S2.device)]] = True
    missed = forced.sum(1) == 0
    if int(missed.sum()) + channels <= k:
        forced[missed, S2[missed].argmax(dim=1)] = True
    else:  # greedy cover of max(o, c) entries
        forced.zero_()
        free = torch.ones(o, dtype=torch.bool, device=S2.device)
        for c in torch.sort(-row_best.max(dim=0).values, stable=True).indices.tolist():
            cand = row_best[:, c].masked_fill(~free, -torch.inf) if bool(free.any()) else row_best[:, c]
            r = int(cand.argmax())
            forced[r, c * taps + int(tap_of[r, c])] = True
            free[r] = False
        rows = torch.nonzero(free).flatten()
        forced[rows, S2[rows].argmax(dim=1)] = True
    shape = tuple(score.shape)
    return from_rows(select(S2, k, "rows", forced), shape, transposed), from_rows(forced, shape, transposed)


def _flow(model, ctx, scores: dict[str, torch.Tensor], cfg, shape, weighting: str) -> dict[str, torch.Tensor]:
    """The iterative flow on the linearized net whose weights are ``weighting``: magnitude (|W|)
    or scale (each layer's mean |W|), times 1 + TIE_EPS * residual / max residual."""
    net = linearized(model).to(ctx.device)
    weights = {}
    with torch.no_grad():
        for n, s in scores.items():
            w = get_weight(net, n)  # |W| in the linearized copy
            s = s.to(device=w.device, dtype=w.dtype)
            base = w.mean() if weighting == "scale" else w.clone()
            w.copy_(base * (1.0 + TIE_EPS * s / s.max().clamp_min(1e-30)))
            weights[n] = w
    return iterative_flow(net, weights, ctx.layers, target=cfg.paths_target, rounds=cfg.paths_rounds,
                          schedule="exponential", input_shape=shape, device=ctx.device, reconnect=True)
