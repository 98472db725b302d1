"""Applying masks: pruned weights stay exactly zero through optimizer steps; prune compatibility."""
import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import yopo
from yopo.core.masks import get_masks, reapply


def masked(tiny, s=0.8):
    masks = yopo.calibrate(yopo.score(tiny, "yopo", iters=20), s)
    yopo.apply_masks(tiny, masks)
    return masks


def pruned_values(model, masks):
    return torch.cat([model.get_parameter(n).detach()[~m] for n, m in masks.items()])


OPTIMIZERS = {
    "sgd_momentum_wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-4),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
}


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("amp", [False, True])
def test_pruned_weights_stay_exactly_zero(tiny, batch, opt, amp):
    masks = masked(tiny)
    assert yopo.sparsity(tiny) == pytest.approx(yopo.sparsity(masks))
    optimizer = OPTIMIZERS[opt](tiny.parameters())
    scaler = torch.amp.GradScaler("cpu", enabled=amp)
    x, y = batch
    for _ in range(6):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = nn.functional.cross_entropy(tiny(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    assert (pruned_values(tiny, masks) == 0).all()
    kept = torch.cat([tiny.get_parameter(n).detach()[m] for n, m in masks.items()])
    assert (kept != 0).float().mean() > 0.99  # the survivors did train
    yopo.assert_pruned_zero(tiny)


def test_sparsity_of_model_equals_target(tiny):
    masked(tiny, 0.8)
    n = sum(l.numel for l in yopo.prunable_layers(tiny))
    assert yopo.sparsity(tiny) == 1 - yopo.n_keep(0.8, n) / n


def test_enforce_after_step_covers_stale_optimizer_state(tiny, batch):
    x, y = batch
    opt = torch.optim.SGD(tiny.parameters(), lr=0.1, momentum=0.9)
    nn.functional.cross_entropy(tiny(x), y).backward()
    opt.step()  # momentum buffers now nonzero everywhere
    masks = masked(tiny)
    opt.zero_grad()
    nn.functional.cross_entropy(tiny(x), y).backward()
    opt.step()
    assert (pruned_values(tiny, masks) != 0).any()  # stale momentum moves pruned weights...
    yopo.enforce_after_step(opt, tiny)
    opt.zero_grad()
    nn.functional.cross_entropy(tiny(x), y).backward()
    opt.step()
    assert (pruned_values(tiny, masks) == 0).all()  # ...unless re-zeroed after each step
    with pytest.raises(RuntimeError, match="pruned weights of"):
        with torch.no_grad():
            tiny.conv1.weight.add_(1.0)
        yopo.assert_pruned_zero(tiny)


def test_deepcopy_and_reapply(tiny, batch):
    masks = masked(tiny)
    clone = copy.deepcopy(tiny)
    assert all(torch.equal(a, masks[k]) for k, a in get_masks(clone).items())
    yopo.apply_masks(clone, get_masks(clone))  # re-hook the copy's fresh parameters
    opt = torch.optim.Adam(clone.parameters(), lr=0.01)
    x, y = batch
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(clone(x), y).backward()
        opt.step()
    assert (pruned_values(clone, masks) == 0).all()


def test_torch_prune_roundtrip(tiny, batch):
    masks = masked(tiny)
    out = tiny(batch[0])
    yopo.to_torch_prune(tiny)
    assert hasattr(tiny.conv1, "weight_orig") and isinstance(tiny.conv1.weight_mask, torch.Tensor)
    assert prune.is_pruned(tiny)
    torch.testing.assert_close(tiny(batch[0]), out)
    back = yopo.from_torch_prune(tiny)
    assert not prune.is_pruned(tiny)
    assert all(torch.equal(back[k], masks[k]) for k in masks)
    assert all(torch.equal(get_masks(tiny)[k], masks[k]) for k in masks)


def test_remove_bakes_zeros(tiny):
    masks = masked(tiny)
    yopo.remove_masks(tiny)
    assert get_masks(tiny) == {}
    assert "conv1.weight_mask" not in tiny.state_dict()
    assert (pruned_values(tiny, masks) == 0).all()


def test_masks_follow_to_and_stay_out_of_state_dict(tiny):
    masks = masked(tiny)
    assert not any(k.endswith("weight_mask") for k in tiny.state_dict())
    tiny.to(torch.float64)
    reapply(tiny)
    assert (pruned_values(tiny, masks) == 0).all()


def test_apply_rejects_foreign_masks(tiny):
    with pytest.raises(KeyError, match="nope.weight"):
        yopo.apply_masks(tiny, {"nope.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"mask 'conv1.weight' has shape \(2, 2\)"):
        yopo.apply_masks(tiny, {"conv1.weight": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(TypeError, match="sparsity"):
        yopo.sparsity({})
