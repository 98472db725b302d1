"""Allocation x ranking: exact budgets, nesting and determinism for every combination, the
divisor order against a brute-force seat list, diagnostics and connectivity."""
from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch
from hypothesis import given, settings, strategies as st

from yopo.core import allocation as A
from yopo.core.calibration import CalibrationSettings, CollapseWarning, mort
from yopo.core.connectivity import add_connectivity, effective_masks
from yopo.core.ranking import select
from yopo.core.selection import n_keep

ALLOCS = ["global", "layerwise", "uniform", "balanced", "erk", "er", "uniform_plus", "from:ref", "dict"]
RANKS = ["score", "rows"]

shapes_st = st.lists(st.tuples(st.integers(1, 12), st.integers(1, 5), st.sampled_from([1, 3])), min_size=1, max_size=4)


def rand_scores(shapes, seed, discrete=False):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, (o, c, k) in enumerate(shapes):
        shape = (o, c, k, k) if k > 1 else (o, c)
        x = torch.rand(shape, generator=g)
        out[f"l{i}.weight"] = (x * 4).floor() if discrete else x  # discrete: many ties
    return out


def run(scores, s, allocation, ranking, **kw):
    ref = None
    if allocation == "dict":  # per-layer sparsities as the allocation: budgets in their proportions
        g = torch.Generator().manual_seed(321)
        allocation = {n: float(torch.rand((), generator=g)) * 0.95 for n in scores}
    if isinstance(allocation, str) and allocation.startswith("from:"):
        g = torch.Generator().manual_seed(123)
        ref = {n: torch.rand(x.shape, generator=g) for n, x in scores.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mort(scores, s, allocation=allocation, ranking=ranking, budget_scores=ref, **kw)


@settings(max_examples=60, deadline=None)
@given(shapes=shapes_st, s=st.floats(0, 0.999), allocation=st.sampled_from(ALLOCS), ranking=st.sampled_from(RANKS),
       m=st.integers(0, 2), discrete=st.booleans(), seed=st.integers(0, 20))
def test_every_allocation_and_ranking_meets_the_budget_exactly(shapes, s, allocation, ranking, m, discrete, seed):
    scores = rand_scores(shapes, seed, discrete)
    n = sum(x.numel() for x in scores.values())
    forced = sum(x.shape[0] * min(m, x[0].numel()) for x in scores.values())
    cal = run(scores, s, allocation, ranking, min_keep=m)
    assert cal.kept == sum(int(x.sum()) for x in cal.masks.values()) == max(n_keep(s, n), forced)
    for name, mask in cal.masks.items():
        assert mask.dtype == torch.bool and mask.shape == scores[name].shape
        rows = mask.reshape(mask.shape[0], -1).sum(1)
        assert (rows >= min(m, mask[0].numel())).all(), name


@settings(max_examples=60, deadline=None)
@given(shapes=shapes_st, s1=st.floats(0, 0.99), s2=st.floats(0, 0.99), allocation=st.sampled_from(ALLOCS),
       ranking=st.sampled_from(RANKS), m=st.integers(0, 2), discrete=st.booleans())
def test_every_allocation_and_ranking_nests_across_sparsities(shapes, s1, s2, allocation, ranking, m, discrete):
    scores = rand_scores(shapes, 7, discrete)
    lo, hi = sorted([s1, s2])
    dense_side = run(scores, lo, allocation, ranking, min_keep=m).masks
    sparse_side = run(scores, hi, allocation, ranking, min_keep=m).masks
    for name in scores:
        assert not (sparse_side[name] & ~dense_side[name]).any(), name  # survivors at hi survive at lo


@pytest.mark.parametrize("allocation,ranking", list(itertools.product(ALLOCS, RANKS)))
def test_same_input_same_mask_bytes(allocation, ranking):
    scores = rand_scores([(8, 4, 3), (10, 16, 1)], 3, discrete=True)
    a = run(scores, 0.8, allocation, ranking).masks
    b = run({k: v.clone() for k, v in scores.items()}, 0.8, allocation, ranking).masks
    assert all(torch.equal(a[k], b[k]) for k in a)


def seat_order(weights, caps, lows):
    """Brute force: list every seat with its (tier, key, layer) and sort."""
    seats = []
    for l, (w, cap, low) in enumerate(zip(weights, caps, lows)):
        for k in range(cap):
            if k < low:
                seats.append((0, 0.0, l))
            elif w > 0:
                seats.append((1, (2 * k + 1) / (2 * w), l))
    return sorted(seats)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 5))
