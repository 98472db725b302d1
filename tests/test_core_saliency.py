"""YOPO saliency: the paper's structural properties (Prop. 1a, Lemmas 1-2), determinism, variants."""
import warnings

import pytest
import torch
from torch import nn

import yopo
from yopo.methods.yopo.nmf import init_factors, mu_frobenius, nmf, nmf_reference
from yopo.methods.yopo.saliency import YopoConfig, residual, yopo_saliency


def test_rank_zero_template_reduces_to_magnitude(tiny):
    # Prop. 1a: with V H = 0 (rank 0) the residual is |W| itself, so YOPO ranks like magnitude
    weights = {n: p.detach() for n, p in tiny.named_parameters() if n.endswith("weight") and p.dim() > 1}
    rank0 = {}
    for n, w in weights.items():
        W = w.reshape(w.shape[0], -1).abs()
        rank0[n] = residual(W, W.new_zeros(W.shape[0], 0), W.new_zeros(0, W.shape[1])).reshape(w.shape)
    mag = yopo.score(tiny, "magnitude")
    for n in weights:
        assert torch.equal(rank0[n], mag[n])
    for s in (0.5, 0.9):
        a, b = yopo.calibrate(rank0, s), yopo.calibrate(mag, s)
        assert all(torch.equal(a[n], b[n]) for n in a)


def test_positive_scaling_scales_residual_and_keeps_ranking():
    # Lemma 1: W -> cW with factors (sqrt(c) V, sqrt(c) H) is the same fixed point, S -> c S.
    g = torch.Generator().manual_seed(0)
    W = torch.rand(1, 20, 30, generator=g, dtype=torch.float64)
    V0, H0 = init_factors(W, 4, "uniform", [3])
    c = 4.0  # a power of two, so scaling is exact in floating point
    V1, H1 = V0.clone(), H0.clone()
    V2, H2 = V0 * c**0.5, H0 * c**0.5
    mu_frobenius(W, V1, H1, 100, 0.0)
    mu_frobenius(W * c, V2, H2, 100, 0.0)
    S1, S2 = residual(W, V1, H1), residual(W * c, V2, H2)
    torch.testing.assert_close(S2, c * S1)
    assert torch.equal(S1.flatten().argsort(stable=True), S2.flatten().argsort(stable=True))


def test_median_normalization_makes_layer_scale_irrelevant():
    torch.manual_seed(0)
    w = torch.randn(16, 8, 3, 3)
    cfg = YopoConfig(normalize="median", iters=50)
    a = yopo_saliency({"x.weight": w}, cfg)["x.weight"]
    b = yopo_saliency({"x.weight": w * 8.0}, cfg)["x.weight"]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_permutation_equivariance_with_matching_init():
    # Lemma 2: permuting rows/columns of |W| (and of a deterministic init) permutes S accordingly
    g = torch.Generator().manual_seed(1)
    W = torch.rand(1, 12, 18, generator=g, dtype=torch.float64)
    pr, pc = torch.randperm(12, generator=g), torch.randperm(18, generator=g)
    V0, H0 = init_factors(W, 3, "uniform", [5])
    V1, H1 = V0.clone(), H0.clone()
    V2, H2 = V0[:, pr].clone(), H0[:, :, pc].clone()
    mu_frobenius(W, V1, H1, 200, 1e-8)
    Wp = W[:, pr][:, :, pc].contiguous()
    mu_frobenius(Wp, V2, H2, 200, 1e-8)
    S1, S2 = residual(W, V1, H1), residual(Wp, V2, H2)
    torch.testing.assert_close(S2, S1[:, pr][:, :, pc], rtol=1e-9, atol=1e-12)


def test_nndsvd_init_is_permutation_equivariant_and_deterministic():
    g = torch.Generator().manual_seed(2)
    W = torch.rand(1, 10, 14, generator=g, dtype=torch.float64)
    V, H = nmf(W, 3, 100, init="nndsvda")
    V2, H2 = nmf(W, 3, 100, init="nndsvda")
    assert torch.equal(V, V2) and torch.equal(H, H2)
    assert (V >= 0).all() and (H >= 0).all()


