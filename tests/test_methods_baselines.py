"""Method-specific checks of the baselines and the pitfalls of public reference code."""
from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import yopo
from yopo.core.allocation import apportion, erk_densities
from yopo.core.calibration import n_keep, topk_mask
from yopo.core.config import add_dataclass_args, from_args
from yopo.methods import get_batch, native_mask, native_sparsity
from yopo.methods.support.encoding import IterativeEncoder
from yopo.methods.support.schedules import exponential_schedule
from yopo.methods.rreg import regular_bipartite
from yopo.models import get_model


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def _data(n=12, size=8):
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def _reproduces(scores):
    cal = yopo.mort(scores, native_sparsity(scores), mode="global", min_keep=0)
    nm = native_mask(scores)
    return all(torch.equal(cal.masks[n], nm[n]) for n in scores)


# ------------------------------------------------------------------------------------ data helper

def test_get_batch_pair_and_iterable():
    x, y = _data(12)
    bx, by = get_batch((x, y), 5)
    assert torch.equal(bx, x[:5]) and torch.equal(by, y[:5])
    loader = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)]
    bx, by = get_batch(loader, 6)
    assert torch.equal(bx, x[:6]) and torch.equal(by, y[:6])
    bx, _ = get_batch(loader, 100)  # fewer available: all of them
    assert bx.shape[0] == 12
    with pytest.raises(ValueError, match="empty"):
        get_batch([], 4)


def test_data_free_methods_never_see_data():
    class Poison:
        def __iter__(self):
            raise AssertionError("data-free method touched the data")

    for m in yopo.available_methods():
        if yopo.get_method(m).data_free:
            opts = {"iters": 3, "input_size": 8} if m == "synflow" else {}
            yopo.score(_net(), m, data=Poison(), **opts)


def test_data_methods_require_data():
    for m in ("snip", "grasp", "prospr", "iter_snip"):
        with pytest.raises(ValueError, match="needs data"):
            yopo.score(_net(), m)


# ------------------------------------------------------------------------------- gradient methods

def test_snip_is_abs_grad_times_weight():
    model, (x, y) = _net(), _data()
    s = yopo.score(model, "snip", data=(x, y), batch_size=12, train_mode=False)
    m2 = _net().eval()
    F.cross_entropy(m2(x), y).backward()
    for n, p in m2.named_parameters():
        if n in s:
            assert torch.allclose(s[n], (p.grad * p).abs(), atol=1e-7)


