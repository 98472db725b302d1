"""The sweep on the real training harness (sklearn digits, 1 epoch): the masks come from the cached
family, land on the initialization they were computed from, and equal what
`yopo.experiment.train.run` computes itself; cross-seed runs put seed s's mask on seed s''s
initialization."""
import torch

from yopo.core.family import Family, load_mask
from yopo.experiment.sanity import REINIT_OFFSET
from yopo.experiment.sweep import ResultsDB, SweepSpec, expand, family_path, run_sweep
from yopo.experiment.train import TrainConfig, run

TRAIN = {"epochs": 1, "device": "cpu", "progress": False, "threads": 1}


def test_sweep_trains_with_family_masks(tmp_path):
    spec = SweepSpec.from_dict({"name": "d", "out": str(tmp_path), "models": ["cnn_digits"], "datasets": ["digits"],
                                "methods": ["magnitude", "snip"], "sparsities": [0.9], "seeds": [0, 1],
                                "cross_seed": "next", "cross_methods": ["magnitude"], "runner": "train",
                                "train": TRAIN})
    s = run_sweep(spec, log=lambda m: None)
    assert (s.total, s.done, s.failed) == (6, 6, 0)
    with ResultsDB(tmp_path / "results.sqlite") as db:
        runs = {(r["label"], r["seed"], r["mask_seed"]): r for r in db.runs()}
    for r in runs.values():
        assert 0 <= r["test_acc"] <= 100 and abs(r["achieved_sparsity"] - 0.9) < 1e-3
        assert r["result"]["seed"] == r["seed"]  # trained from the init of `seed`
        assert r["result"]["params_kept"] < r["result"]["params"]
    # the harness scoring SNIP itself (same init, same scoring batch) gives the sweep's mask
    snip = runs[("snip", 0, 0)]
    cfg = {k: v for k, v in TRAIN.items() if k != "threads"}
    ref = run(TrainConfig(model="cnn_digits", dataset="digits", **cfg), method="snip", sparsity=0.9,
              out_dir=tmp_path / "ref", progress=False)
    a, _ = load_mask(tmp_path / "ref" / "mask.safetensors")
    b, _ = load_mask(tmp_path / "runs" / snip["id"] / "mask.safetensors")
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert ref["test_acc"] == snip["test_acc"]  # same init, mask, data order -> same result (both percent)
    # cross-seed: the mask of seed 0 trained from the init of seed 1
    x = runs[("magnitude", 1, 0)]
    fam0 = Family.load(family_path(tmp_path, x["family"]))
    assert fam0.meta["seed"] == 0
    m, _ = load_mask(tmp_path / "runs" / x["id"] / "mask.safetensors")
    ref0 = fam0.calibrate(0.9).masks
    assert all(torch.equal(m[n], ref0[n]) for n in ref0)
    assert x["result"]["seed"] == 1


def test_reinit_variant_uses_another_init(tmp_path):
    calls = []

    def runner(settings, masks):
        calls.append((settings["variant"], settings["seed"], settings["init_seed"]))
        return {"test_acc": 50.0}

    spec = SweepSpec.from_dict({"name": "r", "out": str(tmp_path), "models": ["cnn_digits"], "datasets": ["digits"],
                                "methods": ["magnitude"], "sparsities": [0.9], "seeds": [3],
                                "variants": ["none", "reinit"], "runner": "train", "train": TRAIN})
    assert len(expand(spec)) == 2
    run_sweep(spec, runner=runner, log=lambda m: None)
    assert sorted(calls) == [("none", 3, 3), ("reinit", 3, 3 + REINIT_OFFSET)]
