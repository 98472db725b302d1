"""N:M semi-structured masks: exactly N per group of M along the input dimension, nested across N,
deterministic ties, errors for indivisible layers, family re-thresholding, export message on CPU."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import yopo
from yopo.cli import main
from yopo.core.nm import (NMPattern, SemiStructuredUnavailable, group_ranks, is_nm, nm_calibrate, nm_masks,
                          semi_structured_unavailable, to_semi_structured)

PATTERNS = st.integers(2, 8).flatmap(lambda m: st.tuples(st.integers(1, m - 1), st.just(m)))


@st.composite
def weight_scores(draw):
    """(pattern, {name: scores}) with a Linear-shaped and a conv-shaped layer, input dims divisible
    by M; scores drawn from a few values so ties are common."""
    n, m = draw(PATTERNS)
    out = draw(st.integers(1, 5))
    groups = draw(st.integers(1, 4))
    kernel = draw(st.sampled_from([(), (3,), (2, 3)]))
    shape = (out, groups * m, *kernel)
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    levels = draw(st.integers(1, 6))
    s = torch.randint(0, levels, shape, generator=g).float()
    lin = torch.randint(0, levels, (out, groups * m), generator=g).float()
    return (n, m), {"conv.weight": s, "fc.weight": lin}


def groups_of(mask: torch.Tensor, m: int) -> torch.Tensor:
    """Explicit reference grouping: w[o, c:c+m, *k] for every o, kernel position and c step."""
    moved = mask.movedim(1, -1) if mask.dim() > 2 else mask  # (o, *k, in)
    return moved.reshape(*moved.shape[:-1], -1, m)


@settings(max_examples=60, deadline=None)
@given(weight_scores())
def test_exactly_n_per_group_along_input(case):
    (n, m), scores = case
    cal = nm_calibrate(scores, f"{n}:{m}")
    for name, mask in cal.masks.items():
        assert mask.shape == scores[name].shape and mask.dtype == torch.bool
        assert (groups_of(mask, m).sum(-1) == n).all()
        assert is_nm(mask, (n, m))
    assert cal.kept == sum(s.numel() for s in scores.values()) * n // m
    assert cal.sparsity == pytest.approx(1 - n / m)


@settings(max_examples=60, deadline=None)
@given(weight_scores())
def test_nested_across_n_and_ties_to_lower_index(case):
    (_, m), scores = case
    prev = None
    for n in range(1, m):
        masks = nm_masks(scores, (n, m))
        if prev is not None:
            assert all((prev[k] & ~masks[k]).sum() == 0 for k in masks)  # n-1:m inside n:m
        prev = masks
    for name, s in scores.items():  # a kept entry never scores below a dropped one of its group; ties: lower index
        ranks = groups_of(group_ranks(s, m), m)
        vals = groups_of(s, m)
        idx = torch.arange(m).expand_as(vals)
        for r in range(m - 1):
            a = torch.gather(vals, -1, (ranks == r).float().argmax(-1, keepdim=True))
            b = torch.gather(vals, -1, (ranks == r + 1).float().argmax(-1, keepdim=True))
            ia = torch.gather(idx, -1, (ranks == r).float().argmax(-1, keepdim=True))
            ib = torch.gather(idx, -1, (ranks == r + 1).float().argmax(-1, keepdim=True))
            assert ((a > b) | ((a == b) & (ia < ib))).all()


@settings(max_examples=30, deadline=None)
@given(weight_scores())
def test_same_scores_same_mask_bytes(case):
    (n, m), scores = case
    a = nm_masks(scores, (n, m))
    b = nm_masks({k: v.clone() for k, v in scores.items()}, (n, m))
    assert all(a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)


def test_all_ties_keep_the_first_n_of_each_group():
    s = {"w": torch.zeros(2, 8)}
    assert nm_masks(s, "2:4")["w"].tolist() == [[True, True, False, False] * 2] * 2


def test_conv_groups_are_input_channels_at_each_kernel_position():
    s = torch.zeros(1, 4, 2)  # (out, in, k): channel c at kernel position j
    s[0, 3, 0] = 1.0
    s[0, 2, 1] = 1.0
    mask = nm_masks({"c": s}, "1:4")["c"]
    assert mask[0, :, 0].tolist() == [False, False, False, True]
    assert mask[0, :, 1].tolist() == [False, False, True, False]


def test_indivisible_layer_error_and_dense_option(tiny):
    scores = yopo.score(tiny, "magnitude")
    with pytest.raises(ValueError, match=r"layer 'conv1.weight': input dimension 3 is not divisible by M=4"):
        nm_calibrate(scores, "2:4")
    cal = nm_calibrate(scores, "2:4", indivisible="dense")
    assert cal.dense == ("conv1.weight",) and cal.masks["conv1.weight"].all()
    yopo.apply_masks(tiny, cal.masks)
    assert yopo.sparsity(tiny) == pytest.approx(cal.sparsity)
    assert is_nm(tiny.fc1.weight.detach(), "2:4") and is_nm(tiny.conv2.weight.detach(), "2:4")


@pytest.mark.parametrize("bad", ["4:4", "0:4", "2-4", "a:b", (3, 2), "5:4"])
def test_bad_patterns(bad):
    with pytest.raises(ValueError, match="1 <= N < M"):
        NMPattern.parse(bad)


def test_family_rethresholds_to_a_pattern_without_rescoring(tmp_path):
    from yopo.models import get_model
    torch.manual_seed(0)
    model = get_model("mlp_digits")
    scores = yopo.score(model, "yopo", iters=10)
    fam = yopo.Family.from_scores(scores, yopo.prunable_layers(model), method="yopo", settings={}, seed=0)
    fam.save(tmp_path / "f.safetensors")
    loaded = yopo.Family.load(tmp_path / "f.safetensors")
    a, b = nm_masks(loaded, "2:4"), nm_masks(scores, "2:4")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_semi_structured_export_says_why_not_on_cpu(tiny):
    if semi_structured_unavailable() is None:
        pytest.skip("this machine has a GPU that supports semi-structured sparsity")
    with pytest.raises(SemiStructuredUnavailable, match="compute capability >= 8.0") as e:
        to_semi_structured(tiny)
    assert "\n" not in str(e.value)


def test_cli_pattern(tmp_path, capsys):
    out = tmp_path / "f.safetensors"
    assert main(["prune", "--model", "mlp_digits", "--iters", "5", "--pattern", "2:4", "--out", str(out),
                 "--mask-out", str(tmp_path / "m.safetensors")]) == 0
    text = capsys.readouterr().out
    assert "pattern 2:4" in text and "0.500000" in text
    masks, meta = yopo.load_mask(tmp_path / "m.safetensors")
    assert meta["pattern"] == "2:4" and all(is_nm(m, "2:4") for m in masks.values())
    assert main(["inspect", str(out), "--pattern", "1:4"]) == 0
    assert "pattern 1:4" in capsys.readouterr().out


@pytest.mark.parametrize("argv, msg", [
    (["--pattern", "2:4", "--sparsity", "0.8"], "both set"),
    (["--pattern", "2:4", "--col-keep", "1"], "no N:M meaning"),
    (["--pattern", "3:4", "--semi-structured-out", "x.pt"], "at most 2 of 4"),
    (["--pattern", "2:4", "--semi-structured-out", "x.pt", "--kept-scale", "layer_rms"],
     "--kept-scale layer_rms cannot act on --semi-structured-out"),
    (["--model", "resnet20", "--pattern", "2:4"], "'conv1.weight': input dimension 3 is not divisible by M=4"),
    (["--pattern", "2:2"], "1 <= N < M"),
])
def test_cli_pattern_errors(tmp_path, capsys, argv, msg):
    assert main(["prune", "--model", "mlp_digits", "--iters", "2", "--out", str(tmp_path / "f.safetensors"),
                 *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err
