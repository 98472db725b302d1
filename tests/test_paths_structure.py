"""The path structure's choice (YopoConfig.paths_structure): flow, spread, spread_flow, and auto,
which spreads (at the flow's layer densities) only when every hidden layer's weight scale leaves the
function unchanged (a normalization follows it)."""
import warnings

import pytest
from hypothesis import given, settings, strategies as st
import torch
from torch import nn

import yopo
from yopo.core.calibration import CalibrationSettings, CollapseWarning, mort
from yopo.core.connectivity import effective_masks, scale_invariant


class Net(nn.Module):
    """conv -> [BN] -> relu -> conv -> [BN] -> relu -> pool -> fc; ``norm`` chooses the BNs."""

    def __init__(self, norm: bool, width: int = 12):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, width, 3, padding=1, bias=False), nn.Conv2d(width, 2 * width, 3, padding=1,
                                                                                       bias=False)
        self.n1 = nn.BatchNorm2d(width) if norm else nn.Identity()
        self.n2 = nn.BatchNorm2d(2 * width) if norm else nn.Identity()
        self.fc = nn.Linear(2 * width * 16, 10)

    def forward(self, x):
        x = torch.relu(self.n1(self.c1(x)))
        x = torch.relu(self.n2(self.c2(x)))
        return self.fc(nn.functional.avg_pool2d(x, 2).flatten(1))


