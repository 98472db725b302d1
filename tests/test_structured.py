"""Channel-level pruning: channel saliency, exact channel budgets over coupled groups, physical
removal with Torch-Pruning on ResNet-20 and VGG-11 (shapes, parameter counts, function, training)."""
import warnings

import pytest
import torch
from torch import nn

import yopo
from yopo.core.calibration import n_keep
from yopo.core.structured import (ChannelGroup, allocate_channels, channel_scores, layer_groups, plan_channels,
                                  select_channels)
from yopo.models import build

tp = pytest.importorskip("torch_pruning", reason="physical removal needs the optional torch-pruning package")
from yopo.integrations.torch_pruning import channel_groups, prune_channels, remove_channels  # noqa: E402

X = torch.zeros(1, 3, 32, 32)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def resnet20_expected_params(kept: dict[str, int]) -> int:
    """Parameters of a channel-pruned CIFAR ResNet-20 from its kept output channels per conv,
    counted from the architecture (not from the pruned model)."""
    stream = kept["conv1.weight"]
    total = 3 * stream * 9 + 2 * stream  # stem conv + bn
    for stage in (1, 2, 3):
        for block in range(3):
            p = f"layer{stage}.{block}."
            mid, out = kept[p + "conv1.weight"], kept[p + "conv2.weight"]
            total += stream * mid * 9 + 2 * mid + mid * out * 9 + 2 * out
            if stage > 1 and block == 0:
                assert kept[p + "shortcut.0.weight"] == out  # coupled by the residual addition
                total += stream * out + 2 * out
            else:
                assert out == stream  # identity shortcut: the block writes the stream's channels
            stream = out
    return total + stream * 10 + 10


def vgg11_expected_params(kept: list[int]) -> int:
    total, cin = 0, 3
    for k in kept:
        total += cin * k * 9 + 2 * k
        cin = k
    return total + cin * 10 + 10


def test_resnet20_groups_couple_residual_streams():
    model = build("resnet20", 10, init="kaiming_normal", seed=0)
    groups = channel_groups(model, X)
    coupled = [g for g in groups if g.multiplicity > 1]
    assert [g.layers for g in coupled] == [
        ("conv1.weight", "layer1.0.conv2.weight", "layer1.1.conv2.weight", "layer1.2.conv2.weight"),
        ("layer2.0.conv2.weight", "layer2.0.shortcut.0.weight", "layer2.1.conv2.weight", "layer2.2.conv2.weight"),
        ("layer3.0.conv2.weight", "layer3.0.shortcut.0.weight", "layer3.1.conv2.weight", "layer3.2.conv2.weight"),
    ]
    assert sum(g.multiplicity == 1 for g in groups) == 9  # every block's first conv
    assert sum(g.channels * g.multiplicity for g in groups) == 784
    assert all("fc.weight" not in g.layers for g in groups)  # the classifier's outputs are kept


@pytest.mark.parametrize("allocation", ["global", "uniform"])
@pytest.mark.parametrize("sparsity", [0.5, 0.75])
def test_resnet20_physical_removal(allocation, sparsity):
    torch.manual_seed(0)
    model = build("resnet20", 10, init="kaiming_normal", seed=0)
    small, plan = prune_channels(model, X, sparsity, method="yopo", iters=10, allocation=allocation)
    assert plan.kept == n_keep(sparsity, plan.total)  # exact channel budget
    kept = {n: k for n, (k, _) in plan.layer_channels().items()}
    for name, k in kept.items():
        assert small.get_parameter(name).shape[0] == k
    assert n_params(small) == resnet20_expected_params(kept) < n_params(model)
    assert small.fc.out_features == 10
    x = torch.randn(4, 3, 32, 32)
    out = small(x)
    assert out.shape == model(x).shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in small.parameters())
    assert n_params(model) == 272474  # the caller's model is unchanged


