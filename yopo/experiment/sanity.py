"""Sanity-check mask transforms for pruning at initialization (Su et al. 2020; Ma et al. 2021).

A PaI method passes a sanity check when the control *hurts*: if shuffling a mask within each
layer, re-drawing the weights under it, or pruning by the inverted score trains as well as the
original, the method's per-weight choices carry no information beyond per-layer ratios.

Variants (the ``variant`` axis of a sweep):

* ``none``    the method's mask on the initialization it was computed from.
* ``shuffle`` layerwise shuffled mask: a random permutation of each layer's mask entries, so every
  layer keeps exactly its number of survivors (per-layer ratios unchanged) but not which ones.
* ``reinit``  the same mask, weights re-drawn: the model is initialized from another seed
  (:func:`reinit_seed`) before the mask is applied.
* ``invert``  inverted scores: the mask calibrated from ``-S`` (keeps the *least* salient weights)
  at the same budget and mode.
"""
from __future__ import annotations

import zlib

import torch

VARIANTS = ("none", "shuffle", "reinit", "invert")
REINIT_OFFSET = 7919  # seed of the re-drawn initialization = seed + REINIT_OFFSET


def _gen(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63 - 1))


def shuffle_masks(masks: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Permute the entries of every layer's mask uniformly at random (per-layer counts kept)."""
    out = {}
    for name, m in masks.items():
        flat = m.detach().cpu().flatten().bool()
        perm = torch.randperm(flat.numel(), generator=_gen(seed, name))
        out[name] = flat[perm].reshape(m.shape).to(m.device)
    return out


def invert_scores(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scores whose order is reversed: calibrating them keeps the least salient weights."""
    return {n: -s for n, s in scores.items()}


def reinit_seed(seed: int) -> int:
    """Seed of the fresh initialization used by the ``reinit`` control."""
    return int(seed) + REINIT_OFFSET


def layer_counts(masks: dict[str, torch.Tensor]) -> dict[str, int]:
    return {n: int(m.sum()) for n, m in masks.items()}


def changed_fraction(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Fraction of *kept* entries of ``a`` that are not kept in ``b`` (0 = same mask)."""
    kept = moved = 0
    for n, m in a.items():
        m = m.bool()
        kept += int(m.sum())
        moved += int((m & ~b[n].bool()).sum())
    return moved / kept if kept else 0.0


def check_shuffle(original: dict[str, torch.Tensor], shuffled: dict[str, torch.Tensor]) -> float:
    """Verify a shuffled mask keeps per-layer counts and actually differs; returns the changed
    fraction. Raises ``AssertionError`` if counts differ or a shufflable mask came back unchanged."""
    if layer_counts(original) != layer_counts(shuffled):
        raise AssertionError("shuffled mask changed per-layer survivor counts")
    frac = changed_fraction(original, shuffled)
    shufflable = any(0 < int(m.sum()) < m.numel() for m in original.values())
    if shufflable and frac == 0.0:
        raise AssertionError("shuffle left the mask unchanged")
    return frac


def variant_masks(variant: str, calibrate, scores: dict[str, torch.Tensor], seed: int):
    """Masks for ``variant`` given ``calibrate(scores) -> Calibration`` and the method's scores.

    Returns ``(masks, init_seed_offset, info)``: the masks to apply, how much to add to the init
    seed (non-zero only for ``reinit``), and a dict of diagnostics for the run record.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}")
    if variant == "invert":
        cal = calibrate(invert_scores(scores))
        base = calibrate(scores).masks
        return cal.masks, 0, {"changed_fraction": changed_fraction(base, cal.masks)}
    cal = calibrate(scores)
    if variant == "shuffle":
        sh = shuffle_masks(cal.masks, seed)
        return sh, 0, {"changed_fraction": check_shuffle(cal.masks, sh)}
    if variant == "reinit":
        return cal.masks, REINIT_OFFSET, {}
    return cal.masks, 0, {}
