"""End-to-end masked training: learns, resumes bit-identically, keeps pruned weights at zero, fails
clearly on bad inputs."""
import dataclasses
import json

import pytest
import torch

import yopo
from yopo.cli import main
from yopo.experiment.train import Hook, TrainConfig, run, train
from yopo.experiment.train.loop import TrainingStalledWarning, load_checkpoint, prior_loss, stalled

torch.set_num_threads(1)  # 2 shared cores: one thread per test process is faster under load
FAST = dict(epochs=3, device="cpu", progress=False)


def test_digits_end_to_end_learns(tmp_path):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingStalledWarning)  # a net that learns is not flagged
        res = run(TrainConfig(model="mlp_digits", **FAST), method="yopo", sparsity=0.5, out_dir=tmp_path, iters=50)
    assert res["test_acc"] > 60  # percent; chance is 10
    assert res["stalled"] is False and res["train_loss"] < 0.9 * res["prior_loss"]
    assert abs(res["sparsity"] - 0.5) < 1e-3
    assert res["params_kept"] < res["params"] and res["flops_kept"] < res["flops"]
    for k in ("test_acc", "test_loss", "train_loss", "epochs", "time_s", "sparsity", "params", "params_kept",
              "flops", "flops_kept"):
        assert k in res
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2, 3]
    assert (tmp_path / "metrics.csv").read_text().startswith("epoch,")
    assert json.loads((tmp_path / "result.json").read_text())["epochs"] == 3
    masks, _ = yopo.load_mask(tmp_path / "mask.safetensors")
    blob = load_checkpoint(tmp_path / "checkpoint.pt")
    state = blob["model"]
    for n, m in masks.items():
        assert torch.equal(blob["masks"][n], m)  # masks travel beside the state dict, not in it
        assert (state[n][~m] == 0).all()
    assert not any(k.endswith("weight_mask") for k in state)


class Crash(Hook):
    def __init__(self, after):
        self.after = after

    def on_epoch_end(self, state, metrics):
        if state.epoch == self.after:
            raise KeyboardInterrupt


def test_resume_is_bit_identical(tmp_path):
    cfg = TrainConfig(model="mlp_digits", **FAST)
    full = run(cfg, method="random", sparsity=0.7, out_dir=tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(cfg, method="random", sparsity=0.7, out_dir=tmp_path / "b", hooks=[Crash(2)])
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 2
    resumed = run(cfg, method="random", sparsity=0.7, out_dir=tmp_path / "b", resume=True)
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    strip = lambda h: [{k: v for k, v in e.items() if k != "time_s"} for e in h]  # noqa: E731
    assert strip(full["history"]) == strip(resumed["history"])
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 3


def test_moved_pruned_weight_stops_the_run():
    from yopo.experiment.data import load_data
    data = load_data("digits", batch_size=64)
    model = yopo.models.build("mlp_digits", 10, seed=0)
    yopo.apply_masks(model, yopo.calibrate(yopo.score(model, "magnitude"), 0.5))

    class Break(Hook):  # an optimizer step that ignores the mask
        def on_step_end(self, state):
            with torch.no_grad():
                state.model.classifier.weight.add_(1.0)

    with pytest.raises(RuntimeError, match="pruned weights of classifier.weight are nonzero"):
        train(model, data, TrainConfig(model="mlp_digits", **FAST), hooks=[Break()])


def test_a_net_that_cannot_learn_is_flagged_stalled():
    """An emptied first layer leaves the hidden units constant (ReLU of their biases): the net can only
    learn the class frequencies, so its train loss ends near the class-prior loss, and the run says so."""
    cfg = TrainConfig(model="mlp_digits", epochs=2, device="cpu", progress=False)
    model = yopo.models.build("mlp_digits", 10, seed=0)
    masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in yopo.score(model, "magnitude").items()}
    first = next(iter(masks))
    masks[first][:] = False
    with pytest.warns(TrainingStalledWarning, match=r"training stalled: the last epoch's train loss 2\.\d+ is above "
                                                    r"0\.9 x 2\.30\d, the loss of predicting the class frequencies"):
        res = run(cfg, masks=masks)
    assert res["stalled"] is True
    assert res["history"][-1]["train_loss"] > 0.9 * res["history"][-1]["prior_loss"]


def test_prior_loss_and_stalled():
    assert prior_loss(torch.tensor([5.0, 5.0, 5.0, 5.0])) == pytest.approx(torch.log(torch.tensor(4.0)).item())
    assert prior_loss(torch.tensor([3.0, 0.0, 1.0])) == pytest.approx(-(0.75 * torch.log(torch.tensor(0.75))
                                                                         + 0.25 * torch.log(torch.tensor(0.25))).item())
    assert stalled({"train_loss": 2.2, "prior_loss": 2.3}) and not stalled({"train_loss": 1.0, "prior_loss": 2.3})
    assert not stalled({"train_loss": 2.2})  # a checkpoint from before prior_loss was recorded
    assert not stalled({"train_loss": 0.0, "prior_loss": 0.0})  # one class