def test_removal_matches_zeroing_the_dropped_filters():
    """At init (BN beta 0, running mean 0) a filter set to zero outputs exact zeros through BN and
    ReLU, so removing the dropped channels must not change the eval-mode function: this checks
    that Torch-Pruning removed exactly the plan's channels, residual streams included."""
    model = build("resnet20", 10, init="kaiming_normal", seed=0).eval()
    small, plan = prune_channels(model, X, 0.6, method="magnitude", allocation="global")
    zeroed = build("resnet20", 10, init="kaiming_normal", seed=0).eval()
    with torch.no_grad():
        for name, keep in plan.layer_keep().items():
            zeroed.get_parameter(name)[~keep] = 0
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(small.eval()(x), zeroed(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("allocation", ["global", "uniform"])
def test_vgg11_physical_removal(allocation):
    model = build("vgg11", 10, init="kaiming_normal", seed=0)
    small, plan = prune_channels(model, X, 0.5, method="yopo", iters=5, allocation=allocation)
    assert plan.kept == n_keep(0.5, plan.total) and plan.total == 2752
    convs = [n for n, _ in small.named_modules() if isinstance(_, nn.Conv2d)]
    kept = [plan.layer_channels()[f"{n}.weight"][0] for n in convs]
    assert n_params(small) == vgg11_expected_params(kept)
    out = small(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.sum().backward()
    opt = torch.optim.SGD(small.parameters(), lr=0.1)
    opt.step()  # it trains: a plain dense model


def test_exclude_keeps_a_whole_coupled_group():
    model = build("resnet20", 10, init="kaiming_normal", seed=0)
    groups = channel_groups(model, X, exclude=("layer2.1.conv2",))
    names = {n for g in groups for n in g.layers}
    assert "layer2.0.shortcut.0.weight" not in names and "layer2.1.conv1.weight" in names
    with pytest.raises(ValueError, match="matches no prunable layer"):
        channel_groups(model, X, exclude=("nope",))


def test_masked_model_is_refused():
    model = build("vgg11", 10, init="kaiming_normal", seed=0)
    yopo.apply_masks(model, yopo.calibrate(yopo.score(model, "magnitude"), 0.5))
    plan = plan_channels(yopo.score(model, "magnitude", exclude=(":last",)), 0.5)
    with pytest.raises(ValueError, match="remove_masks"):
        remove_channels(model, plan, X)


# --- pure planning (no Torch-Pruning) ---

def test_channel_scores_aggregations():
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3)
    conv = nn.Sequential(nn.Conv2d(4, 6, 3))
    s = {"w": yopo.score(conv, "magnitude")["0.weight"]}
    filt = conv[0].weight.detach().double()
    # magnitude + l1 = L1-norm filter pruning (Li et al.): sum |W| per filter (here / fan-in 36)
    torch.testing.assert_close(channel_scores(s, "l1")["w"] * 36, filt.abs().sum(dim=(1, 2, 3)))
    torch.testing.assert_close(channel_scores(s, "l2")["w"] * 6, filt.flatten(1).norm(dim=1))
    torch.testing.assert_close(channel_scores(s, "max")["w"], filt.abs().flatten(1).amax(1))
    # relative is scale-free: scaling both S and W by c leaves it unchanged
    a = channel_scores({"w": w.abs()}, "relative", {"w": w})["w"]
    b = channel_scores({"w": 3 * w.abs()}, "relative", {"w": 3 * w})["w"]
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="needs the weights"):
        channel_scores({"w": w}, "relative")
    with pytest.raises(ValueError, match="aggregate='l3' is not allowed"):
        channel_scores({"w": w}, "l3")


def test_allocation_exact_with_mixed_multiplicities():
    g = torch.Generator().manual_seed(0)
    scores = [torch.rand(16, generator=g), torch.rand(16, generator=g), torch.rand(32, generator=g)]
    mult = [4, 1, 4]
    total = 16 * 4 + 16 + 32 * 4
    for keep in range(sum(mult), total + 1):  # every total from the floor up is reachable here
        for allocation in ("global", "uniform"):
            counts = allocate_channels(scores, mult, keep, allocation)
            assert sum(c * m for c, m in zip(counts, mult)) == keep
            assert all(1 <= c <= s.numel() for c, s in zip(counts, scores))


def test_uniform_keeps_equal_fractions_and_global_follows_scores():
    scores = [torch.arange(8.0), torch.arange(8.0) + 100]
    assert allocate_channels(scores, [1, 1], 8, "uniform") == [4, 4]
    assert allocate_channels(scores, [1, 1], 8, "global") == [1, 7]  # one channel kept per group at least
    keep = select_channels(scores, [1, 7])
    assert keep[0].tolist() == [False] * 7 + [True]
    assert keep[1].tolist() == [False] + [True] * 7


def test_ties_go_to_the_lower_channel_index_and_plans_are_deterministic():
    scores = {"a.weight": torch.ones(6, 3), "b.weight": torch.ones(4, 2)}
    plan = plan_channels(scores, 0.5, allocation="uniform")
    assert plan.layer_keep()["a.weight"].tolist() == [True] * 3 + [False] * 3
    again = plan_channels({k: v.clone() for k, v in scores.items()}, 0.5, allocation="uniform")
    assert all(torch.equal(x, y) for x, y in zip(plan.keep, again.keep))


def test_unreachable_budget_warns_and_degenerate_budget_keeps_one_channel():
    groups = [ChannelGroup(("a.weight", "b.weight"), 4), ChannelGroup(("c.weight", "d.weight"), 4)]
    scores = {n: torch.rand(4, 3) for g in groups for n in g.layers}
    with pytest.warns(UserWarning, match="not reachable"):
        plan = plan_channels(scores, 0.5 + 1 / 16, groups=groups, allocation="global")  # 7 of 16: odd
    assert plan.kept == 6
    with pytest.warns(UserWarning, match="would empty a layer"):
        plan = plan_channels(scores, 0.99, groups=groups)
    assert [int(k.sum()) for k in plan.keep] == [1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plan_channels(scores, 0.5, groups=groups).kept == 8
    assert len(layer_groups(scores)) == 4


def test_channel_pruned_model_trains_in_the_training_loop():
    from yopo.experiment.data import load_data
    from yopo.experiment.train import TrainConfig, train

    torch.manual_seed(0)
    data = load_data("digits", batch_size=64, seed=0)
    model = build("cnn_digits", 10, init="kaiming_normal", seed=0)
    small, plan = prune_channels(model, torch.zeros(1, 1, 8, 8), 0.5, method="yopo", iters=10, allocation="uniform")
    assert [k for k, _ in plan.layer_channels().values()] == [8, 16]
    res = train(small, data, TrainConfig(model="cnn_digits", dataset="digits", epochs=2, device="cpu",
                                         progress=False, checkpoint=False))
    assert res["test_acc"] > 0.5  # chance is 0.1