def test_engine_matches_reference_loop():
    g = torch.Generator().manual_seed(3)
    W = torch.rand(40, 72, generator=g)
    Vr, Hr = nmf_reference(W, 7, 200, seed=11)
    V, H = nmf(W.unsqueeze(0), 7, 200, seeds=[11])
    torch.testing.assert_close(V[0] @ H[0], Vr @ Hr, rtol=1e-3, atol=1e-5)


def test_objective_decreases_for_every_loss():
    g = torch.Generator().manual_seed(4)
    W = torch.rand(1, 20, 25, generator=g) + 0.01
    for loss in ("frobenius", "kl", "is"):
        errs = []
        for iters in (1, 20, 100):
            V, H = nmf(W, 3, iters, loss=loss, seeds=[0])
            errs.append(float((W - V @ H).norm()))
        assert errs[2] < errs[0], loss


def test_score_is_deterministic_and_leaves_model_unchanged(tiny):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    a = yopo.score(tiny, "yopo", seed=3, iters=30)
    b = yopo.score(tiny, "yopo", seed=3, iters=30)
    c = yopo.score(tiny, "yopo", seed=4, iters=30)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())
    assert set(a) == {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}
    assert all((s >= 0).all() and s.shape == tiny.get_parameter(k).shape for k, s in a.items())


def test_batched_layers_equal_one_by_one():
    torch.manual_seed(0)
    ws = {f"l{i}.weight": torch.randn(8, 4, 3, 3) for i in range(3)}
    cfg = YopoConfig(iters=50)
    together = yopo_saliency(ws, cfg, seed=1)
    alone = {n: yopo_saliency({n: w}, cfg, seed=1)[n] for n, w in ws.items()}
    for n in ws:
        torch.testing.assert_close(together[n], alone[n], rtol=1e-4, atol=1e-5)  # bmm vs mm rounding


@pytest.mark.parametrize("kw", [dict(per_channel=True), dict(loss="kl"), dict(loss="is"), dict(nmf_init="nndsvd"),
                                dict(nmf_init="nndsvda"), dict(normalize="median"),
                                dict(per_channel=True, per_channel_rank=2)])
def test_variants_give_finite_nonnegative_scores(tiny, kw):
    s = yopo.score(tiny, "yopo", iters=20, **kw)
    assert all(torch.isfinite(v).all() and (v >= 0).all() for v in s.values())
    m = yopo.calibrate(s, 0.8)
    assert sum(int(x.sum()) for x in m.values()) == yopo.n_keep(0.8, sum(x.numel() for x in s.values()))


def test_rank_is_clipped_with_a_warning():
    from yopo.methods.yopo.saliency import RankWarning

    model = nn.Sequential(nn.Linear(5, 3))
    with pytest.warns(RankWarning, match=r"rank 7 >= min\(out=3, in=5\) = 3: .* not a saliency \(clipped to 3"):
        yopo.score(model, "yopo", iters=5)


def test_full_rank_layers_have_a_defined_score():
    import warnings

    from yopo.methods.yopo.saliency import layer_rank

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3), nn.Linear(3, 40))  # min dims 3: rank 7 would be full rank
    w = model[0].weight.detach()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no clipping warning: the behaviour is chosen
        mag = yopo.score(model, "yopo", iters=20, full_rank="magnitude")
        red = yopo.score(model, "yopo", iters=20, full_rank="reduce")
    assert torch.equal(mag["0.weight"], w.abs())  # Prop. 1a: the rank-0 residual is |W|
    assert layer_rank("x", 3, 5, yopo.YopoConfig(full_rank="reduce")) == 2
    assert red["0.weight"].abs().max() > 1e-3  # rank 2 of a 3 x 5 matrix leaves a real residual
    assert layer_rank("x", 64, 576, yopo.YopoConfig(rank_fraction=0.1)) == 7  # ceil(0.1 * 64)
    assert layer_rank("x", 10, 160, yopo.YopoConfig(rank_fraction=0.1)) == 1
    with pytest.raises(ValueError, match="rank_fraction=1.0 is out of range"):
        yopo.YopoConfig(rank_fraction=1.0)


