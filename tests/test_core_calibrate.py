"""MORT calibration: exact budgets, nesting (Prop. 2), monotonicity, survival constraints, ties."""
import math
from fractions import Fraction
import warnings

import pytest
import torch
from hypothesis import given, settings, strategies as st

from yopo.core.calibration import calibrate, mort, n_keep, robust_stats, topk_mask, webster

MODES = ["global", "layerwise", "local"]


def rand_scores(shapes, seed=0, discrete=False):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, shape in enumerate(shapes):
        s = torch.rand(shape, generator=g) * (i + 1)  # layers on different scales
        out[f"l{i}.weight"] = s.round(decimals=1) if discrete else s
    return out


def kept(masks):
    return sum(int(m.sum()) for m in masks.values())


shapes_st = st.lists(
    st.tuples(st.integers(1, 9), st.integers(1, 7), st.sampled_from([(), (3,), (2, 2)])).map(
        lambda t: (t[0], t[1]) + t[2]), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(shapes=shapes_st, s=st.floats(0, 0.999), mode=st.sampled_from(MODES), robust=st.sampled_from(["mad", "std"]),
       discrete=st.booleans(), seed=st.integers(0, 10))
def test_exact_budget_without_keep_constraints(shapes, s, mode, robust, discrete, seed):
    scores = rand_scores(shapes, seed, discrete)
    n = sum(x.numel() for x in scores.values())
    if robust == "std" and mode != "layerwise":  # cannot act there: an error, not a silent no-op
        with pytest.raises(ValueError, match="robust acts with allocation='layerwise' only"):
            calibrate(scores, s, mode=mode, robust=robust, min_keep=0)
        return
    masks = calibrate(scores, s, mode=mode, robust=robust, min_keep=0)
    assert kept(masks) == n_keep(s, n)
    assert all(m.dtype == torch.bool and m.shape == scores[k].shape for k, m in masks.items())


@settings(max_examples=40, deadline=None)
@given(shapes=shapes_st, s=st.floats(0, 0.999), mode=st.sampled_from(MODES), m=st.integers(1, 3),
       seed=st.integers(0, 10))
def test_exact_budget_with_min_keep_when_feasible(shapes, s, mode, m, seed):
    scores = rand_scores(shapes, seed, discrete=True)
    n = sum(x.numel() for x in scores.values())
    forced = sum(x.shape[0] * min(m, x[0].numel()) for x in scores.values())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        masks = calibrate(scores, s, mode=mode, min_keep=m)
    expect = max(n_keep(s, n), forced)
    assert kept(masks) == expect
    infeasible = [x for x in w if "infeasible" in str(x.message)]
    assert (len(infeasible) > 0) == (n_keep(s, n) < forced)  # warned exactly when infeasible
    for name, mask in masks.items():
        rows = mask.reshape(mask.shape[0], -1).sum(1)
        assert (rows >= min(m, mask[0].numel())).all(), name


@settings(max_examples=40, deadline=None)
@given(shapes=shapes_st, s1=st.floats(0, 0.99), s2=st.floats(0, 0.99), mode=st.sampled_from(MODES),
       discrete=st.booleans(), m=st.integers(0, 2))
def test_masks_are_nested_across_sparsities(shapes, s1, s2, mode, discrete, m):
    lo, hi = sorted((s1, s2))
    scores = rand_scores(shapes, 3, discrete)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = calibrate(scores, lo, mode=mode, min_keep=m)
        b = calibrate(scores, hi, mode=mode, min_keep=m)
    for k in scores:
        assert not (b[k] & ~a[k]).any(), "survivors at the higher sparsity must survive at the lower one"


def test_achieved_sparsity_is_monotone_in_alpha():
    scores = rand_scores([(16, 9), (8, 27), (4, 5)], 1)
    for mode in ("global", "layerwise"):
        stats = {}
        if mode == "global":
            pooled = torch.cat([s.flatten() for s in scores.values()])
            stats = {k: robust_stats(pooled, "mad") for k in scores}
        else:
            stats = {k: robust_stats(s, "mad") for k, s in scores.items()}
        prev = -1.0
        for alpha in torch.linspace(-3, 6, 50).tolist():
            sp = 1 - sum(int((s > stats[k][0] + alpha * stats[k][1]).sum()) for k, s in scores.items()) / 601
            assert sp >= prev
            prev = sp


@pytest.mark.parametrize("mode,robust", [("global", "mad"), ("layerwise", "mad"), ("layerwise", "std")])
def test_bisection_matches_exact_selection_on_continuous_scores(mode, robust):
    scores = rand_scores([(32, 18), (16, 45), (10, 16)], 7)
    for s in (0.3, 0.7, 0.9):
        exact = mort(scores, s, mode=mode, robust=robust, min_keep=1)
        bis = mort(scores, s, mode=mode, robust=robust, min_keep=1, solver="bisect", tol=1e-12)
        for k in scores:
            assert torch.equal(exact.masks[k], bis.masks[k])
        # the reported threshold reproduces the mask with the strict '>' rule: everything above
        # tau is kept, and what is kept below it is only the min-keep survivors (one per row)
        for k, sc in scores.items():
            above = sc > exact.thresholds[k]
            assert not (above & ~exact.masks[k]).any()
            assert int((exact.masks[k] & ~above).sum()) <= sc.shape[0]


def test_global_threshold_rule_reproduces_mask():
    scores = rand_scores([(20, 10), (10, 30)], 2)
    cal = mort(scores, 0.8, mode="global", min_keep=0)
    loc, scale = robust_stats(torch.cat([s.flatten() for s in scores.values()]), "mad")
    tau = loc + cal.alpha * scale
    for k, s in scores.items():
        assert torch.equal(s > tau + 1e-6 * scale, cal.masks[k]) or torch.equal(s > tau, cal.masks[k])


def test_ties_are_broken_by_position_deterministically():
    scores = {"a.weight": torch.ones(4, 5), "b.weight": torch.ones(2, 5)}
    m = calibrate(scores, 0.5, mode="global", min_keep=0)
    assert kept(m) == 15
    flat = torch.cat([m["a.weight"].flatten(), m["b.weight"].flatten()])
    assert flat[:15].all() and not flat[15:].any()
    assert torch.equal(topk_mask(torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0]), 2), torch.tensor([0, 1, 1, 0, 0]).bool())


