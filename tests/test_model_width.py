"""``model_width`` scales a model's channels the same way in `yopo prune`, `yopo train` and a sweep
(so a family fits the model that gets trained), and a model without a width setting is an error."""
import json

import pytest
import torch

from yopo.cli import main
from yopo.core.family import Family
from yopo.experiment.sweep import SweepSpec, expand
from yopo.experiment.train import TrainConfig
from yopo.models import build, width_kwargs

torch.set_num_threads(1)


@pytest.mark.parametrize("name,mult,first_out", [("resnet20", 0.5, 8), ("vgg11", 0.25, 16), ("cnn_digits", 2.0, 32),
                                                 ("resnet20", 1.0, 16)])
def test_multiplier_scales_the_first_layer(name, mult, first_out):
    shape = (1, 8, 8) if name == "cnn_digits" else (3, 32, 32)
    model = build(name, 10, seed=0, **width_kwargs(name, mult), **({"in_channels": 1} if name == "cnn_digits" else {}))
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.out_channels == first_out
    assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_a_model_without_width_and_bad_values_are_errors():
    with pytest.raises(ValueError, match=r"model_width=0.5: model 'wrn16_8' has no width setting; models with one: .*vgg11"):
        width_kwargs("wrn16_8", 0.5)
    for bad in (0, -1.0, True, "0.5"):
        with pytest.raises(ValueError, match="model_width="):
            width_kwargs("vgg11", bad)
    with pytest.raises(ValueError, match="no width setting"):  # at config time, before any data is loaded
        TrainConfig(model="mlp_digits", model_width=0.5)
    with pytest.raises(ValueError, match="model 'conv1d_mnist1d' has no width setting"):  # the dataset's default model
        TrainConfig(dataset="mnist1d", model_width=0.5)
    assert TrainConfig(dataset="digits", model_width=0.5).model_width == 0.5  # default cnn_digits takes one
    assert width_kwargs("mlp_digits", None) == {}


def test_prune_and_train_build_the_same_scaled_model(tmp_path, capsys):
    fam = tmp_path / "fam.safetensors"
    assert main(["-q", "prune", "--model", "cnn_digits", "--num-classes", "10", "--model-width", "0.5",
                 "--sparsity", "0.8", "--out", str(fam)]) == 0
    scores = Family.load(fam).scores
    assert tuple(scores["features.0.weight"].shape) == (8, 1, 3, 3)
    assert tuple(scores["features.2.weight"].shape) == (16, 8, 3, 3)
    capsys.readouterr()
    assert main(["train", "--model", "cnn_digits", "--model-width", "0.5", "--mask", str(fam), "--sparsity", "0.8",
                 "--epochs", "1", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert abs(out["sparsity"] - 0.8) < 1e-3
    # the full-width model does not fit the half-width family: refused, not silently mis-applied
    assert main(["train", "--model", "cnn_digits", "--mask", str(fam), "--sparsity", "0.8", "--epochs", "1",
                 "--no-progress"]) == 2
    assert "does not fit" in capsys.readouterr().err


def test_sweep_families_carry_the_width(tmp_path):
    def runs(width):
        train = {"epochs": 1, "device": "cpu", **({"model_width": width} if width else {})}
        spec = SweepSpec.from_dict({"name": "t", "out": str(tmp_path), "models": ["cnn_digits"], "datasets": ["digits"],
                                    "methods": ["magnitude"], "sparsities": [0.9], "seeds": [0],
                                    "runner": "synthetic", "train": train})
        return expand(spec)
    half, full = runs(0.5)[0], runs(None)[0]
    assert half.family["model_opts"]["width"] == 8 and "width" not in full.family["model_opts"]
    assert half.family_key != full.family_key and half.id != full.id