def test_residual_scale_makes_layers_comparable():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 20), nn.Linear(20, 10))
    with torch.no_grad():
        model[1].weight.mul_(100.0)  # a layer on another scale
    s = yopo.score(model, "yopo", iters=20, residual_scale="layer_rms")
    for v in s.values():
        assert float(v.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-5)
    plain = yopo.score(model, "yopo", iters=20)
    for n in s:  # the order inside a layer is unchanged (Lemma 1: positive rescaling)
        assert torch.equal(torch.argsort(s[n].flatten(), stable=True), torch.argsort(plain[n].flatten(), stable=True))


def test_conv1d_conv3d_and_shared_weights_are_handled():
    lin = nn.Linear(6, 6)
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.Conv3d(2, 3, 2), lin, lin)
    layers = yopo.prunable_layers(model)
    assert [l.name for l in layers] == ["0.weight", "1.weight", "2.weight"]  # tied weight counted once
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = yopo.score(model, "yopo", iters=5)
    assert s["1.weight"].shape == (3, 2, 2, 2, 2)


def test_exclude_patterns():
    from yopo.models import get_model

    torch.manual_seed(0)
    model = get_model("resnet20", width=4)
    names = [l.name for l in yopo.prunable_layers(model, exclude=(":first", "fc"))]
    assert "conv1.weight" not in names and "fc.weight" not in names and "layer1.0.conv1.weight" in names
    names = [l.name for l in yopo.prunable_layers(model, exclude=("*shortcut*",))]
    assert not any("shortcut" in n for n in names)


@pytest.mark.parametrize("kw,match", [
    (dict(rank=0), r"rank=0 is out of range; allowed: integers in \[1, inf\]"),
    (dict(rank=-2), r"rank=-2 is out of range"),
    (dict(iters=0), r"iters=0 is out of range"),
    (dict(nmf_init="svd"), r"nmf_init='svd' is not allowed; choose one of"),
    (dict(init="svd"), r"unknown option\(s\) \['init'\] for method 'yopo' \(renamed: init -> nmf_init\)"),
    (dict(loss="l1"), r"loss='l1' is not allowed"),
    (dict(bogus=1), r"unknown option\(s\) \['bogus'\] for method 'yopo'"),
])
def test_bad_options_are_one_line_errors(tiny, kw, match):
    with pytest.raises(ValueError, match=match) as e:
        yopo.score(tiny, "yopo", **kw)
    assert "\n" not in str(e.value)


def test_bad_models_and_methods(tiny):
    with pytest.raises(ValueError, match=r"method='nope' is not allowed; choose one of \["):
        yopo.score(tiny, "nope")
    with pytest.raises(ValueError, match="no prunable layers"):
        yopo.score(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), "yopo")
    with torch.no_grad():
        tiny.conv1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="conv1.weight.*NaN or Inf"):
        yopo.score(tiny, "yopo")
    with torch.no_grad():
        tiny.conv1.weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        yopo.score(tiny, "magnitude")


def test_paths_on_a_token_model_is_a_clear_error():
    # the path structure feeds a float tensor; a network that embeds token ids cannot take it
    class TokenNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.fc = nn.Embedding(50, 16), nn.Linear(16, 4)

        def forward(self, ids):
            return self.fc(self.emb(ids))

    with pytest.raises(ValueError, match=r"paths=True runs TokenNet on a float input .* paths=False"):
        yopo.score(TokenNet(), "yopo", paths=True, paths_target=0.9, input_shape=(8,))