class PreAct(nn.Module):
    """A pre-activation residual block (BN -> relu -> conv, twice, plus the identity) and a
    normalized head: the convs' outputs are not normalized directly, the residual sum is."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(width), nn.BatchNorm2d(width), nn.BatchNorm2d(width)
        self.c1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.c2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.c2(torch.relu(self.bn2(self.c1(torch.relu(self.bn1(x))))))
        return self.fc(torch.relu(self.bn3(x)).mean((2, 3)))


SHAPE = (3, 8, 8)
HIDDEN = ["c1.weight", "c2.weight"]


def _scores(model, **kw):
    torch.manual_seed(0)
    return yopo.score(model, "yopo", seed=0, rank=3, iters=30, **kw)


def test_scale_invariance_finds_the_normalized_layers_and_leaves_the_model_alone():
    torch.manual_seed(0)
    bn = Net(norm=True)
    bn.train(False)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    assert scale_invariant(bn, HIDDEN + ["fc.weight"], SHAPE) == set(HIDDEN)  # the classifier is not normalized
    assert scale_invariant(Net(norm=False), HIDDEN + ["fc.weight"], SHAPE) == set()
    # pre-activation: the residual sum is normalized before the next conv and the head, so no
    # conv sets the output's scale (WRNs are built this way)
    assert scale_invariant(PreAct(), ["stem.weight", "c1.weight", "c2.weight", "fc.weight"], SHAPE) == \
        {"stem.weight", "c1.weight", "c2.weight"}
    assert not bn.training and all(torch.equal(before[k], v) for k, v in bn.state_dict().items())


def test_auto_is_the_flow_without_normalization():
    torch.manual_seed(0)
    m = Net(norm=False)
    auto = _scores(m, paths=True, paths_target=0.9, input_shape=SHAPE, paths_structure="auto")
    flow = _scores(m, paths=True, paths_target=0.9, input_shape=SHAPE, paths_structure="flow")
    assert all(torch.equal(auto[n], flow[n]) for n in flow)


@pytest.mark.parametrize("sparsity", [0.9, 0.97])
def test_auto_spreads_at_the_flows_densities_with_normalization_and_keeps_every_unit(sparsity):
    torch.manual_seed(0)
    m = Net(norm=True)
    kw = dict(paths=True, paths_target=sparsity, input_shape=SHAPE)
    preset = CalibrationSettings(min_keep=0, class_keep=1, min_layer_density=0.002)  # the recommended calibration
    cal = mort(_scores(m, paths_structure="auto", **kw), sparsity, preset)
    sf = mort(_scores(m, paths_structure="spread_flow", **kw), sparsity, CalibrationSettings(min_keep=0)).masks
    assert all(torch.equal(cal.masks[n], sf[n]) for n in sf)  # the spread_flow mask, through the pooled top
    total = sum(v.numel() for v in cal.masks.values())
    assert sum(int(v.sum()) for v in cal.masks.values()) == round((1 - sparsity) * total)
    flow = mort(_scores(m, paths_structure="flow", **kw), sparsity, preset).masks

    def alive(masks):  # hidden units with an input weight on an input-output path
        eff = effective_masks(m, masks, SHAPE)
        return sum(int((eff[n].flatten(1).sum(1) > 0).sum()) for n in HIDDEN)

    assert all(int(cal.masks[n].flatten(1).sum(1).min()) >= 1 for n in HIDDEN)  # every unit keeps an input
    assert alive(cal.masks) > alive(flow)  # the flow's concentration leaves units out
    assert any(not torch.equal(flow[n], cal.masks[n]) for n in flow)


def test_spread_keeps_erk_densities_with_rows_balanced():
    torch.manual_seed(0)
    m = Net(norm=True)
    kw = dict(paths=True, paths_target=0.9, input_shape=SHAPE, paths_structure="spread")
    spread = mort(_scores(m, paths_cover="rows", **kw), 0.9, CalibrationSettings(min_keep=0)).masks
    erk_rows = mort(_scores(m), 0.9, CalibrationSettings(allocation="erk", ranking="rows", min_keep=0)).masks
    assert all(torch.equal(spread[n], erk_rows[n]) for n in erk_rows)
    # the default cover keeps ERK's layer counts and moves weights inside a layer only
    units = mort(_scores(m, **kw), 0.9, CalibrationSettings(min_keep=0)).masks
    assert {n: int(v.sum()) for n, v in units.items()} == {n: int(v.sum()) for n, v in erk_rows.items()}


@pytest.mark.parametrize("weights", ["auto", "scale", "magnitude"])
def test_spread_flow_takes_the_flows_layer_counts_and_balances_rows(weights):
    torch.manual_seed(0)
    m = Net(norm=True)
    kw = dict(paths=True, paths_target=0.9, input_shape=SHAPE)
    # the layer budgets of the flow it runs (auto: on |W|, SynFlow's) with one weight per output row
    # inside them (no layer emptied)
    flow_weights = "magnitude" if weights == "auto" else weights
    flow = mort(_scores(m, paths_structure="flow", paths_flow_weights=flow_weights, **kw), 0.9,
                CalibrationSettings(min_keep=1)).masks
    sf = mort(_scores(m, paths_structure="spread_flow", paths_flow_weights=weights, paths_cover="rows", **kw), 0.9,
              CalibrationSettings(min_keep=0)).masks
    assert {n: int(v.sum()) for n, v in sf.items()} == {n: int(v.sum()) for n, v in flow.items()}
    for n, v in sf.items():  # every row its equal share of the layer's count (up to one)
        rows = v.flatten(1).sum(1)
        assert int(rows.max() - rows.min()) <= 1, n
    assert any(not torch.equal(flow[n], sf[n]) for n in flow)


def test_flow_weights_set_the_layer_budgets_and_auto_runs_the_flow_on_magnitudes():
    torch.manual_seed(0)
    m = Net(norm=True)
    kw = dict(paths=True, paths_target=0.95, input_shape=SHAPE)

    def counts(**o):
        masks = mort(_scores(m, **kw, **o), 0.95, CalibrationSettings(min_keep=1)).masks
        return {n: int(v.sum()) for n, v in masks.items()}

    # auto runs the flow on |W| (SynFlow's weights) for its own mask too (since 2026-12-03)
    assert counts(paths_structure="flow") == counts(paths_structure="flow", paths_flow_weights="magnitude")
    # the weights act: |W| spreads the scores inside a layer, so the budgets move
    assert counts(paths_structure="flow", paths_flow_weights="scale") != \
        counts(paths_structure="flow", paths_flow_weights="magnitude")


@pytest.mark.parametrize("kw, match", [
    (dict(paths_structure="spread"), r"paths_structure='spread' act only with paths=True"),
    (dict(paths=True, paths_structure="spread", paths_rounds=50), r"paths_rounds=50 acts only on the path flow"),
    (dict(paths=True, paths_structure="wide"), r"paths_structure='wide'.*flow.*spread.*spread_flow.*auto"),
    (dict(paths_flow_weights="magnitude"), r"paths_flow_weights='magnitude' act only with paths=True"),
    (dict(paths=True, paths_structure="spread", paths_flow_weights="scale"),
     r"paths_flow_weights='scale' acts only on the path flow"),
    (dict(paths=True, paths_flow_weights="unit"), r"paths_flow_weights='unit'.*auto.*scale.*magnitude"),
    (dict(paths_cover="units"), r"paths_cover='units' act only with paths=True"),
    (dict(paths=True, paths_structure="flow", paths_cover="rows"),
     r"paths_cover='rows' acts only on the spreading structures"),
    (dict(paths=True, paths_cover="cols"), r"paths_cover='cols'.*auto.*rows.*units"),
])
def test_structure_settings_that_cannot_act_are_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        yopo.score(Net(norm=True), "yopo", paths_target=0.9, **kw) if kw.get("paths") else \
            yopo.score(Net(norm=True), "yopo", **kw)


def test_cover_under_auto_is_an_error_where_auto_chooses_the_flow():
    kw = dict(paths=True, paths_target=0.9, input_shape=SHAPE, paths_structure="auto", rank=3, iters=10)
    yopo.score(Net(norm=True), "yopo", paths_cover="rows", **kw)  # spread_flow: the cover acts
    with pytest.raises(ValueError, match=r"paths_cover='rows' acts only on the spreading structures.*chose 'flow'"):
        yopo.score(Net(norm=False), "yopo", paths_cover="rows", **kw)


def test_rounds_act_under_auto_on_both_branches():
    # both of auto's choices run the flow (spread_flow takes its layer densities), so rounds are no error
    kw = dict(paths=True, paths_target=0.9, input_shape=SHAPE, paths_structure="auto", rank=3, iters=10)
    for norm in (True, False):
        yopo.score(Net(norm=norm), "yopo", paths_rounds=20, **kw)


def test_spread_flow_keeps_a_unit_input_where_the_flow_empties_layers():
    from yopo.models import get_model
    torch.manual_seed(0)
    m = get_model("resnet20", width=4)
    kw = dict(paths=True, paths_target=0.95, input_shape=(3, 16, 16), rank=3, iters=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the flow on unit path counts (scale) empties ResNet shortcuts; on |W| it keeps a few weights there
        flow = mort(yopo.score(m, "yopo", paths_structure="flow", paths_flow_weights="scale", **kw), 0.95,
                    CalibrationSettings(min_keep=0)).masks
    with warnings.catch_warnings():
        # scoring calibrates the flow internally; only the caller's calibration may warn about a mask
        warnings.simplefilter("error", CollapseWarning)
        sf = mort(yopo.score(m, "yopo", paths_structure="spread_flow", **kw), 0.95,
                  CalibrationSettings(min_keep=0)).masks
    assert any(int(v.sum()) == 0 for v in flow.values())  # the flow alone empties layers here
    for n, v in sf.items():
        assert int(v.flatten(1).sum(1).min()) >= 1, n  # every unit keeps an input


def test_cover_units_gives_every_input_channel_an_output_inside_the_layer_count():
    from yopo.methods.yopo.paths import cover_units
    # a 4x(3 channels x 2 taps) conv whose channel 2 has the smallest scores: rows alone skip it
    score = torch.tensor([[6., 5., 4., 3., 0.2, 0.1]] * 4).reshape(4, 3, 2, 1) + torch.arange(4.).view(4, 1, 1, 1)
    rows = mort({"w": score}, 1 - 8 / 24,
                CalibrationSettings(allocation="uniform", ranking="rows", min_keep=0)).masks["w"]
    assert int(rows[:, 2].sum()) == 0  # the channel feeds nothing: the weights into its unit are stranded
    covered = cover_units(score, rows)
    assert int(covered.sum()) == 8 and covered.shape == score.shape
    assert int(covered.sum((0, 2, 3)).min()) >= 1 and int(covered.flatten(1).sum(1).min()) >= 1
    assert covered[3, 2, 0, 0]  # the channel's best entry (row 3, tap 0)
    assert torch.equal(covered, cover_units(score, rows))  # deterministic
    def rows_mask(k):  # k = 3 leaves a row empty, which the calibration reports (not the point here)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CollapseWarning)
            return mort({"w": score}, 1 - k / 24, CalibrationSettings(allocation="uniform", ranking="rows",
                                                                    min_keep=0)).masks["w"]

    # max(rows, channels) <= count < rows + channels: a greedy cover still reaches every row and channel
    for k in (4, 5):
        c = cover_units(score, rows_mask(k))
        assert int(c.sum()) == k and int(c.sum((0, 2, 3)).min()) >= 1 and int(c.flatten(1).sum(1).min()) >= 1
    # fewer kept entries than rows: no cover exists, the mask is unchanged
    assert torch.equal(cover_units(score, rows_mask(3)), rows_mask(3))
    # a Linear stored (in, out) (HF Conv1D): the input features are its rows
    lin = torch.rand(6, 4)
    m = mort({"w": lin.t().contiguous()}, 0.5, CalibrationSettings(allocation="uniform", ranking="rows",
                                                                  min_keep=0)).masks["w"].t()
    c = cover_units(lin, m, transposed=True)
    assert int(c.sum()) == 12 and int(c.sum(1).min()) >= 1 and int(c.sum(0).min()) >= 1


@pytest.mark.parametrize("structure", ["spread", "spread_flow"])
def test_spreading_with_cover_strands_no_weight(structure):
    from yopo.models import get_model
    torch.manual_seed(0)
    m = get_model("resnet20", width=4)
    shape = (3, 16, 16)
    kw = dict(paths=True, paths_target=0.95, input_shape=shape, rank=3, iters=20, paths_structure=structure)
    s = CalibrationSettings(min_keep=0, class_keep=1, min_layer_density=0.002)  # the recommended calibration
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)
        rows = mort(yopo.score(m, "yopo", paths_cover="rows", **kw), 0.95, s).masks
        units = mort(yopo.score(m, "yopo", **kw), 0.95, s).masks

    def stranded(masks):
        eff = effective_masks(m, masks, shape)
        return sum(int(masks[n].sum()) - int(eff[n].sum()) for n in masks)

    assert {n: int(v.sum()) for n, v in units.items()} == {n: int(v.sum()) for n, v in rows.items()}
    assert stranded(rows) > 0 and stranded(units) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(1, 40)), min_size=1, max_size=6))
def test_cover_budgets_keep_the_total_and_meet_every_need_when_they_fit(layers):
    from yopo.methods.yopo.paths import cover_budgets
    counts = {f"l{i}": k for i, (k, _) in enumerate(layers)}
    needs = {f"l{i}": n for i, (_, n) in enumerate(layers)}
    out = cover_budgets(counts, needs)
    assert out == cover_budgets(counts, needs) and list(out) == list(counts)  # deterministic, same layers
    assert sum(out.values()) == sum(counts.values())  # the exact total budget
    if all(counts[n] >= needs[n] for n in counts) or sum(counts.values()) < sum(needs.values()):
        assert out == counts  # nothing lacks, or no way to give every layer its need: unchanged
    else:
        assert all(out[n] >= needs[n] for n in out)
        assert all(out[n] <= counts[n] for n in out if counts[n] >= needs[n])  # only lacking layers gain


def test_spread_raises_a_wide_classifier_to_its_cover_and_takes_it_from_the_other_layers():
    from yopo.methods.yopo.paths import spread
    torch.manual_seed(0)
    # a 64 -> 10 classifier on 200 inputs that the given layer budgets give 50 weights: rows alone
    # read at most 50 of its 200 input channels; the cover needs 200
    scores = {"hidden": torch.rand(200, 64), "fc": torch.rand(10, 200)}
    budgets = {"hidden": 1 - 2000 / 12800, "fc": 1 - 50 / 2000}
    target = 1 - 2050 / 14800

    def kept(cover):
        enc = spread(scores, target, budgets, cover=cover)
        return mort(enc, target, CalibrationSettings(min_keep=0)).masks

    rows, units = kept("rows"), kept("units")
    assert {n: int(m.sum()) for n, m in rows.items()} == {"hidden": 2000, "fc": 50}
    assert {n: int(m.sum()) for n, m in units.items()} == {"hidden": 1850, "fc": 200}  # same total
    assert int(units["fc"].sum(0).min()) == 1 and int(units["fc"].sum(1).min()) >= 1  # every input read, every class
    assert int(units["hidden"].sum(1).min()) >= 1  # every hidden unit still keeps inputs
    # budgets that already cover: the same counts as rows alone
    ok = {"hidden": 1 - 2000 / 12800, "fc": 1 - 400 / 2000}
    t = 1 - 2400 / 14800
    assert {n: int(m.sum()) for n, m in mort(spread(scores, t, ok), t, CalibrationSettings(min_keep=0)).masks.items()} \
        == {"hidden": 2000, "fc": 400}


def test_a_floor_the_calibration_adds_is_paid_by_the_rows_shares_not_by_the_cover():
    from yopo.methods.yopo.paths import spread
    torch.manual_seed(0)
    # the classifier's residuals are the net's smallest: a floor paid by the pooled lowest kept
    # entries would take its cover entries and leave input channels unread
    scores = {"big": 0.5 + 0.5 * torch.rand(1000, 50), "thin": torch.rand(20, 10, 30, 30),
              "fc": 1e-3 * torch.rand(10, 200)}
    counts = {"big": 2000, "thin": 100, "fc": 200}  # fc exactly at its cover size (200 inputs)
    sizes = {n: s.numel() for n, s in scores.items()}
    target = 1 - sum(counts.values()) / sum(sizes.values())
    enc = spread(scores, target, {n: 1 - counts[n] / sizes[n] for n in scores})
    settings = CalibrationSettings(min_keep=0, min_layer_density=0.002)  # thin's floor: 360 > 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)
        masks = mort(enc, target, settings).masks
    kept = {n: int(m.sum()) for n, m in masks.items()}
    # the floor's 260 come from big's row shares (without the cover's tier fc kept 4 of 200: its
    # residuals are the smallest)
    assert kept == {"big": 1740, "thin": 360, "fc": 200}
    for n in ("big", "fc"):
        assert int(masks[n].sum(0).min()) >= 1 and int(masks[n].sum(1).min()) >= 1, n  # still covered
