"""``kept_scale``: how the kept weights start when masks are applied (CalibrationSettings field;
``apply_masks(kept_scale=...)``). ``layer_rms`` scales each layer's kept weights by one factor to
the RMS of the layer's dense init; the mask itself does not change."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import yopo
from yopo.core.calibration import CalibrationSettings
from yopo.core.masks import KEPT_SCALES, apply_masks
from yopo.experiment.train import TrainConfig, run
from yopo.experiment.train.loop import Hook
from yopo.models import build


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))


def _largest(w: torch.Tensor, k: int) -> torch.Tensor:
    """The mask of the k largest |w| (a magnitude ranking: the kept RMS is above the layer's)."""
    m = torch.zeros(w.numel(), dtype=torch.bool)
    m[w.abs().flatten().topk(k).indices] = True
    return m.reshape(w.shape)


def _rms(t: torch.Tensor) -> float:
    return float(t.double().pow(2).mean().sqrt())


def test_layer_rms_keeps_each_layers_init_scale_and_the_mask():
    net = _net()
    dense = {n: p.detach().clone() for n, p in net.named_parameters() if n.endswith("weight")}
    masks = {n: _largest(w, 30) for n, w in dense.items()}
    assert all(_rms(dense[n][m]) > 1.5 * _rms(dense[n]) for n, m in masks.items())  # what it corrects
    apply_masks(net, masks, kept_scale="layer_rms")
    for n, p in net.named_parameters():
        if n not in masks:
            continue
        w, m = p.detach(), masks[n]
        assert torch.equal(w != 0, m)  # same positions (no kept weight was 0)
        assert torch.all(w[~m] == 0)
        assert _rms(w[m]) == pytest.approx(_rms(dense[n]), rel=1e-6)
        ratio = w[m] / dense[n][m]  # one factor per layer: signs and relative sizes kept
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-5) and float(ratio[0]) < 1


def test_none_leaves_the_kept_weights_bit_identical():
    net = _net()
    dense = {n: p.detach().clone() for n, p in net.named_parameters() if n.endswith("weight")}
    masks = {n: _largest(w, 30) for n, w in dense.items()}
    apply_masks(net, masks)
    for n, p in net.named_parameters():
        if n in masks:
            assert torch.equal(p.detach()[masks[n]], dense[n][masks[n]])


def test_a_layer_that_keeps_nothing_stays_empty():
    net = _net()
    masks = {"0.weight": torch.zeros(30, 20, dtype=torch.bool), "2.weight": torch.ones(5, 30, dtype=torch.bool)}
    before = net[2].weight.detach().clone()
    apply_masks(net, masks, kept_scale="layer_rms")
    assert torch.all(net[0].weight == 0)
    assert torch.allclose(net[2].weight.detach(), before)  # all kept: the factor is 1


def test_bad_values_and_a_second_application_are_one_line_errors():
    net = _net()
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in net.named_parameters() if n.endswith("weight")}
    with pytest.raises(ValueError, match=r"kept_scale='rms' is not allowed; choose one of \['none', 'layer_rms', 'auto'\]"):
        apply_masks(net, masks, kept_scale="rms")
    with pytest.raises(ValueError, match=r"kept_scale='rms'.*\['none', 'layer_rms', 'auto'\]"):
        CalibrationSettings(kept_scale="rms")
    apply_masks(net, masks)
    # the dense weights are gone once a layer is masked: scaling to "their" RMS would be wrong
    with pytest.raises(ValueError, match=r"kept_scale='layer_rms'.*'0.weight'.*already masked"):
        apply_masks(net, masks, kept_scale="layer_rms")
    assert KEPT_SCALES == ("none", "layer_rms", "auto")


def test_a_pruned_checkpoint_is_refused_not_shrunk():
    """A plain model loaded from a pruned checkpoint has no mask buffers, but its pruned entries
    are 0: the RMS over them would shrink the kept weights by sqrt(density)."""
    net = _net()
    masks = {n: _largest(p.detach(), 30) for n, p in net.named_parameters() if n.endswith("weight")}
    apply_masks(net, masks, kept_scale="layer_rms")
    plain = _net()
    plain.load_state_dict(net.state_dict())
    with pytest.raises(ValueError, match=r"'0.weight'.*every pruned entry is already 0.*kept_scale='none'"):
        apply_masks(plain, masks, kept_scale="layer_rms")
    apply_masks(plain, masks)  # the resume path: as loaded
    assert torch.equal(plain[0].weight.detach(), net[0].weight.detach())
    # only the second layer pruned: refused before the first one is touched
    half = _net()
    with torch.no_grad():
        half[2].weight.masked_fill_(~masks["2.weight"], 0)
    first = half[0].weight.detach().clone()
    with pytest.raises(ValueError, match=r"'2.weight'.*every pruned entry is already 0"):
        apply_masks(half, masks, kept_scale="layer_rms")
    assert torch.equal(half[0].weight.detach(), first) and not yopo.get_masks(half)


class _FirstWeights(Hook):
    """The prunable weights the training starts from."""

    def on_train_start(self, state):
        self.w = {n: p.detach().clone() for n, p in state.model.named_parameters() if p.dim() > 1}


