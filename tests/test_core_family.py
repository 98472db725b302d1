"""The once-only family artifact, bit-packed masks and the CLI."""
import os

import pytest
import torch

import yopo
from yopo.cli import main
from yopo.core.family import Family, load_mask, save_mask
from yopo.models import build, get_model


def family(model, seed=0):
    scores = yopo.score(model, "yopo", seed=seed, iters=20)
    return Family.from_scores(scores, yopo.prunable_layers(model), method="yopo", settings={"iters": 20},
                              seed=seed, model_name="tiny")


def test_family_roundtrip_rethresholds_without_rescoring(tiny, tmp_path):
    fam = family(tiny)
    path = tmp_path / "fam.safetensors"
    fam.save(path)
    assert os.listdir(tmp_path) == ["fam.safetensors"]  # no temp file left behind
    back = Family.load(path)
    assert back.meta == fam.meta
    for s in (0.5, 0.9, 0.97):
        for mode in ("global", "layerwise", "local"):
            a, b = fam.masks(s, mode=mode), back.masks(s, mode=mode)
            assert all(torch.equal(a[k], b[k]) for k in a)
    back.check(tiny)


def test_family_mismatch_names_the_first_bad_layer(tiny, tmp_path):
    fam = family(tiny)
    other = get_model("resnet20", width=4)
    with pytest.raises(ValueError, match="artifact layer 'conv2.weight'|'conv1.weight': artifact shape"):
        fam.check(other)
    tiny.fc1 = torch.nn.Linear(12, 17)
    with pytest.raises(ValueError, match=r"layer 'fc1.weight': artifact shape \(16, 12\) but model shape \(17, 12\)"):
        fam.check(tiny)


def test_bitpacked_mask_roundtrip(tiny, tmp_path):
    masks = family(tiny).masks(0.9)
    save_mask(tmp_path / "m.safetensors", masks, {"sparsity": 0.9})
    back, meta = load_mask(tmp_path / "m.safetensors")
    assert meta["sparsity"] == 0.9
    assert all(torch.equal(back[k], masks[k]) for k in masks)
    size = os.path.getsize(tmp_path / "m.safetensors")
    assert size < sum(m.numel() for m in masks.values()) // 8 + 2000
    with pytest.raises(ValueError, match="yopo_format"):
        Family.load(tmp_path / "m.safetensors")


def test_cli_prune_and_inspect(tmp_path, capsys):
    out = tmp_path / "r20.safetensors"
    assert main(["prune", "--model", "resnet20", "--sparsity", "0.9", "--iters", "10", "--out", str(out),
                 "--mask-out", str(tmp_path / "mask.safetensors")]) == 0
    text = capsys.readouterr().out
    assert "layer1.0.conv1.weight" in text and "0.900000" in text and "16x16x3x3" in text
    assert main(["inspect", str(out), "--sparsity", "0.95", "--mode", "local"]) == 0
    text = capsys.readouterr().out
    assert '"model": "resnet20"' in text and "0.950000" in text
    fam = Family.load(out)
    fam.check(get_model("resnet20"))
    # the CLI's artifact equals the library computed the same way (same seeded init as `yopo train`):
    # the default preset (recommended) is the paper's NMF followed by the path flow to --sparsity
    from yopo.core.presets import preset_values
    opts = {**preset_values("recommended", "yopo"), "iters": 10, "paths_target": 0.9, "input_shape": (3, 32, 32)}
    lib = yopo.score(build("resnet20", 10, init="kaiming_normal", seed=0), "yopo", **opts)
    assert all(torch.equal(lib[k], fam.scores[k]) for k in lib)
    # and --preset paper is the published method: the bare library defaults
    assert main(["prune", "--model", "resnet20", "--preset", "paper", "--sparsity", "0.9", "--iters", "10",
                 "--out", str(out)]) == 0
    lib = yopo.score(build("resnet20", 10, init="kaiming_normal", seed=0), "yopo", iters=10)
    assert all(torch.equal(lib[k], Family.load(out).scores[k]) for k in lib)


