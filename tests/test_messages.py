"""Output people read (issue 14, item 4; issue 11, item 6): errors that suggest the fix, scalar
sparsities of any library, log lines and bars that follow -v/-q and the terminal, and no library
warning on a normal training run."""
import logging
import warnings

import numpy as np
import pytest
import torch

import yopo
from yopo.core import progress
from yopo.core.validate import check_choice, check_sparsity, suggest


def _err(capsys, argv) -> str:
    from yopo.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_errors_suggest_the_fix(capsys):
    assert "did you mean 0.9?" in _err(capsys, ["prune", "--sparsity", "90"])
    assert "did you mean 0.98?" in _err(capsys, ["train", "--sparsity", "98", "--epochs", "1"])
    assert "did you mean 'resnet20'?" in _err(capsys, ["prune", "--model", "resnet2"])
    assert "did you mean 0.05?" in _err(capsys, ["prune", "--sparsity", "5"])
    for ambiguous in ("1.0", "1.2", "250"):  # no guess where the intent is unclear
        assert "did you mean" not in _err(capsys, ["prune", "--sparsity", ambiguous])
    with pytest.raises(ValueError, match=r"method='yopp' is not allowed; choose one of \[.*\]; did you mean 'yopo'\?$"):
        yopo.score(torch.nn.Linear(4, 4), "yopp")
    assert suggest("ResNet20", ["resnet20", "resnet32"]) == "; did you mean 'resnet20'?"
    assert suggest("vgg1", ["vgg11", "vgg13"]) == "; did you mean 'vgg11'?"
    assert suggest("zzzz", ["resnet20"]) == ""
    with pytest.raises(ValueError, match="did you mean 'global'"):
        check_choice("mode", "globl", ["global", "local"])


@pytest.mark.parametrize("value", [np.float32(0.9), np.float64(0.9), torch.tensor(0.9),
                                   torch.tensor(0.9, dtype=torch.float64), np.array(0.9)])
def test_scalar_sparsities_of_numpy_and_torch(value):
    assert check_sparsity(value) == 0.9  # float32 0.9 means 0.9, not 0.89999997615814
    torch.manual_seed(0)
    scores = {"a": torch.rand(30, 20), "b": torch.rand(7, 9)}
    ref = yopo.calibrate(scores, 0.9)
    got = yopo.calibrate(scores, value)
    assert all(torch.equal(ref[n], got[n]) for n in ref)


@pytest.mark.parametrize("value", [torch.tensor([0.9]), np.array([0.9, 0.5]), np.bool_(True), torch.tensor(True),
                                   "0.9"])
def test_non_scalar_sparsities_are_refused(value):
    with pytest.raises(TypeError, match="must be a float in"):
        check_sparsity(value)


def test_verbosity_and_quiet_lines(capsys):
    from yopo.cli import main

    base = ["train", "--model", "mlp_digits", "--epochs", "2", "--sparsity", "0.5"]
    try:
        assert main(base) == 0
        out, err = capsys.readouterr()
        assert '"test_acc"' in out and "epoch 2/2" not in out  # stdout: the result only
        assert "epoch 2/2" in err and "\r" not in err  # stderr: the epoch lines, no bar (not a terminal)
        assert main(["-q", *base]) == 0
        out, err = capsys.readouterr()
        assert '"test_acc"' in out and err == ""
        assert progress.level_for(-1) == logging.WARNING and progress.level_for(2) == logging.DEBUG
    finally:
        logging.getLogger("yopo").handlers.clear()  # leave logging as the other tests expect it
        logging.getLogger("yopo").setLevel(logging.NOTSET)
        logging.getLogger("yopo").propagate = True


def test_no_warning_on_a_normal_training_run(monkeypatch, capsys):
    """`python -W error -m yopo train` passes; the bar path is forced on (it used float() on a
    tensor that requires grad, which warned on every run)."""
    from yopo.experiment.train import loop
    from yopo.experiment.train import TrainConfig, run

    monkeypatch.setattr(loop, "bars_enabled", lambda: True)
    cfg = TrainConfig(model="mlp_digits", dataset="digits", epochs=1, device="cpu", progress=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = run(cfg, method="yopo", sparsity=0.5, iters=10, rank=2)
    assert 0 <= res["test_acc"] <= 100  # percent
    assert "epoch 1/1" in capsys.readouterr().err  # the bar was drawn (to stderr)


def test_bars_and_prefixes(monkeypatch, capsys):
    log = progress.get_logger("x")
    monkeypatch.delenv("YOPO_PROGRESS", raising=False)
    try:
        progress.configure(0)
        assert not progress.bars_enabled()  # pytest's stderr is not a terminal
        assert list(progress.track(range(3), "t")) == [0, 1, 2]
        with progress.prefixed("[run 1/2] "):
            log.info("epoch %d", 3)
        log.debug("hidden")
        assert capsys.readouterr().err == "[run 1/2] epoch 3\n"
        progress.configure(1)
        log.debug("shown")
        assert capsys.readouterr().err == "shown\n"
        monkeypatch.setenv("YOPO_PROGRESS", "0")
        assert not progress.bars_enabled()
    finally:
        logging.getLogger("yopo").handlers.clear()
        logging.getLogger("yopo").setLevel(logging.NOTSET)
        logging.getLogger("yopo").propagate = True


def test_command_line_choices_suggest_too(capsys):
    from yopo.cli import main

    for argv, hint in ((["prune", "--mode", "glob"], "did you mean 'global'?"), (["swep"], "did you mean 'sweep'?"),
                       (["sweep", "x.toml", "--executor", "rey"], "did you mean 'ray'?")):
        try:  # argparse's own choices exit; choices declared on a settings dataclass return 2
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
        assert rc == 2
        assert hint in capsys.readouterr().err.strip().splitlines()[-1]
