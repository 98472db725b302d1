"""Transfer metrics (Sec. 3.4) on hand-made numbers, including the paper's own Tables 2 and 4."""
import math

import pytest
import torch

from yopo.experiment import metrics as M

# Table 4 of the paper (VGG19, 90% sparsity), Acc_self of seeds A..E
C100 = [72.80, 72.50, 72.10, 72.30, 72.50]
C10 = [93.80, 93.40, 93.70, 93.10, 93.80]


def test_mean_std_match_table4():
    m, s, n = M.mean_std(C100)
    assert n == 5 and m == pytest.approx(72.44) and round(s, 2) == 0.26
    m, s, _ = M.mean_std(C10)
    assert m == pytest.approx(93.56) and round(s, 2) == 0.30
    assert M.std([5.0]) == 0.0 and math.isnan(M.mean([]))


def test_loo_proxy_matches_table4():
    loo = M.loo_means(C100)
    # the paper prints values rounded half-up to 2 decimals (72.425 -> 72.43)
    assert loo == pytest.approx([72.35, 72.43, 72.53, 72.48, 72.43], abs=0.0051)
    gaps = M.proxy_gaps(C100)
    assert gaps == pytest.approx([0.45, 0.08, -0.43, -0.18, 0.08], abs=0.0051)
    assert round(M.i3_proxy(C100), 2) == 0.24
    assert round(M.i3_proxy(C10), 2) == 0.31
    # the signed mean of the proxy gaps is identically zero: why the proxy is not I^3
    assert sum(M.proxy_gaps([1.0, 7.0, 2.5])) == pytest.approx(0.0)
    assert all(math.isnan(v) for v in M.loo_means([3.0]))


def test_risk_and_dti_sign():
    assert M.risk(93.5) == pytest.approx(6.5)
    # source mask gives 90, the target-calibrated mask 91 -> transfer costs 1 point of risk
    assert M.dti(90.0, 91.0) == pytest.approx(1.0)
    assert M.dti(91.0, 90.0) == pytest.approx(-1.0)
    assert M.dti_paired({0: 90.0, 1: 92.0, 2: 50.0}, {0: 91.0, 1: 91.0}) == pytest.approx(0.0)
    assert math.isnan(M.dti_paired({0: 1.0}, {1: 1.0}))


def test_dti_summary_matches_table2():
    s = M.dti_summary([-0.10, -0.05, -0.09])  # VGG16, p = 0.90
    assert round(s["mean"], 2) == -0.08 and s["worst_abs"] == pytest.approx(0.10)
    s = M.dti_summary([0.07, -0.40, -0.21])  # VGG16, p = 0.95
    assert round(s["mean"], 2) == -0.18 and s["worst_abs"] == pytest.approx(0.40) and s["sup"] == pytest.approx(0.07)
    assert math.isnan(M.dti_summary([])["mean"])


def test_i3_true_on_handmade_runs():
    acc_self = {0: 90.0, 1: 88.0}
    # mask of seed 0 on init 1 -> 89; mask of seed 1 on init 0 -> 88.5
    acc_cross = {(0, 1): 89.0, (1, 0): 88.5}
    # R_self - R_cross: seed 0: 10 - 11 = -1; seed 1: 12 - 11.5 = 0.5 -> mean -0.25
    assert M.i3_true(acc_self, acc_cross) == pytest.approx(-0.25)
    per = M.i3_per_seed(acc_self, acc_cross)
    assert per[0]["acc_xseed"] == 89.0 and per[0]["gap"] == pytest.approx(1.0)
    # several other inits are averaged; a (s, s) entry is not a cross-seed run
    acc_cross = {(0, 1): 89.0, (0, 2): 87.0, (0, 0): 0.0}
    assert M.i3_true({0: 90.0}, acc_cross) == pytest.approx(10.0 - 12.0)
    assert math.isnan(M.i3_true({0: 90.0}, {}))
    # identical accuracies everywhere: I^3 = 0
    assert M.i3_true({0: 80.0, 1: 80.0, 2: 80.0}, {(a, b): 80.0 for a in range(3) for b in range(3) if a != b}) == 0.0


def test_mask_jaccard_and_nested():
    a = {"w": torch.tensor([True, True, False, False])}
    b = {"w": torch.tensor([True, False, True, False])}
    assert M.mask_jaccard(a, a) == 1.0
    assert M.mask_jaccard(a, b) == pytest.approx(1 / 3)
    lo = {"w": torch.tensor([True, True, True, False])}
    assert M.nested({0.25: lo, 0.5: a})
    assert not M.nested({0.25: lo, 0.5: b | {"w": torch.tensor([False, False, False, True])}})


def test_rank_positions():
    assert M.rank_positions([1.0, 3.0, 2.0, float("nan")]) == [2, 0, 1, None]
    assert M.rank_positions([3.0, 3.0, 1.0]) == [0, 0, 1]