def test_min_keep_prevents_row_collapse_at_extreme_sparsity():
    g = torch.Generator().manual_seed(0)
    scores = {"big.weight": torch.rand(10, 50, generator=g) + 10, "small.weight": torch.rand(6, 8, generator=g)}
    m = calibrate(scores, 0.95, mode="global", min_keep=1)
    assert (m["small.weight"].sum(1) >= 1).all()
    assert kept(m) == n_keep(0.95, 548)
    m0 = calibrate(scores, 0.95, mode="global", min_keep=0)
    assert m0["small.weight"].sum() == 0  # without the safeguard the low-score layer collapses


def test_col_keep():
    g = torch.Generator().manual_seed(0)
    scores = {"x.weight": torch.rand(8, 30, generator=g)}
    m = calibrate(scores, 0.8, min_keep=1, col_keep=1)["x.weight"]
    assert (m.sum(0) >= 1).all() and (m.sum(1) >= 1).all()


def webster_bruteforce(total, sizes, lows):
    seats = []
    for l, (n, low) in enumerate(zip(sizes, lows)):
        for k in range(n):
            # exact: float keys tie-break (2k+1)/(2n) inconsistently (3/14 vs 15/70 are equal)
            key = -math.inf if k < low else Fraction(2 * k + 1, 2 * n)
            seats.append((key, l))
    seats.sort()
    alloc = [0] * len(sizes)
    for key, l in seats[:total]:
        alloc[l] += 1
    return alloc


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6), frac=st.floats(0, 1), data=st.data())
def test_local_allocation_is_webster_order(sizes, frac, data):
    lows = [data.draw(st.integers(0, min(3, n))) for n in sizes]
    total = max(sum(lows), round(frac * sum(sizes)))
    assert webster(total, sizes, lows) == webster_bruteforce(total, sizes, lows)


def test_local_equal_ratio_and_dict_budgets():
    scores = rand_scores([(64, 9), (32, 50), (10, 7)], 4)
    cal = mort(scores, 0.9, mode="local", min_keep=0)
    for k, sp in cal.layer_sparsity().items():
        assert abs(sp - 0.9) < 2.0 / scores[k].numel()
    per = {"l0.weight": 0.5, "l1.weight": 0.95, "l2.weight": 0.0}
    cal = mort(scores, per, mode="local", min_keep=0)
    for k, s in per.items():
        assert int(cal.masks[k].sum()) == n_keep(s, scores[k].numel())
    with pytest.raises(ValueError, match="mode='local'"):
        mort(scores, per, mode="global")
    with pytest.raises(ValueError, match="unknown"):
        mort(scores, {**per, "nope.weight": 0.1}, mode="local")


def test_global_and_layerwise_differ_from_local_allocation():
    scores = rand_scores([(64, 9), (32, 50)], 5)
    g = mort(scores, 0.9, mode="global", min_keep=0).layer_sparsity()
    assert abs(g["l0.weight"] - g["l1.weight"]) > 0.05  # global allocation follows the score scales


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_bad_sparsity_is_a_one_line_error(bad):
    with pytest.raises(ValueError, match=r"sparsity=.* allowed: 0 <= sparsity < 1") as e:
        calibrate(rand_scores([(3, 3)]), bad)
    assert "\n" not in str(e.value)


def test_bad_inputs():
    sc = rand_scores([(3, 3)])
    with pytest.raises(ValueError, match=r"mode='nope' is not allowed; choose one of \['global', 'layerwise', 'local'\]"):
        calibrate(sc, 0.5, mode="nope")
    with pytest.raises(ValueError, match="robust="):
        calibrate(sc, 0.5, robust="iqr")
    with pytest.raises(ValueError, match="NaN or Inf"):
        calibrate({"a.weight": torch.tensor([[1.0, float("nan")]])}, 0.5)
    with pytest.raises(ValueError, match="min_keep=-1"):
        calibrate(sc, 0.5, min_keep=-1)
    with pytest.raises(ValueError, match="non-empty"):
        calibrate({}, 0.5)


def test_same_input_same_mask_bytes():
    sc = rand_scores([(30, 20), (10, 9)], 9, discrete=True)
    for mode in MODES:
        a, b = calibrate(sc, 0.77, mode=mode), calibrate(sc, 0.77, mode=mode)
        assert all(torch.equal(a[k], b[k]) for k in sc)


def test_n_keep_rounds_decimal_halves_up():
    # (1 - 0.9) * 5 is 0.49999... in floats; the decimal 0.9 means exactly 9/10, so 0.5 -> 1
    assert n_keep(0.9, 5) == 1 and n_keep(0.34, 25) == 17 and n_keep(0.5, 3) == 2
    assert n_keep(0.0, 7) == 7 and n_keep(0.999, 10) == 0


def test_robust_stats_leaves_its_input_alone():
    x = torch.tensor([1.0, 2.0, 3.0, 10.0], dtype=torch.float64)
    assert robust_stats(x, "mad") == (2.5, 1.0)
    assert x.tolist() == [1.0, 2.0, 3.0, 10.0]