@pytest.mark.parametrize("given", ["scores", "calibration"])  # yopo train scores / a sweep passes its Calibration
@pytest.mark.parametrize("kept_scale", KEPT_SCALES)
def test_training_starts_from_the_scaled_kept_weights_and_the_same_mask(kept_scale, given):
    cfg = TrainConfig(model="mlp_digits", dataset="digits", epochs=1, progress=False, seed=3)
    settings = CalibrationSettings(kept_scale=kept_scale)
    init = dict(build("mlp_digits", 10, init=cfg.weight_init, seed=3).named_parameters())
    hook = _FirstWeights()
    if given == "scores":
        res = run(cfg, method="magnitude", sparsity=0.9, calibration=settings, progress=False, hooks=[hook])
    else:
        scores = {n: p.detach().abs() for n, p in init.items() if n.endswith("weight")}
        res = run(cfg, masks=yopo.mort(scores, 0.9, settings), sparsity=0.9, progress=False, hooks=[hook])
    assert res["calibration"]["settings"]["kept_scale"] == kept_scale
    for n, w in hook.w.items():
        kept = w != 0
        assert torch.equal(kept, init[n].detach().abs() >= init[n].detach().abs()[kept].min())  # magnitude's mask
        if kept_scale in ("none", "auto"):  # auto: the MLP has no normalization layer, so none
            assert torch.equal(w[kept], init[n].detach()[kept])
        else:
            assert _rms(w[kept]) == pytest.approx(_rms(init[n].detach()), rel=1e-5)


def test_a_sweep_run_with_kept_scale_is_a_run_of_its_own():
    from yopo.experiment.sweep.spec import SweepSpec, expand

    def ids(**cal):
        spec = SweepSpec.from_dict({"name": "t", "out": "unused", "models": ["mlp_digits"], "datasets": ["digits"],
                                    "sparsities": [0.9], "seeds": [0], "runner": "synthetic",
                                    "methods": [{"label": "m", "method": "magnitude", **cal}]})
        return [r.id for r in expand(spec)]

    assert ids() == ids(kept_scale="none")  # the default hashes as before the field existed
    assert ids() != ids(kept_scale="layer_rms")


def test_the_public_api_takes_it():
    net = _net()
    masks = {n: _largest(p.detach(), 10) for n, p in net.named_parameters() if n.endswith("weight")}
    yopo.apply_masks(net, masks, kept_scale="layer_rms")
    assert yopo.sparsity(net) == pytest.approx(1 - 20 / 750)


def test_cli_records_it_and_inspect_refuses_it_without_a_mask_file(tmp_path, capsys):
    import json
    import warnings

    from yopo.cli import main
    from yopo.core.family import Family, load_mask

    fam, mask = tmp_path / "f.safetensors", tmp_path / "m.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["prune", "--model", "mlp_digits", "--method", "magnitude", "--sparsity", "0.9",
                     "--kept-scale", "layer_rms", "--out", str(fam)]) == 0
        assert Family.load(fam).calibration_settings.kept_scale == "layer_rms"
        capsys.readouterr()
        assert main(["inspect", str(fam), "--sparsity", "0.8", "--kept-scale", "none"]) == 2
        err = capsys.readouterr().err.strip()
        assert "--kept-scale does not change the mask" in err and len(err.splitlines()) == 1
        assert main(["inspect", str(fam), "--sparsity", "0.8", "--mask-out", str(mask)]) == 0
        assert load_mask(mask)[1]["calibration"]["kept_scale"] == "layer_rms"
        out = tmp_path / "run"
        assert main(["train", "--model", "mlp_digits", "--epochs", "1", "--no-progress", "--no-checkpoint",
                     "--mask", str(mask), "--sparsity", "0.8", "--out", str(out)]) == 0
    assert json.loads((out / "result.json").read_text())["calibration"]["settings"]["kept_scale"] == "layer_rms"


def _bn_net(norm: bool):
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, padding=1, bias=not norm)] + ([nn.BatchNorm2d(8)] if norm else []) + [nn.ReLU()]
    layers += [nn.Conv2d(8, 8, 3, padding=1, bias=not norm)] + ([nn.BatchNorm2d(8)] if norm else []) + [nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


@pytest.mark.parametrize("norm, resolved", [(True, "layer_rms"), (False, "none")])
def test_auto_rescales_exactly_when_every_hidden_layer_is_normalized(norm, resolved):
    from yopo.core.masks import resolve_kept_scale

    ref = _bn_net(norm)
    masks = {n: _largest(p.detach(), max(1, p.numel() // 10)) for n, p in ref.named_parameters() if p.dim() > 1}
    assert resolve_kept_scale(ref, masks, (3, 8, 8)) == resolved
    auto, same = _bn_net(norm), _bn_net(norm)
    apply_masks(auto, masks, kept_scale="auto", input_shape=(3, 8, 8))
    apply_masks(same, masks, kept_scale=resolved)
    assert all(torch.equal(a, b) for a, b in zip(auto.state_dict().values(), same.state_dict().values()))


def test_auto_on_a_net_that_takes_no_float_tensor_is_one_line_error():
    emb = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 3), nn.ReLU(), nn.Linear(3, 2))
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in emb.named_parameters() if n[0] in "24"}
    with pytest.raises(ValueError, match=r"kept_scale='auto' runs Sequential on a float input.*'none' or 'layer_rms'"):
        apply_masks(emb, masks, kept_scale="auto", input_shape=(2,))


def test_the_presets_pin_it():
    from yopo.core.presets import PRESETS

    assert PRESETS["paper"].calibration["kept_scale"] == "none"  # the paper trains from the initialization
    assert PRESETS["recommended"].calibration["kept_scale"] == "auto"
