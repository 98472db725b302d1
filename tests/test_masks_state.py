"""Masks stay out of the state dict (a masked checkpoint loads into a plain model), older
checkpoints with ``weight_mask`` entries still load, and pruning is a fill (Inf/NaN -> 0)."""
import copy

import pytest
import torch
from torch import nn

import yopo
from yopo.core.masks import get_masks, reapply, split_state_dict

from conftest import TinyNet


def masked(tiny, s=0.7):
    masks = yopo.calibrate(yopo.score(tiny, "magnitude"), s)
    yopo.apply_masks(tiny, masks)
    return masks


def test_masked_state_dict_loads_strictly_into_a_plain_model(tiny, batch):
    masks = masked(tiny)
    plain = TinyNet()
    plain.load_state_dict(tiny.state_dict())  # strict by default
    torch.testing.assert_close(plain(batch[0]), tiny(batch[0]))
    assert get_masks(plain) == {}
    for n, m in masks.items():
        assert (plain.get_parameter(n).detach()[~m] == 0).all()


def test_legacy_state_dict_with_mask_entries(tiny):
    masks = masked(tiny)
    legacy = dict(tiny.state_dict())
    other = {n: ~m for n, m in masks.items()}  # a different mask, as an old checkpoint would carry
    legacy.update({n[: -len("weight")] + "weight_mask": m for n, m in other.items()})
    # a masked model consumes the entries: its masks become the checkpoint's
    tiny.load_state_dict(legacy)
    assert all(torch.equal(get_masks(tiny)[n], other[n]) for n in other)
    # a plain model takes them through split_state_dict
    plain_state, found = split_state_dict(legacy)
    assert set(found) == set(other) and all(torch.equal(found[n], other[n]) for n in other)
    TinyNet().load_state_dict(plain_state)
    with pytest.raises(RuntimeError, match="weight_mask"):
        TinyNet().load_state_dict(legacy)  # without the split, a plain model rejects the extra keys


def test_loading_dense_weights_keeps_pruned_entries_zero(tiny):
    masks = masked(tiny)
    dense = TinyNet()
    with torch.no_grad():
        for p in dense.parameters():
            p.fill_(1.0)
    tiny.load_state_dict(dense.state_dict())
    for n, m in masks.items():
        w = tiny.get_parameter(n).detach()
        assert (w[~m] == 0).all() and (w[m] == 1).all()


def test_deepcopy_then_remove_masks_then_load(tiny):
    masked(tiny)
    clone = copy.deepcopy(tiny)
    yopo.apply_masks(clone, get_masks(clone))
    yopo.remove_masks(clone)
    clone.load_state_dict(TinyNet().state_dict())  # stale hooks of the copy do nothing
    assert get_masks(clone) == {}


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_apply_and_reapply_fill_nonfinite_pruned_entries(tiny, bad):
    masks = yopo.calibrate(yopo.score(tiny, "magnitude"), 0.6)
    with torch.no_grad():
        for n, m in masks.items():
            tiny.get_parameter(n)[~m] = bad
    yopo.apply_masks(tiny, masks)
    for n, m in masks.items():
        w = tiny.get_parameter(n).detach()
        assert (w[~m] == 0).all() and torch.isfinite(w).all()
    with torch.no_grad():
        for n, m in masks.items():
            tiny.get_parameter(n)[~m] = bad  # e.g. an optimizer state that overflowed
    reapply(tiny)
    for n, m in masks.items():
        assert (tiny.get_parameter(n).detach()[~m] == 0).all()
    yopo.assert_pruned_zero(tiny)


def test_gradient_hook_fills_nonfinite_gradients(tiny):
    masks = masked(tiny)
    w = tiny.conv1.weight
    m = masks["conv1.weight"]
    coef = torch.where(m, torch.ones_like(w), torch.full_like(w, float("inf"))).detach()
    (w * coef).nan_to_num(0.0).sum().backward()  # d/dw = coef: Inf in pruned positions
    assert (w.grad[~m] == 0).all() and (w.grad[m] == 1).all()


def test_resume_reads_masks_beside_the_state_dict(tmp_path):
    from yopo.experiment.train import TrainConfig, run
    from yopo.experiment.train.loop import load_checkpoint
    from yopo.models import build

    cfg = TrainConfig(model="mlp_digits", epochs=1, device="cpu", progress=False)
    run(cfg, method="random", sparsity=0.6, out_dir=tmp_path)
    blob = load_checkpoint(tmp_path / "checkpoint.pt")
    assert blob["masks"] and not any(k.endswith("weight_mask") for k in blob["model"])
    build("mlp_digits", 10, input_size=64).load_state_dict(blob["model"])  # strict, into a plain model
    import dataclasses
    res = run(dataclasses.replace(cfg, epochs=2), method="random", sparsity=0.6, out_dir=tmp_path, resume=True)
    assert res["epochs"] == 2 and abs(res["sparsity"] - 0.6) < 1e-3
    after = load_checkpoint(tmp_path / "checkpoint.pt")
    assert all(torch.equal(after["masks"][n], m) for n, m in blob["masks"].items())
    for n, m in after["masks"].items():
        assert (after["model"][n][~m] == 0).all()
