"""One grid over every registered scoring method: shapes/keys, finiteness, sign, exact budgets,
determinism, and the caller's model left unchanged. Tiny models and data keep it fast."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import yopo
from yopo.core.calibration import n_keep
from yopo.models import get_model

SIGNED = {"grasp"}  # theta * Hg is signed by definition; every other method is non-negative
METHODS = yopo.available_methods()


class SmallNet(nn.Module):
    """Conv + BN + Conv1d-free small CNN with a Linear head (biases on some layers)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8, 12)
        self.fc2 = nn.Linear(12, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.c1(x)))
        x = torch.relu(self.bn2(self.c2(x)))
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def _model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return SmallNet() if kind == "small" else get_model("resnet20", width=4)


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    return x, y


def _opts(method: str) -> dict:
    # data methods: batch of 8 from the 16 examples; the rest at their defaults except a short
    # SynFlow schedule for the resnet (speed); input_size matches the data
    if method in ("snip", "grasp", "prospr", "iter_snip"):
        return {"batch_size": 8}
    if method == "synflow":
        return {"iters": 20, "input_size": 16}
    return {}


def _score(model, method, seed=0):
    data = _data() if not yopo.get_method(method).data_free else None
    return yopo.score(model, method, seed=seed, data=data, **_opts(method))


def _state(model):
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            [m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()])


@pytest.fixture(scope="module")
def cache():
    return {}


def _cached(cache, kind, method):
    if (kind, method) not in cache:
        model = _model(kind)
        model.train()
        before = _state(model)
        s = _score(model, method)
        cache[(kind, method)] = (model, before, s)
    return cache[(kind, method)]


@pytest.mark.parametrize("kind", ["small", "resnet"])
@pytest.mark.parametrize("method", METHODS)
def test_grid(cache, method, kind):
    model, before, scores = _cached(cache, kind, method)
    layers = yopo.prunable_layers(model)
    # keys and shapes: exactly the prunable layers, by parameter name
    assert list(scores) == [l.name for l in layers]
    for l in layers:
        s = scores[l.name]
        assert tuple(s.shape) == l.shape and s.dtype == torch.float32
        assert torch.isfinite(s).all()
        if method not in SIGNED:
            assert (s >= 0).all(), f"{method} gave negative scores on {l.name}"
    # exact budgets after calibration
    total = sum(l.numel for l in layers)
    for mode in ("global", "layerwise", "local"):
        for s in (0.5, 0.8, 0.9):
            cal = yopo.mort(scores, s, mode=mode)
            assert cal.kept == n_keep(s, total) == sum(int(m.sum()) for m in cal.masks.values())
    # caller's model unchanged: weights, BN running stats, train/eval flags, requires_grad
    after = _state(model)
    assert before[0].keys() == after[0].keys()
    for k in before[0]:
        assert torch.equal(before[0][k], after[0][k]), f"{method} changed {k}"
    assert before[1] == after[1] and before[2] == after[2]


@pytest.mark.parametrize("method", METHODS)
def test_deterministic_and_copy_invariant(cache, method):
    model, _, first = _cached(cache, "small", method)
    again = _score(copy.deepcopy(model), method)  # a copy: keys by name, not by object id
    assert list(again) == list(first)
    for n in first:
        assert first[n].numpy().tobytes() == again[n].numpy().tobytes(), f"{method} not deterministic on {n}"


@pytest.mark.parametrize("method", METHODS)
def test_eval_mode_model_unchanged(method):
    model = _model("small").eval()
    before = _state(model)
    _score(model, method)
    after = _state(model)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert before[1] == after[1] and not any(after[1])
