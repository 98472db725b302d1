"""Sanity-check mask transforms (Su et al. 2020; Ma et al. 2021)."""
import pytest
import torch

from yopo import calibrate
from yopo.core.calibration import mort
from yopo.experiment.sanity import (REINIT_OFFSET, VARIANTS, changed_fraction, check_shuffle, invert_scores, layer_counts,
                         shuffle_masks, variant_masks)


def _scores():
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.rand(16, 27, generator=g), "b.weight": torch.rand(10, 16, generator=g)}


def test_shuffle_keeps_layer_counts_and_changes_mask():
    masks = calibrate(_scores(), 0.8, mode="global")
    sh = shuffle_masks(masks, seed=3)
    assert layer_counts(sh) == layer_counts(masks)
    assert changed_fraction(masks, sh) > 0.3  # a random permutation moves most survivors
    assert check_shuffle(masks, sh) == changed_fraction(masks, sh)
    assert all(torch.equal(sh[n], shuffle_masks(masks, seed=3)[n]) for n in sh)  # seeded
    assert any(not torch.equal(sh[n], shuffle_masks(masks, seed=4)[n]) for n in sh)
    with pytest.raises(AssertionError, match="unchanged"):
        check_shuffle(masks, masks)
    bad = dict(sh, **{"a.weight": torch.ones_like(sh["a.weight"])})
    with pytest.raises(AssertionError, match="counts"):
        check_shuffle(masks, bad)


def test_invert_keeps_least_salient():
    s = {"w": torch.arange(10.0).reshape(1, 10)}
    m = calibrate(invert_scores(s), 0.7, mode="global", min_keep=0)
    assert m["w"].flatten().tolist() == [True] * 3 + [False] * 7


def test_variant_masks():
    s = _scores()
    def cal(sc):
        return mort(sc, 0.9, mode="global")

    base = cal(s).masks
    m, off, info = variant_masks("none", cal, s, seed=0)
    assert off == 0 and all(torch.equal(m[n], base[n]) for n in m)
    m, off, info = variant_masks("reinit", cal, s, seed=0)
    assert off == REINIT_OFFSET and all(torch.equal(m[n], base[n]) for n in m)
    m, off, info = variant_masks("shuffle", cal, s, seed=0)
    assert layer_counts(m) == layer_counts(base) and info["changed_fraction"] > 0
    m, off, info = variant_masks("invert", cal, s, seed=0)
    assert info["changed_fraction"] > 0.9
    assert sum(layer_counts(m).values()) == sum(layer_counts(base).values())
    with pytest.raises(ValueError, match="variant"):
        variant_masks("flip", cal, s, seed=0)
    assert VARIANTS == ("none", "shuffle", "reinit", "invert")