def test_grasp_sign_convention_is_theta_times_hg():
    """score = theta * (H g) (keep-high), i.e. the paper's S = -theta*Hg negated."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 5))
    x, y = torch.randn(6, 4), torch.randint(0, 5, (6,))
    T = 200.0
    s = yopo.score(model, "grasp", data=(x, y), batch_size=6, temperature=T)
    w1, w2 = model[0].weight.detach(), model[2].weight.detach()
    flatw = torch.cat([w1.flatten(), w2.flatten()])

    def loss(v):
        a, b = v[:12].reshape(3, 4), v[12:].reshape(5, 3)
        h = torch.tanh(x @ a.T + model[0].bias.detach())
        return F.cross_entropy((h @ b.T + model[2].bias.detach()) / T, y)

    g = torch.autograd.functional.jacobian(loss, flatw)
    H = torch.autograd.functional.hessian(loss, flatw)
    want = flatw * (H @ g)
    got = torch.cat([s["0.weight"].flatten(), s["2.weight"].flatten()])
    assert torch.allclose(got, want, rtol=1e-3, atol=1e-12)


def test_prospr_zero_steps_is_snip():
    model, data = _net(), _data()
    a = yopo.score(model, "prospr", data=data, batch_size=12, steps=0)
    b = yopo.score(model, "snip", data=data, batch_size=12)
    for n in a:
        assert torch.allclose(a[n], b[n], rtol=1e-5, atol=1e-9)


def test_prospr_fresh_batches_differ_from_same_batch():
    model, data = _net(), _data(24)
    a = yopo.score(model, "prospr", data=data, batch_size=8)
    b = yopo.score(model, "prospr", data=data, batch_size=8, same_batch=False)
    assert any(not torch.equal(a[n], b[n]) for n in a)


def test_iter_snip_one_round_is_snip_topk():
    model, data = _net(), _data()
    it = yopo.score(model, "iter_snip", data=data, batch_size=12, iters=1, target_sparsity=0.8)
    sn = yopo.score(model, "snip", data=data, batch_size=12)
    assert _reproduces(it) and native_sparsity(it) == 1 - n_keep(0.8, 8 * 6 * 9 + 6 * 27 + 80) / (8 * 6 * 9 + 6 * 27 + 80)
    want = topk_mask(torch.cat([v.flatten().double() for v in sn.values()]), n_keep(0.8, sum(v.numel() for v in sn.values())))
    got = torch.cat([v.flatten() for v in native_mask(it).values()])
    assert torch.equal(got, want)


@pytest.mark.parametrize("revive", [False, True])
def test_iter_snip_reproduces_native_mask(revive):
    s = yopo.score(_net(), "iter_snip", data=_data(), batch_size=12, iters=5, target_sparsity=0.9, revive=revive)
    assert _reproduces(s)


# ----------------------------------------------------------------------------------------- SynFlow

def test_synflow_calibration_reproduces_final_mask_and_nests():
    model = get_model("resnet20", width=4)
    s = yopo.score(model, "synflow", target_sparsity=0.95, iters=10, input_size=8)
    total = sum(v.numel() for v in s.values())
    assert native_sparsity(s) == 1 - n_keep(0.95, total) / total
    cal = yopo.mort(s, 0.95, mode="global", min_keep=0)
    nm = native_mask(s)
    assert all(torch.equal(cal.masks[n], nm[n]) for n in s)
    # earlier rounds' masks are reproduced at their own sparsities (dropped-later ranks higher)
    s5 = exponential_schedule(0.95, 10)[4]
    enc_order = torch.cat([v.flatten() for v in s.values()])
    k5 = n_keep(s5, total)
    assert int((enc_order >= 2.0 ** (5 - 10 - 1 + 1)).sum()) == k5


def test_synflow_one_round_equals_one_shot_scores():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    s = yopo.score(model, "synflow", iters=1, target_sparsity=0.5)
    m = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    m.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in m.parameters():
            p.abs_()
    m(torch.ones(1, 5, dtype=torch.float64)).sum().backward()
    key = torch.cat([(m[0].weight.grad * m[0].weight).flatten(), (m[2].weight.grad * m[2].weight).flatten()])
    want = topk_mask(key, n_keep(0.5, key.numel()))
    got = torch.cat([v.flatten() for v in native_mask(s).values()])
    assert torch.equal(got, want)


def test_synflow_ties_do_not_over_prune():
    """Constant weights make SynFlow scores tie massively; a `score <= threshold` rule (as in
    public code) would prune every tied entry. The budget must still be exact every round."""
    model = nn.Sequential(nn.Linear(6, 6, bias=False), nn.ReLU(), nn.Linear(6, 4, bias=False))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.1)
    s = yopo.score(model, "synflow", iters=4, target_sparsity=0.6)
    total = 60
    assert native_sparsity(s) == 1 - n_keep(0.6, total) / total
    assert _reproduces(s)


def test_iterative_encoder_orders_rounds():
    layer = yopo.prunable_layers(nn.Linear(4, 2))
    enc = IterativeEncoder(tuple(layer), 3, "cpu")
    keys = torch.arange(8.0)
    for s in (0.25, 0.5, 0.75):
        enc.step(keys, s)
    sc = enc.scores()["weight"].flatten()
    assert torch.equal(sc.argsort(), torch.arange(8))  # dropped earliest = lowest
    assert int((sc >= 1).sum()) == 2


def test_schedule_ends_at_target():
    sch = exponential_schedule(0.9, 100)
    assert len(sch) == 100 and sch[-1] == 0.9 and all(a < b for a, b in zip(sch, sch[1:]))


# --------------------------------------------------------------------------------------- expanders

def test_xnet_left_regular_whole_kernels():
    model = get_model("resnet20", width=4)
    s = yopo.score(model, "xnet", target_sparsity=0.75)
    assert _reproduces(s)
    for n, m in native_mask(s).items():
        k = m.reshape(m.shape[0], m.shape[1], -1)
        assert (k.all(-1) | ~k.any(-1)).all(), "kernel granularity"
        deg = k.any(-1).sum(1)
        assert (deg == deg[0]).all() and deg[0] >= 1
    assert abs(native_sparsity(s) - 0.75) < 0.02


def test_rreg_both_sides_regular_and_randomized():
    m = regular_bipartite(12, 18, 50, 4, seed=1)
    assert int(m.sum()) == 50
    r, c = m.sum(1), m.sum(0)
    assert int(r.max() - r.min()) <= 1 and int(c.max() - c.min()) <= 1
    # the randomization is real: other seeds / no swaps give other graphs with the same degrees
    assert not torch.equal(m, regular_bipartite(12, 18, 50, 4, seed=2))
    a, b = regular_bipartite(12, 18, 50, 0, seed=1), m
    assert not torch.equal(a, b)
    s = yopo.score(get_model("resnet20", width=4), "rreg", target_sparsity=0.7)
    assert _reproduces(s)
    for mask in native_mask(s).values():
        k = mask.reshape(mask.shape[0], mask.shape[1], -1).any(-1)
        r, c = k.sum(1), k.sum(0)
        assert int(r.max() - r.min()) <= 1 and int(c.max() - c.min()) <= 1


def test_expander_seed_changes_mask():
    model = _net()
    a = native_mask(yopo.score(model, "xnet", seed=0))
    b = native_mask(yopo.score(model, "xnet", seed=1))
    assert any(not torch.equal(a[n], b[n]) for n in a)


def test_apportion_hits_target():
    c = apportion([2.5, 3.5], [10, 1], [1, 1], [5, 5], 29)
    assert c == [3, 1]  # 31: the closest reachable total (20+5=25 and 30+1=31 are the candidates)
    assert apportion([0.2, 7.9], [4, 1], [1, 1], [9, 9], 12) == [1, 8]
    d = erk_densities(tuple(yopo.prunable_layers(get_model("resnet20", width=4))), 0.9)
    assert all(0 < x <= 1 for x in d)


# ------------------------------------------------------------------------------------ PHEW / NPB

@pytest.mark.parametrize("method", ["phew", "npb"])
def test_graph_methods_native_mask(method):
    model = get_model("resnet20", width=4)
    s = yopo.score(model, method, target_sparsity=0.9)
    assert _reproduces(s)
    assert abs(native_sparsity(s) - 0.9) < 0.02
    for m in native_mask(s).values():
        k = m.reshape(m.shape[0], m.shape[1], -1)
        assert (k.all(-1) | ~k.any(-1)).all()


def test_phew_walks_follow_magnitude():
    """A column of huge weights should attract the walks."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 20, bias=False), nn.Linear(20, 20, bias=False))
    with torch.no_grad():
        model[0].weight.mul_(0.01)
        model[0].weight[:, 3] = 10.0
    s = yopo.score(model, "phew", target_sparsity=0.8)
    m = native_mask(s)["0.weight"]
    # backward walks almost always enter column 3 (unbiased walks would put ~1/20 of edges there):
    # it saturates, while the other columns are far from full
    assert m[:, 3].all() and m.sum() - m[:, 3].sum() < 0.3 * 19 * 20