def test_divisor_counts_are_the_seat_order_prefix(data, n):
    weights = data.draw(st.lists(st.integers(1, 30), min_size=n, max_size=n))
    caps = data.draw(st.lists(st.integers(0, 25), min_size=n, max_size=n))
    lows = [data.draw(st.integers(0, c)) for c in caps]
    order = seat_order(weights, caps, lows)
    total = data.draw(st.integers(sum(lows), sum(caps)))
    want = [0] * n
    for _, _, l in order[:total]:
        want[l] += 1
    assert A.divisor_counts(total, weights, caps, lows) == want


def test_balanced_gives_equal_counts_capped_at_dense():
    scores = {"a.weight": torch.rand(4, 3), "b.weight": torch.rand(50, 40), "c.weight": torch.rand(60, 40)}
    cal = run(scores, 0.9, "balanced", "score", min_keep=0)
    K = n_keep(0.9, 12 + 2000 + 2400)
    assert cal.layers["a.weight"].kept == 12  # dense: capped
    b, c = cal.layers["b.weight"].kept, cal.layers["c.weight"].kept
    assert abs(b - c) <= 1 and b + c == K - 12


def test_erk_counts_follow_erk_densities():
    from yopo.core.layers import PrunableLayer
    shapes = [(16, 3, 3, 3), (32, 16, 3, 3), (64, 32, 3, 3), (10, 64)]
    scores = {f"l{i}.weight": torch.rand(s) for i, s in enumerate(shapes)}
    layers = tuple(PrunableLayer(n, n[:-7], tuple(s.shape)) for n, s in scores.items())
    for sp in (0.8, 0.95):
        dens = A.erk_densities(layers, sp)
        cal = run(scores, sp, "erk", "score", min_keep=0)
        for (n, s), d in zip(scores.items(), dens):
            assert abs(cal.layers[n].kept - d * s.numel()) <= 1.0, (n, sp)


def test_dict_allocation_gives_its_own_counts_at_its_total_and_errors_name_the_keys():
    scores = rand_scores([(8, 4, 3), (10, 16, 1), (6, 5, 1)], 2)
    layer_sparsity = {"l0.weight": 0.5, "l1.weight": 0.9, "l2.weight": 0.2}
    sizes = {n: x.numel() for n, x in scores.items()}
    kept = {n: n_keep(layer_sparsity[n], sizes[n]) for n in scores}
    total = 1 - sum(kept.values()) / sum(sizes.values())
    for ranking in RANKS:
        cal = run(scores, total, layer_sparsity, ranking, min_keep=0)
        assert {n: int(m.sum()) for n, m in cal.masks.items()} == kept
    with pytest.raises(ValueError, match=r"keys must match the scored layers: unknown \['x'\], missing \['l2.weight'\]"):
        run(scores, 0.5, {"l0.weight": 0.5, "l1.weight": 0.5, "x": 0.1}, "score")
    with pytest.raises(ValueError, match=r"allocation\['l1.weight'\]=1.5 is out of range"):
        run(scores, 0.5, {**layer_sparsity, "l1.weight": 1.5}, "score")
    with pytest.raises(ValueError, match=r"per-layer sparsities need allocation='uniform'"):  # not given twice
        run(scores, layer_sparsity, layer_sparsity, "score")


