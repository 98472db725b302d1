"""Channel-level (structured) pruning: one saliency per output channel, an exact channel budget,
and the channels each layer keeps. Physical removal lives in ``yopo.integrations.torch_pruning``
(it needs Torch-Pruning's dependency graph); this module is plain torch.

Channel saliency (:func:`channel_scores`) aggregates the per-weight scores of any registered
method over each output row (filter) of a layer. For YOPO the per-weight score is the NMF residual
S = | |W| - VH |; the aggregations are

* ``l1``: mean |S| of the row; ``l2``: root mean square of the row; ``max``: the row's largest entry;
* ``relative``: ||S_row||_2 / ||W_row||_2, the part of the row the rank-r fit leaves unexplained,
  relative to the row's own scale (scale-free, so rows of layers with different init scales compare).

With ``magnitude`` scores (S = |W|) and ``l1`` this is L1-norm filter pruning (Li et al. 2017).

Coupled channels. Output channels that must be removed together (a residual stream: the stem conv,
every block's last conv and the projection shortcuts of a ResNet stage all write the same channels)
form one :class:`ChannelGroup`; the groups come from a dependency graph (Torch-Pruning). A group's
channel score is the mean over its member layers of their channel scores. Every group keeps at
least ``min_channels`` (default 1) channels, so no layer is emptied.

Budget. Channel sparsity = fraction of output channels removed, counted over the prunable layers:
a group of ``c`` channels written by ``m`` layers counts ``m * c`` (removing one residual channel
removes it from all ``m`` layers). For a target ``s`` over ``T`` channels, ``n_keep(s, T)`` are
kept, exactly whenever the group multiplicities allow it (any group with ``m = 1``, e.g. a ResNet
block's first conv, makes every count reachable); otherwise the nearest reachable count below is
kept with a warning. The budget -> per-group split is :func:`allocate_channels` (``global``: one
ranking of all channels; ``uniform``: every group keeps the same fraction), kept separate so other
allocations can be added; :func:`select_channels` then keeps each group's top channels (ties to the
lower channel index).
"""
from __future__ import annotations

import heapq
import warnings
from dataclasses import dataclass, field

import torch

from .calibration import n_keep
from .layers import flat
from .validate import check_choice, check_int, check_sparsity, name_list

AGGREGATES = ("l1", "l2", "max", "relative")
ALLOCATIONS = ("global", "uniform")
DEFAULT_AGGREGATE = "l2"
DEFAULT_ALLOCATION = "uniform"


@dataclass(frozen=True)
class ChannelGroup:
    """Output channels removed together: ``layers`` (parameter names of the Conv/Linear weights
    that write them, model order) each have ``channels`` output channels."""

    layers: tuple[str, ...]
    channels: int

    @property
    def multiplicity(self) -> int:
        return len(self.layers)


def layer_groups(scores: dict[str, torch.Tensor]) -> list[ChannelGroup]:
    """Every layer its own group (no coupling): right for plain chains (an MLP, a VGG), wrong
    for residual networks, which need the dependency graph's groups."""
    return [ChannelGroup((n,), int(s.shape[0])) for n, s in scores.items()]