def test_npb_every_output_node_effective():
    s = yopo.score(get_model("resnet20", width=4), "npb", target_sparsity=0.95)
    for m in native_mask(s).values():
        assert m.reshape(m.shape[0], -1).any(1).all()


# ------------------------------------------------------------------------- options and pitfalls

def test_bool_options_are_real_bools_and_cli_pairs():
    cfg_cls = yopo.get_method("snip").config
    with pytest.raises(TypeError, match="train_mode='False'"):
        yopo.score(_net(), "snip", data=_data(), train_mode="False")
    p = argparse.ArgumentParser()
    add_dataclass_args(p, cfg_cls)
    assert from_args(cfg_cls, p.parse_args(["--no-train-mode"])).train_mode is False
    assert from_args(cfg_cls, p.parse_args([])).train_mode is True


@pytest.mark.parametrize("method,opts,match", [
    ("synflow", {"iters": 0}, "iters=0"),
    ("synflow", {"target_sparsity": 1.0}, "target_sparsity=1.0"),
    ("grasp", {"temperature": 0.0}, "temperature=0.0"),
    ("prospr", {"momentum": 2.0}, "momentum=2.0"),
    ("iter_snip", {"schedule": "cubic"}, "schedule='cubic'"),
    ("npb", {"path_weight": -0.1}, "path_weight=-0.1"),
    ("snip", {"batch_size": 0}, "batch_size=0"),
])
def test_bad_options_one_line_errors(method, opts, match):
    with pytest.raises(ValueError, match=match) as e:
        yopo.score(_net(), method, data=_data(), **opts)
    assert "\n" not in str(e.value)


def test_every_config_validates_itself_from_its_declarations():
    """Every option has help text, the defaults are valid, and a value outside a declared rule
    (choices / low / high / bool type) is refused when the config is built: no separate validate()."""
    import dataclasses
    for m in yopo.available_methods():
        cls = yopo.get_method(m).config
        assert not hasattr(cls, "validate"), f"{m}: rules are declared with opt(), not checked by hand"
        cls()
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{m}.{f.name} has no help"
            md, t = f.metadata, str(f.type)
            bad = ("not-a-choice" if "choices" in md and not t.startswith("tuple") else
                   md["low"] - 1 if "low" in md and t.split("|")[0].strip() in ("int", "float") else
                   "yes" if t.startswith("bool") else None)
            if bad is None:
                continue
            with pytest.raises((ValueError, TypeError), match=f.name) as e:
                cls(**{f.name: bad})
            assert "\n" not in str(e.value)
