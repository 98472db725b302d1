"""One declaration per concept (issue 14, item 2): one settings object per concept used by every
entry point, rules validated from the declaration, one config system for CLI flags and config
files, one spelling per option in every command, presets applied before explicit flags, accuracy
in percent everywhere."""
from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch

from yopo.cli import build_parser, main
from yopo.core.calibration import CalibrationSettings
from yopo.core.config import add_dataclass_args, from_args, from_mapping, opt, parse_options, validate_fields
from yopo.core.presets import PRESETS, get_preset
from yopo.experiment.train import TrainConfig
from yopo.methods.yopo import YopoConfig


def _flags(command: str) -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {s: a for a in sub.choices[command]._actions for s in a.option_strings}


CAL_FLAGS = ["--allocation", "--mode", "--ranking", "--robust", "--min-keep", "--col-keep", "--class-keep", "--min-layer-density",
             "--calibration-solver", "--exclude", "--kept-scale"]
YOPO_FLAGS = ["--rank", "--iters", "--nmf-init", "--loss", "--normalize", "--per-channel", "--nmf-solver",
              "--storage-dtype", "--nmf-threads"]


def test_one_flag_spelling_in_every_command():
    prune, train, inspect = _flags("prune"), _flags("train"), _flags("inspect")
    for flags in (prune, train):
        for f in CAL_FLAGS + YOPO_FLAGS + ["--weight-init", "--preset", "--sparsity", "--method"]:
            assert f in flags, f
        assert not [f for f in flags if f.startswith("--yopo-")]
        assert "--init" not in flags and "--solver" not in flags and "--threads" not in flags
    for f in CAL_FLAGS:  # inspect: the calibration flags only (it scores nothing)
        assert f in inspect
        assert prune[f].dest == train[f].dest == inspect[f].dest  # the same field behind the same flag
    assert not set(YOPO_FLAGS) & set(inspect)
    assert prune["--mode"] is prune["--allocation"]  # an alias, the same option
    # the flag is the field name: the Python API and sweep files use the same words
    cal = {f.name for f in dataclasses.fields(CalibrationSettings)}
    assert {prune[f].dest for f in CAL_FLAGS} == cal
    assert {prune[f].dest for f in YOPO_FLAGS} <= {f.name for f in dataclasses.fields(YopoConfig)}
    assert prune["--weight-init"].dest == train["--weight-init"].dest == "weight_init"