def test_from_method_takes_the_reference_layer_budgets():
    scores = rand_scores([(8, 4, 3), (16, 8, 3), (10, 32, 1)], 1)
    ref = rand_scores([(8, 4, 3), (16, 8, 3), (10, 32, 1)], 2)
    ref = {k: v * (i + 1) for i, (k, v) in enumerate(ref.items())}  # very unequal layer budgets
    own = mort(ref, 0.9, min_keep=0)
    got = mort(scores, 0.9, allocation="from:synflow", budget_scores=ref, min_keep=0)
    assert {n: r.kept for n, r in got.layers.items()} == {n: r.kept for n, r in own.layers.items()}
    # ... but inside each layer the entries are ranked by this method's scores
    for n in scores:
        k = got.layers[n].kept
        assert torch.equal(got.masks[n].flatten(), select(scores[n].reshape(-1, 1), k, "score").flatten())
    with pytest.raises(ValueError, match="needs the scores of 'synflow'"):
        mort(scores, 0.9, allocation="from:synflow")
    with pytest.raises(ValueError, match="does not use them"):
        mort(scores, 0.9, budget_scores=ref)


def test_rows_ranking_balances_rows_and_keeps_class_rows():
    g = torch.Generator().manual_seed(0)
    S = torch.rand(10, 160, generator=g)
    S[:5] *= 1e-3  # a residual concentrated in 5 rows (what rank-r NMF does to a small classifier)
    plain = select(S, 40, "score")
    rows = select(S, 40, "rows")
    assert (plain.sum(1) == 0).sum() == 5
    assert (rows.sum(1) == 4).all()
    # inside a row the best entries win
    for i in range(10):
        assert torch.equal(rows[i], select(S[i : i + 1], 4, "score")[0])


def test_rows_ranking_with_forced_entries_and_remainder():
    S = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    forced = torch.zeros(4, 6, dtype=torch.bool)
    forced[0, :3] = True  # row 0 already has 3 forced survivors
    m = select(S, 6, "rows", forced)
    assert int(m.sum()) == 6 and m[0, :3].all()
    # the three non-forced seats go one per row to rows 1..3 (depth 0), best score first
    assert m[1:].sum(1).tolist() == [1, 1, 1]


def test_min_layer_density_is_met_inside_the_budget():
    scores = {"a.weight": torch.rand(4, 30) * 1e-3, "b.weight": torch.rand(40, 40)}  # global starves a
    cal = mort(scores, 0.9, min_keep=0, min_layer_density=0.05)
    assert cal.kept == n_keep(0.9, 1720)
    assert cal.layers["a.weight"].kept >= math.ceil(0.05 * 120)
    with pytest.raises(ValueError, match="min_layer_density=0.5 needs at least"):
        mort(scores, 0.9, min_layer_density=0.5)


def test_exclude_leaves_layers_dense_and_out_of_the_budget():
    scores = {"f.weight": torch.rand(8, 8), "fc.weight": torch.rand(10, 8)}
    cal = mort(scores, 0.5, exclude=("fc",))
    assert cal.masks["fc.weight"].all() and cal.layers["fc.weight"].excluded
    assert cal.total == 64 and cal.kept == 32
    with pytest.warns(UserWarning, match="matches no calibrated layer"):
        mort(scores, 0.5, exclude=("nope",))


def test_diagnostics_and_collapse_warning():
    scores = {"a.weight": torch.full((4, 2, 3, 3), 1e-6), "b.weight": torch.rand(6, 4, 3, 3) + 1}
    with pytest.warns(CollapseWarning, match="emptied: a.weight"):
        cal = mort(scores, 0.8, min_keep=0)
    r = cal.layers["a.weight"]
    assert (r.kept, r.rows, r.empty_rows, r.cols, r.empty_cols) == (0, 4, 4, 2, 2)
    assert cal.warnings and "emptied" in cal.warnings[0]
    with pytest.warns(CollapseWarning, match="forced survivors"):
        mort(scores, 0.8, min_keep=1)
    starved = torch.rand(10, 50) * torch.tensor([1e-3] * 5 + [1.0] * 5)[:, None]  # 5 class rows starve
    with pytest.warns(CollapseWarning, match=r"last layer has output rows with no weight: fc.weight \(5 of 10\)"):
        mort({"h.weight": torch.rand(8, 8), "fc.weight": starved}, 0.9, min_keep=0)
    # a hidden layer's empty rows are pruned units (reported, not warned); only the last layer's are classes
    import warnings as w
    with w.catch_warnings():
        w.simplefilter("error")
        fc = torch.eye(10) + 0.01 * torch.rand(10, 10)  # every class row keeps its diagonal weight
        cal = mort({"h.weight": starved, "fc.weight": fc}, 0.9, min_keep=0, allocation="uniform")
    assert cal.layers["h.weight"].empty_rows == 5