def test_dense_and_given_masks():
    cfg = TrainConfig(model="mlp_digits", epochs=1, device="cpu", progress=False)
    dense = run(cfg, method="dense")
    assert dense["sparsity"] == 0.0 and dense["params_kept"] == dense["params"]
    model = yopo.models.build("mlp_digits", 10, seed=0)
    m = yopo.calibrate(yopo.score(model, "magnitude"), 0.6)
    res = run(cfg, masks=m)
    assert abs(res["sparsity"] - 0.6) < 1e-3 and res["method"] == "mask"


def _family(model_name, path, mask_path=None):
    """What `yopo prune` writes (built through the API: prune.py binds sys.stdout at import)."""
    model = yopo.models.build(model_name, 10, seed=0)
    layers = yopo.prunable_layers(model)
    fam = yopo.Family.from_scores(yopo.score(model, "magnitude"), layers, method="magnitude", settings={},
                                  seed=0, model_name=model_name)
    fam.save(path)
    if mask_path:
        yopo.save_mask(mask_path, fam.masks(0.9), {"model": model_name})


def _err(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_inputs_one_line_errors(tmp_path, capsys):
    assert "does not exist" in _err(capsys, ["train", "--dataset", "cifar10", "--data-root", str(tmp_path / "nope")])
    assert "needs a data root" in _err(capsys, ["train", "--dataset", "cifar10"])
    assert "model='nonet'" in _err(capsys, ["train", "--model", "nonet"])
    assert "method=" in _err(capsys, ["train", "--method", "nomethod", "--epochs", "1", "--no-progress"])
    with pytest.raises(SystemExit):  # argparse rejects an unknown dataset
        main(["train", "--dataset", "nodata"])
    capsys.readouterr()
    with pytest.raises(ValueError, match="dataset='nodata' is not allowed"):
        run(TrainConfig(dataset="nodata"))
    # a family / mask for resnet20 does not fit the digits CNN
    _family("resnet20", tmp_path / "f.safetensors", tmp_path / "m.safetensors")
    for f in ("f.safetensors", "m.safetensors"):
        err = _err(capsys, ["train", "--mask", str(tmp_path / f), "--epochs", "1", "--no-progress"])
        assert "resnet20" in err and "does not fit" in err


def test_cli_train_with_family_mask(tmp_path, capsys):
    fam = tmp_path / "fam.safetensors"
    _family("mlp_digits", fam)
    assert main(["train", "--model", "mlp_digits", "--mask", str(fam), "--sparsity", "0.7", "--epochs", "1",
                 "--no-progress", "--out", str(tmp_path / "run")]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[0])
    assert abs(out["sparsity"] - 0.7) < 1e-3


def test_resume_with_other_settings_is_refused(tmp_path):
    from yopo.experiment.train import TrainConfig, run

    cfg = TrainConfig(model="mlp_digits", dataset="digits", epochs=1, progress=False, device="cpu")
    run(cfg, method="magnitude", sparsity=0.5, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"holds a run with method='magnitude', sparsity=0.5"):
        run(cfg, method="magnitude", sparsity=0.9, out_dir=tmp_path, resume=True, progress=False)


def test_resume_of_a_run_written_before_a_calibration_field_existed(tmp_path):
    """A run folder whose config.json lacks a calibration field added later (class_keep) resumes:
    the missing field reads as its default, which reproduces the old behaviour."""
    from yopo.experiment.train import TrainConfig, run

    cfg = TrainConfig(model="mlp_digits", dataset="digits", epochs=2, progress=False, device="cpu")
    run(dataclasses.replace(cfg, epochs=1), method="magnitude", sparsity=0.5, out_dir=tmp_path, progress=False)
    conf = json.loads((tmp_path / "config.json").read_text())
    del conf["calibration"]["class_keep"]
    (tmp_path / "config.json").write_text(json.dumps(conf))
    res = run(cfg, method="magnitude", sparsity=0.5, out_dir=tmp_path, resume=True, progress=False)
    assert res["epoch"] == 2


def test_reported_sparsity_is_over_the_calibrated_layers(tmp_path):
    from yopo.experiment.train import TrainConfig, run

    from yopo.core.calibration import CalibrationSettings

    cfg = TrainConfig(model="mlp_digits", dataset="digits", epochs=1, progress=False, device="cpu")
    res = run(cfg, method="magnitude", sparsity=0.8, calibration=CalibrationSettings(exclude=(":first",)),
              progress=False)
    assert abs(res["sparsity"] - 0.8) < 1e-3  # the dense excluded layer is not counted


def test_evaluate_builds_no_autograd_graph():
    """A regression: evaluate() without no_grad kept the graph of every test batch alive (a CIFAR-10
    ResNet-20 sweep worker grew past 17 GB and was OOM-killed)."""
    from torch import nn

    from yopo.experiment.train import evaluate

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    grad_on = []
    model.register_forward_hook(lambda m, i, o: grad_on.append(torch.is_grad_enabled()))
    batches = [(torch.randn(5, 4), torch.randint(0, 3, (5,))) for _ in range(3)]
    loss, acc = evaluate(model, batches)
    assert grad_on == [False, False, False]
    assert isinstance(loss, float) and 0.0 <= acc <= 100.0