def test_cli_settings_dataclasses_validate_themselves(capsys):
    for argv, match in [(["prune", "--num-classes", "0"], "--num-classes=0 is out of range"),
                        (["prune", "--sparsity", "90"], "--sparsity=90.0 is out of range"),
                        (["train", "--epochs", "0"], "--epochs=0 is out of range"),
                        (["train", "--lr", "0"], "--lr=0.0 is out of range"),
                        (["train", "--min-layer-density", "2"], "--min-layer-density=2.0 is out of range"),
                        (["prune", "--min-keep", "-1"], "--min-keep=-1 is out of range"),
                        (["sweep", "x.toml", "--workers", "0"], "--workers=0 is out of range"),
                        (["report", "db", "--out", "o", "--ranks", "0"], "ranks entry=0 is out of range"),
                        (["prune", "--method", "snip", "--rank", "3"], "--rank: YOPO option(s), method 'snip'"),
                        (["train", "--method", "dense", "--nmf-solver", "hals"], "--nmf-solver: YOPO option(s)"),
                        (["inspect", "f.safetensors", "--min-keep", "0"], "No such file")]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert match in err and len(err.splitlines()) == 1, (argv, err)
    with pytest.raises(ValueError, match="epochs=0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="weight_init='he'"):
        TrainConfig(weight_init="he")


def test_from_mapping_is_the_cli_rule_for_files():
    s = from_mapping(CalibrationSettings, {"min_keep": "0", "exclude": ["fc", ":first"], "allocation": "erk"})
    assert s == CalibrationSettings(min_keep=0, exclude=("fc", ":first"), allocation="erk")
    assert from_mapping(YopoConfig, {"per_channel": "yes", "eps": 1}).per_channel is True
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['min_kep'\]; allowed: \['allocation'"):
        from_mapping(CalibrationSettings, {"min_kep": 0})
    with pytest.raises(ValueError, match=r"\['solver'\] \(renamed: solver -> nmf_solver\)"):
        from_mapping(YopoConfig, {"solver": "hals"}, renamed=YopoConfig.RENAMED)
    with pytest.raises(ValueError, match="per_channel='maybe' is not a boolean"):
        from_mapping(YopoConfig, {"per_channel": "maybe"})
    with pytest.raises(ValueError, match="ranking='best' is not allowed"):
        from_mapping(CalibrationSettings, {"ranking": "best"})
    # KEY=VALUE options use the same conversion
    assert parse_options(YopoConfig, ["rank=3", "per_channel=off"]) == {"rank": 3, "per_channel": False}


def test_declared_rules_are_the_only_rules():
    @dataclasses.dataclass(frozen=True)
    class C:
        n: int = opt(1, "n", low=1)
        x: float = opt(0.5, "x", low=0.0, low_open=True, high=1.0)
        t: tuple[int, ...] = opt((1,), "t", low=0, min_items=1)
        c: str = opt("a", "c", ("a", "b"))

        def __post_init__(self):
            validate_fields(self)

    for kw, match in [({"n": 0}, "n=0"), ({"x": 0.0}, "x=0.0"), ({"x": 1.5}, "x=1.5"), ({"t": ()}, "at least 1"),
                      ({"t": (1, -1)}, "t entry=-1"), ({"c": "z"}, "c='z'"), ({"n": "1"}, "n='1' must be an int")]:
        with pytest.raises((ValueError, TypeError), match=match):
            C(**kw)
    p = argparse.ArgumentParser()
    add_dataclass_args(p, C)
    assert from_args(C, p.parse_args(["--t", "1", "2", "--t", "3"])).t == (1, 2, 3)  # repeatable, additive
    assert from_args(C, p.parse_args([])).t == (1,)


def test_presets_apply_before_explicit_flags(tmp_path, capsys):
    from yopo.core.family import Family

    for name, preset in PRESETS.items():  # every preset names real fields with valid values
        CalibrationSettings(**preset.calibration)
        YopoConfig(**preset.yopo)
    paper = get_preset("paper")
    assert {k: paper.yopo[k] for k in ("rank", "iters", "nmf_solver", "nmf_init")} == \
        {"rank": 7, "iters": 200, "nmf_solver": "mu", "nmf_init": "uniform"}
    assert {k: paper.calibration[k] for k in ("allocation", "ranking", "robust", "min_keep")} == \
        {"allocation": "global", "ranking": "score", "robust": "mad", "min_keep": 1}
    out = tmp_path / "f.safetensors"
    assert main(["prune", "--model", "mlp_digits", "--preset", "paper", "--rank", "3", "--min-keep", "0",
                 "--iters", "5", "--out", str(out)]) == 0
    fam = Family.load(out)
    assert fam.meta["settings"]["rank"] == 3 and fam.meta["settings"]["nmf_solver"] == "mu"  # flag wins
    assert fam.calibration_settings.min_keep == 0 and fam.calibration_settings.allocation == "global"
    assert fam.meta["preset"] == "paper"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["prune", "--preset", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    from yopo.experiment.sweep import MethodSpec
    m = MethodSpec.parse({"label": "p", "method": "yopo", "preset": "paper", "opts": {"iters": 20}},
                         {"allocation": "uniform"})
    assert m.options["iters"] == 20 and m.options["rank"] == 7  # the entry's opts win over the preset
    assert m.calibration.allocation == "uniform"  # the [calibration] table wins over the preset
    # a preset is hashed by its values: the paper preset is the defaults (today), so the same run id
    assert MethodSpec.parse({"label": "p", "method": "yopo", "preset": "paper"}).identity() == \
        MethodSpec.parse({"label": "p", "method": "yopo"}).identity()


def test_accuracy_is_percent_everywhere(tmp_path, capsys):
    from yopo.experiment.train.loop import evaluate

    class Fixed(torch.nn.Module):  # predicts class 0 always: accuracy = share of label 0
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), 3).float() + self.w

    y = torch.tensor([0, 0, 0, 1])
    assert evaluate(Fixed(), [(torch.zeros(4, 2), y)])[1] == 75.0
    out = tmp_path / "run"
    assert main(["train", "--model", "mlp_digits", "--epochs", "1", "--no-progress", "--no-checkpoint", "--iters", "5",
                 "--sparsity", "0.5", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    stored = json.loads((out / "result.json").read_text())
    assert printed["test_acc"] == stored["test_acc"] == stored["history"][-1]["test_acc"]
    assert 20.0 < stored["test_acc"] <= 100.0 and 1.0 < stored["train_acc"] <= 100.0  # percent, not a fraction
    hist = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert hist[-1]["test_acc"] == stored["test_acc"]


def test_prune_and_inspect_print_the_layer_diagnostics(tmp_path, capsys):
    out = tmp_path / "f.safetensors"
    assert main(["prune", "--model", "cnn_digits", "--iters", "5", "--sparsity", "0.95", "--min-keep", "0",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    head = text.splitlines()[0]
    for col in ("density", "empty rows", "empty cols", "effective"):
        assert col in head
    assert "effective sparsity" in text
    assert main(["inspect", str(out), "--sparsity", "0.99", "--exclude", "classifier*"]) == 0
    text = capsys.readouterr().out
    assert "empty rows" in text and "classifier.weight" in text and "(excluded: dense)" in text
    assert '"min_keep": 0' in text  # the stored settings are shown, and are the base of the mask


def test_old_family_files_read_with_the_new_names(tmp_path):
    """A family written before the YOPO option renames still loads, with the new option names."""
    import torch as _t
    from safetensors.torch import save_file

    from yopo.core.family import Family, fingerprint
    from yopo.core.layers import prunable_layers
    from yopo.models import build

    model = build("mlp_digits", 10, seed=0)
    layers = prunable_layers(model)
    meta = {"method": "yopo", "settings": {"rank": 7, "iters": 200, "init": "uniform", "solver": "mu", "threads": 0},
            "seed": 0, "model": "mlp_digits", "fingerprint": fingerprint(layers)}
    scores = {l.name: _t.rand(l.shape) for l in layers}
    save_file(scores, str(tmp_path / "old.safetensors"), metadata={"yopo_format": "family/1", "meta": json.dumps(meta)})
    fam = Family.load(tmp_path / "old.safetensors")
    assert {"nmf_init", "nmf_solver", "nmf_threads"} <= set(fam.meta["settings"])
    assert fam.calibration_settings == CalibrationSettings()  # no stored settings: the defaults
    assert fam.calibrate(0.9).sparsity == pytest.approx(0.9, abs=1e-3)


def test_example_sweep_configs_are_valid():
    from pathlib import Path

    from yopo.experiment.sweep import SweepSpec, expand, load_config

    root = Path(__file__).resolve().parents[1] / "examples"
    for path in sorted(root.glob("*.toml")):
        spec = SweepSpec.from_dict(load_config(path))
        assert expand(spec), path.name
    spec = SweepSpec.from_dict(load_config(root / "sweep_settings.toml"))
    by = {m.label: m for m in spec.methods}
    assert by["yopo-paper"].calibration == CalibrationSettings(min_keep=0, exclude=("classifier*",))
    assert by["yopo-from-synflow"].calibration.budget_method == "synflow"
    assert by["yopo-hals-rows"].calibration.min_keep == 1 and by["yopo-hals-rows"].options["nmf_solver"] == "hals"
    run = next(r for r in expand(spec) if r.label == "yopo-from-synflow")
    assert run.family["budget"]["method"] == "synflow" and run.family["budget"]["sparsity"] == run.identity["sparsity"]


def test_run_ids_of_the_shipped_sweep_database_are_stable():
    """Settings are hashed as their difference from the defaults of the time ids were introduced,
    renamed options under their old names: the spec stored in the shipped benchmark database
    (written before CalibrationSettings and the nmf_* renames) expands to the ids it holds."""
    import sqlite3
    from pathlib import Path

    from yopo.experiment.sweep import SweepSpec, expand

    db = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "pai_cifar10" / "results.sqlite"
    if not db.exists():
        pytest.skip("no shipped sweep database")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        spec = json.loads(c.execute("SELECT value FROM meta WHERE key = 'spec'").fetchone()[0])
        ids = {r[0] for r in c.execute("SELECT id FROM runs WHERE status = 'done'")}
    for m in spec["methods"]:  # the one edit an old config needs (the error names it)
        if isinstance(m, dict) and "solver" in m.get("opts", {}):
            m["opts"]["nmf_solver"] = m["opts"].pop("solver")
    runs = expand(SweepSpec.from_dict(spec))
    assert any(r.identity["opts"].get("solver") for r in runs)  # the renamed option is in the spec
    assert {r.id for r in runs} <= ids