@pytest.mark.parametrize("allocation", ["global", "uniform", "balanced"])
def test_class_keep_fills_every_class_row_of_the_last_layer_only(allocation):
    starved = torch.rand(10, 50) * torch.tensor([1e-3] * 5 + [1.0] * 5)[:, None]
    scores = {"h.weight": starved.clone(), "fc.weight": starved}
    base = run(scores, 0.9, allocation, "score", min_keep=0)
    assert base.layers["fc.weight"].empty_rows > 0
    cal = run(scores, 0.9, allocation, "score", min_keep=0, class_keep=2)
    assert cal.layers["fc.weight"].empty_rows == 0 and int(cal.masks["fc.weight"].sum(1).min()) >= 2
    assert cal.layers["h.weight"].empty_rows == base.layers["h.weight"].empty_rows  # hidden rows untouched
    assert cal.kept == base.kept == n_keep(0.9, 1000)  # inside the same exact budget


def test_settings_are_validated_from_their_declaration():
    with pytest.raises(ValueError, match=r"ranking='row' is not allowed; choose one of \['score', 'rows'\]"):
        CalibrationSettings(ranking="row")
    with pytest.raises(ValueError, match="min_layer_density=1.5 is out of range"):
        CalibrationSettings(min_layer_density=1.5)
    with pytest.raises(TypeError, match="min_keep=1.5 must be an int"):
        CalibrationSettings(min_keep=1.5)
    with pytest.raises(ValueError, match="allocation='glob' is not allowed"):
        CalibrationSettings(allocation="glob")
    with pytest.raises(ValueError, match="bisect"):
        CalibrationSettings(allocation="balanced", calibration_solver="bisect")
    assert CalibrationSettings(allocation="from:synflow").budget_method == "synflow"
    scores = rand_scores([(6, 4, 3)], 0)
    # the paper's mode names keep working and mean the same allocation
    assert torch.equal(mort(scores, 0.7, mode="local").masks["l0.weight"],
                       mort(scores, 0.7, allocation="uniform").masks["l0.weight"])
    with pytest.raises(ValueError, match="disagree"):
        mort(scores, 0.7, mode="local", allocation="global")
    with pytest.raises(TypeError, match="unknown calibration setting"):
        mort(scores, 0.7, alocation="global")


def test_connectivity_finds_stranded_weights():
    from torch import nn

    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    m0 = torch.zeros(3, 4, dtype=torch.bool)
    m0[0, 0] = m0[1, 1] = True  # hidden units 0 and 1 are fed; unit 2 is not
    m1 = torch.zeros(2, 3, dtype=torch.bool)
    m1[0, 0] = m1[1, 2] = True  # unit 2's weight is kept but never receives input; unit 1 is never read
    eff = effective_masks(model, {"0.weight": m0, "2.weight": m1}, (4,))
    assert eff["0.weight"].tolist() == (m0 & torch.tensor([[1], [0], [0]]).bool()).tolist()
    assert eff["2.weight"].tolist() == [[True, False, False], [False, False, False]]
    scores = {"0.weight": m0.float() + 0.1, "2.weight": m1.float() + 0.1}
    cal = mort(scores, 1 - 4 / 18, min_keep=0)
    with pytest.warns(CollapseWarning, match=r"2 of 4 kept weights lie on no input-output path"):
        add_connectivity(cal, model, (4,))
    assert cal.kept == 4 and cal.effective_sparsity == pytest.approx(1 - 2 / 18)