def channel_scores(scores: dict[str, torch.Tensor], aggregate: str = DEFAULT_AGGREGATE,
                   weights: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """{layer: (out,) float64 channel saliency} from per-weight ``scores`` (weight-shaped).
    ``relative`` needs the ``weights`` (the same names)."""
    check_choice("aggregate", aggregate, AGGREGATES)
    out = {}
    for name, s in scores.items():
        S = flat(s.detach()).double()
        if aggregate == "l1":
            out[name] = S.abs().mean(dim=1)
        elif aggregate == "l2":
            out[name] = S.pow(2).mean(dim=1).sqrt()
        elif aggregate == "max":
            out[name] = S.amax(dim=1)
        else:
            if weights is None or name not in weights:
                raise ValueError(f"aggregate='relative' needs the weights of {name!r} (pass weights=)")
            w = flat(weights[name].detach()).double().norm(dim=1)
            # an all-zero row has nothing to explain: its relative residual is 0 (pruned first)
            out[name] = torch.where(w > 0, S.norm(dim=1) / w.clamp_min(1e-300), torch.zeros_like(w))
    return out


def group_scores(groups: list[ChannelGroup], per_layer: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """(channels,) score of every group: the mean over its member layers."""
    out = []
    for g in groups:
        missing = [n for n in g.layers if n not in per_layer]
        if missing:
            raise ValueError(f"no channel scores for {missing[0]!r} (a member of a channel group); score every "
                             f"layer of the group")
        rows = torch.stack([per_layer[n] for n in g.layers])
        if rows.shape[1] != g.channels:
            raise ValueError(f"channel group {g.layers[0]!r}: {g.channels} channels but scores of length "
                             f"{rows.shape[1]}")
        out.append(rows.mean(dim=0))
    return out


def _order(score: torch.Tensor) -> torch.Tensor:
    """Channel indices best first; ties to the lower index."""
    return torch.sort(score, descending=True, stable=True).indices


def allocate_channels(scores: list[torch.Tensor], multiplicity: list[int], keep: int,
                      allocation: str = DEFAULT_ALLOCATION, min_channels: int = 1) -> list[int]:
    """Channels kept per group so that ``sum(k_g * multiplicity_g) == keep`` where reachable.

    ``global``: all channels ranked by score (ties: earlier group, lower index); each group's
    ``min_channels`` best are kept first, then channels in rank order while they fit the budget.
    ``uniform``: every group keeps (nearly) the same fraction: channels are added one at a time
    to the group with the smallest kept fraction ((k + 1/2) / size, Webster's divisor method; ties
    to the earlier group) among those that still fit.

    Both never overshoot. When they stop short, every channel of multiplicity 1 is already kept
    (one always fits); one repair step then adds the next coupled channel (multiplicity m) and
    drops m - room single channels (the least important / of the fullest groups), which makes
    every reachable total exact. Returns [k_g]."""
    check_choice("allocation", allocation, ALLOCATIONS)
    check_int("min_channels", min_channels, 0)
    sizes = [int(s.numel()) for s in scores]
    lows = [min(min_channels, c) for c in sizes]
    counts = list(lows)
    room = keep - sum(k * m for k, m in zip(counts, multiplicity))
    orders = [_order(s) for s in scores]
    if allocation == "uniform":
        room = _webster_fill(counts, sizes, multiplicity, room)
        add_key = lambda g: ((counts[g] + 0.5) / sizes[g], g)  # noqa: E731
        drop_key = lambda g: (-(counts[g] - 0.5) / sizes[g], -g)  # noqa: E731
    else:
        room = _global_fill(counts, orders, scores, lows, multiplicity, room)
        add_key = lambda g: (-float(scores[g][orders[g][counts[g]]]), g)  # noqa: E731
        drop_key = lambda g: (float(scores[g][orders[g][counts[g] - 1]]), -g)  # noqa: E731
    if room > 0:
        coarse = [g for g in range(len(sizes)) if multiplicity[g] > 1 and counts[g] < sizes[g]]
        fine = [g for g in range(len(sizes)) if multiplicity[g] == 1]
        if coarse:
            g = min(coarse, key=add_key)
            over = multiplicity[g] - room
            if sum(counts[f] - lows[f] for f in fine) >= over:
                counts[g] += 1
                for _ in range(over):
                    f = min((f for f in fine if counts[f] > lows[f]), key=drop_key)
                    counts[f] -= 1
    return counts


def _global_fill(counts, orders, scores, lows, multiplicity, room: int) -> int:
    """Add channels in one global ranking while they fit; returns the room left. Within a group
    the ranking follows the group's own order, so a group always keeps its best channels (a
    skipped channel would not fit later either: the room only shrinks)."""
    if room <= 0:
        return room
    keys, owners = [], []
    for g, (s, order) in enumerate(zip(scores, orders)):
        rest = order[lows[g]:]
        keys.append(s[rest].double())
        owners.append(torch.full((rest.numel(),), g, dtype=torch.long))
    key, owner = torch.cat(keys), torch.cat(owners)
    # (score desc, group asc, rank in group asc): stable sorts, least significant key first
    idx = torch.sort(owner, stable=True).indices
    idx = idx[torch.sort(key[idx], descending=True, stable=True).indices]
    for g in owner[idx].tolist():
        m = multiplicity[g]
        if m <= room:
            counts[g] += 1
            room -= m
            if room == 0:
                break
    return room


def _webster_fill(counts: list[int], sizes: list[int], multiplicity: list[int], room: int) -> int:
    """Add channels one at a time to the group with the smallest kept fraction among those whose
    multiplicity still fits the room; returns the room left."""
    heap = [((k + 0.5) / c, g) for g, (k, c) in enumerate(zip(counts, sizes)) if k < c]
    heapq.heapify(heap)
    while room > 0 and heap:
        _, g = heapq.heappop(heap)
        if multiplicity[g] > room:  # never fits again: the room only shrinks
            continue
        counts[g] += 1
        room -= multiplicity[g]
        if counts[g] < sizes[g]:
            heapq.heappush(heap, ((counts[g] + 0.5) / sizes[g], g))
    return room


def select_channels(scores: list[torch.Tensor], counts: list[int]) -> list[torch.Tensor]:
    """Bool (channels,) keep mask per group: its ``counts[g]`` best channels (ties to lower index)."""
    out = []
    for s, k in zip(scores, counts):
        keep = torch.zeros(s.numel(), dtype=torch.bool)
        keep[_order(s)[:k]] = True
        out.append(keep)
    return out


@dataclass
class ChannelPlan:
    """Which output channels every prunable layer keeps, and the budget met."""

    groups: list[ChannelGroup]
    keep: list[torch.Tensor]  # bool (channels,) per group
    target: float
    allocation: str
    aggregate: str | None = None
    kept: int = field(init=False)
    total: int = field(init=False)

    def __post_init__(self):
        self.kept = sum(int(k.sum()) * g.multiplicity for g, k in zip(self.groups, self.keep))
        self.total = sum(g.channels * g.multiplicity for g in self.groups)

    @property
    def sparsity(self) -> float:
        """Fraction of the prunable layers' output channels removed."""
        return 1.0 - self.kept / self.total

    def layer_keep(self) -> dict[str, torch.Tensor]:
        """{layer (parameter name): bool (out,) channels kept}."""
        return {n: k for g, k in zip(self.groups, self.keep) for n in g.layers}

    def layer_channels(self) -> dict[str, tuple[int, int]]:
        """{layer: (kept, total) output channels}."""
        return {n: (int(k.sum()), g.channels) for g, k in zip(self.groups, self.keep) for n in g.layers}


def plan_channels(scores: dict[str, torch.Tensor], sparsity: float, *, groups: list[ChannelGroup] | None = None,
                  aggregate: str = DEFAULT_AGGREGATE, allocation: str = DEFAULT_ALLOCATION, weights=None,
                  min_channels: int = 1) -> ChannelPlan:
    """Channel plan at ``sparsity`` from per-weight ``scores`` of any method (``groups`` default:
    every scored layer alone, see :func:`layer_groups`)."""
    sparsity = check_sparsity(sparsity)
    groups = layer_groups(scores) if groups is None else groups
    if not groups:
        raise ValueError("no prunable channel groups (every group holds an excluded or kept-output layer)")
    per_layer = channel_scores({n: scores[n] for g in groups for n in g.layers if n in scores}, aggregate, weights)
    gs = group_scores(groups, per_layer)
    mult = [g.multiplicity for g in groups]
    total = sum(g.channels * g.multiplicity for g in groups)
    want = n_keep(sparsity, total)
    floor = sum(min(min_channels, g.channels) * g.multiplicity for g in groups)
    if want < floor:
        warnings.warn(f"channel sparsity {sparsity} would empty a layer: every group keeps at least "
                      f"{min_channels} channel(s), i.e. {floor} of {total}; using sparsity {1 - floor / total:.6f}")
        want = floor
    counts = allocate_channels(gs, mult, want, allocation, min_channels)
    plan = ChannelPlan(groups, select_channels(gs, counts), sparsity, allocation, aggregate)
    starved = [g.layers[0] for g, k in zip(groups, counts) if k <= min_channels < g.channels]
    if starved and want > floor:
        # a layer cut to its floor is usually a sign of incomparable scores across layers (e.g.
        # a YOPO layer whose fan-in is at most the NMF rank is fit exactly: residual ~ 0)
        warnings.warn(f"channel plan keeps only {min_channels} channel(s) of {len(starved)} layer group(s) "
                      f"({name_list(starved, 3)}) with allocation="
                      f"{allocation!r}; consider allocation='uniform'")
    if plan.kept != want:
        warnings.warn(f"channel budget {want} of {total} is not reachable with these coupled groups; kept {plan.kept} "
                      f"(sparsity {plan.sparsity:.6f} instead of {sparsity})")
    return plan