@pytest.mark.parametrize("argv,match", [
    (["prune", "--sparsity", "1.2"], "sparsity=1.2 is out of range; allowed: 0 <= sparsity < 1"),
    (["prune", "--model", "alexnet9"], "model='alexnet9' is not allowed; choose one of"),
    (["prune", "--rank", "0"], "rank=0 is out of range"),
    (["prune", "--method", "nope"], "method='nope' is not allowed"),
    (["inspect", "/nonexistent/file.safetensors"], "No such file"),
    (["prune", "--method", "snip"], "method 'snip' needs data: pass --dataset"),
    (["prune", "--method", "synflow", "--method-opt", "double=maybe"], "double='maybe' is not a boolean"),
    (["prune", "--method", "synflow", "--method-opt", "iters"], "must be KEY=VALUE"),
])
def test_cli_bad_input_is_one_line(argv, match, capsys, tmp_path):
    argv = argv + (["--out", str(tmp_path / "x.safetensors")] if argv[0] == "prune" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.safetensors").exists()


def test_cli_help_documents_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for cmd in ("prune", "inspect", "methods", "models"):
        assert cmd in text
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    text = capsys.readouterr().out
    for flag in ("--sparsity", "--mode", "--robust", "--rank", "--iters", "--seed", "--out", "--per-channel",
                 "--no-per-channel"):
        assert flag in text


@pytest.mark.parametrize("cmd", ["prune", "inspect", "train", "sweep", "report", "hf", "methods", "models"])
def test_cli_every_command_help_renders(cmd, capsys):
    # argparse %-formats help texts: a literal "%" in a declaration's help once broke `prune --help`
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0 and "usage:" in capsys.readouterr().out


def test_cli_prune_baseline_with_options_and_data(tmp_path, capsys):
    out = tmp_path / "snip.safetensors"
    assert main(["prune", "--model", "cnn_digits", "--method", "snip", "--dataset", "digits", "--sparsity", "0.8",
                 "--method-opt", "batch_size=64", "--out", str(out)]) == 0
    fam = Family.load(out)
    assert fam.meta["method"] == "snip" and fam.meta["settings"]["batch_size"] == 64
    assert fam.meta["num_classes"] == 10
    assert main(["prune", "--model", "resnet20", "--method", "synflow", "--method-opt", "iters=3",
                 "double=false", "--sparsity", "0.5", "--out", str(out)]) == 0
    settings = Family.load(out).meta["settings"]
    assert settings["double"] is False and settings["iters"] == 3
    assert settings["target_sparsity"] == 0.5  # iterative methods prune to --sparsity natively


def test_cli_rejects_files_of_the_wrong_kind(tmp_path, capsys):
    junk = tmp_path / "junk.txt"
    junk.write_text("not a safetensors file, not a database")
    assert main(["inspect", str(junk)]) == 2
    assert "is not a safetensors file" in capsys.readouterr().err
    assert main(["report", str(junk), "--out", str(tmp_path / "r")]) == 2
    assert "is not a yopo sweep database" in capsys.readouterr().err
    assert main(["hf", "--hf-config", "tiny-gpt2", "--out", str(tmp_path / "hf"), "--sparsity", "1.2"]) == 2
    assert not (tmp_path / "hf").exists()  # refused before any scoring
    assert main(["train", "--method-opt", "foo=1", "--epochs", "1"]) == 2
    assert "--method-opt is for non-YOPO" in capsys.readouterr().err


def test_optional_bool_flags_parse_as_bools():
    from yopo.cli import build_parser
    from yopo.core.config import from_args
    from yopo.experiment.train.config import TrainConfig

    parse = build_parser().parse_args
    assert from_args(TrainConfig, parse(["train", "--no-amp"])).amp is False
    assert from_args(TrainConfig, parse(["train", "--amp"])).amp is True
    assert from_args(TrainConfig, parse(["train"])).amp is None


def test_artifacts_get_the_usual_file_mode(tiny, tmp_path):
    old = os.umask(0o022)
    try:
        family(tiny).save(tmp_path / "f.safetensors")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "f.safetensors").st_mode & 0o777 == 0o644


def test_synflow_scores_with_the_datasets_input_shape(tmp_path):
    from yopo.experiment.train import TrainConfig, run

    res = run(TrainConfig(model="cnn_digits", dataset="digits", epochs=1, progress=False, device="cpu"),
              method="synflow", sparsity=0.9, progress=False, iters=3)
    assert abs(res["sparsity"] - 0.9) < 1e-3
