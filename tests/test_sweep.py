"""Sweep runner: config, run identity, once-only families, SQLite results, resume after interruption."""
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from yopo.core.family import Family
from yopo.experiment.sweep import (MethodSpec, ResultsDB, SweepSpec, expand, family_path, load_config, run_sweep,
                        synthetic_runner, transfer_masks)

ROOT = Path(__file__).resolve().parents[1]


def Y(label, **opts):
    """A YOPO method entry with a cheap NMF (tests only)."""
    return {"label": label, "method": "yopo", "opts": {"iters": 10, "rank": 2, **opts}}


def spec_dict(out, **kw):
    d = {"name": "t", "out": str(out), "models": ["mlp_digits"], "datasets": ["digits"],
         "methods": [Y("yopo-G"), Y("yopo-L"), "magnitude"], "sparsities": [0.5, 0.9], "seeds": [0, 1],
         "runner": "synthetic", "train": {"epochs": 1, "device": "cpu"}}
    d.update(kw)
    return d


class FakeRunner:
    """Records its calls; raises ``exc`` on call number ``fail_at`` (1-based)."""

    def __init__(self, fail_at=None, exc=KeyboardInterrupt):
        self.calls, self.fail_at, self.exc = [], fail_at, exc

    def __call__(self, settings, masks):
        self.calls.append((settings, masks))
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise self.exc("interrupted by the fake runner")
        return synthetic_runner(settings, masks)


def quiet(msg):
    pass


def test_method_shorthands():
    from yopo.core.calibration import CalibrationSettings
    from yopo.methods.yopo import YopoConfig

    g = MethodSpec.parse("yopo-G")
    assert (g.label, g.method, g.calibration) == ("yopo-G", "yopo", CalibrationSettings(allocation="global"))
    from yopo.core.config import to_mapping
    assert g.options == to_mapping(YopoConfig())  # YOPO's options are resolved in full (JSON-ready)
    assert MethodSpec.parse("yopo-L").mode == "local" and MethodSpec.parse("yopo-L").calibration.allocation == "uniform"
    assert MethodSpec.parse("random").mode == "local"
    assert MethodSpec.parse("yopo-LW-std").robust == "std"
    with pytest.raises(ValueError, match="robust='std' cannot change the mask under allocation='global'"):
        MethodSpec.parse("yopo-G-std")  # pooled MORT keeps the top of S whatever the statistics
    m = MethodSpec.parse({"label": "yopo-r4", "method": "yopo", "opts": {"rank": 4}})
    assert m.options["rank"] == 4 and m.mode == "global"
    assert m.identity()["opts"] == {"rank": 4}  # hashed as its difference from the base: old ids stay
    assert MethodSpec.parse({"method": "snip", "opts": {"batch_size": 64}}).options == {"batch_size": 64}
    with pytest.raises(ValueError, match="unknown keys"):
        MethodSpec.parse({"method": "yopo", "rnak": 4})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['solver'\] \(renamed: solver -> nmf_solver\)"):
        MethodSpec.parse({"method": "yopo", "opts": {"solver": "hals"}})
    with pytest.raises(ValueError, match="rank=0 is out of range"):
        MethodSpec.parse({"method": "yopo", "opts": {"rank": 0}})


def test_config_json_toml_and_errors(tmp_path):
    (tmp_path / "a.toml").write_text('name = "x"\nmodels = ["m"]\ndatasets = ["digits"]\nmethods = ["yopo-G"]\n'
                                     'sparsities = [0.9]\nseeds = [0]\n[train]\nepochs = 2\n')
    (tmp_path / "a.json").write_text(json.dumps(load_config(tmp_path / "a.toml")))
    assert load_config(tmp_path / "a.json") == load_config(tmp_path / "a.toml")
    spec = SweepSpec.from_dict(load_config(tmp_path / "a.toml"))
    assert spec.train == {"epochs": 2} and spec.out == "runs/x"
    for bad, match in [({"seeds": []}, "seeds"), ({"sparsities": [1.0]}, "sparsities"), ({"variants": ["x"]}, "variants"),
                       ({"methods": ["yopo-G", "yopo-G"]}, "duplicate"), ({"bogus": 1}, "unknown keys"),
                       ({"cross_seed": "some"}, "cross_seed"), ({"cross_methods": ["nope"]}, "cross_methods")]:
        with pytest.raises(ValueError, match=match):
            SweepSpec.from_dict(spec_dict(tmp_path, **bad))
    (tmp_path / "c.yaml").write_text("x")
    with pytest.raises(ValueError, match="json or .toml"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "none.toml")


def test_extends_overlays_tables_replaces_lists_and_keeps_run_ids(tmp_path):
    base = dict(spec_dict(tmp_path / "out", seeds=[0, 1, 2]), train={"epochs": 1, "device": "cpu", "lr": 0.05},
                calibration={"min_keep": 0})
    (tmp_path / "base.json").write_text(json.dumps(base))
    sub = tmp_path / "controls"
    sub.mkdir()
    # relative to the extending file; a second level (a -> b -> base) resolves the same way
    (sub / "b.toml").write_text('extends = "../base.json"\nseeds = [2]\n[train]\nepochs = 3\n'
                                '[[methods]]\nlabel = "magnitude"\nmethod = "magnitude"\n')
    (sub / "a.toml").write_text('extends = "b.toml"\nname = "a"\n')
    d = load_config(sub / "a.toml")
    assert "extends" not in d and d["name"] == "a" and d["seeds"] == [2]
    assert d["train"] == {"epochs": 3, "device": "cpu", "lr": 0.05}  # merged key by key, the top file wins
    assert d["calibration"] == {"min_keep": 0} and d["sparsities"] == base["sparsities"]
    assert [m["label"] for m in d["methods"]] == ["magnitude"]  # a list is replaced whole
    # same settings -> same run ids as the base config's runs (the name is not part of a run's identity)
    ids = {r.id for r in expand(SweepSpec.from_dict(dict(base, train=d["train"])))}
    runs = expand(SweepSpec.from_dict(d))
    assert len(runs) == 2 and {r.id for r in runs} <= ids


def test_extends_errors(tmp_path):
    (tmp_path / "x.toml").write_text('extends = "y.toml"\n')
    (tmp_path / "y.toml").write_text('extends = "x.toml"\n')
    with pytest.raises(ValueError, match=r"cycle \(x.toml -> y.toml -> x.toml\)"):
        load_config(tmp_path / "x.toml")
    (tmp_path / "m.toml").write_text('extends = "missing.toml"\n')
    with pytest.raises(FileNotFoundError, match=r"missing.toml does not exist \(extended by .*m.toml\)"):
        load_config(tmp_path / "m.toml")
    (tmp_path / "n.toml").write_text('extends = 3\n')
    with pytest.raises(ValueError, match="extends must be the path of another sweep config; got 3"):
        load_config(tmp_path / "n.toml")


def test_benchmark_sweep_specs_are_valid():
    """Every committed benchmark spec (some extend another) loads and expands."""
    specs = sorted((ROOT / "benchmarks").rglob("*.toml"))
    assert specs
    for path in specs:
        assert expand(SweepSpec.from_dict(load_config(path))), path.name


def test_expand_ids_and_families(tmp_path):
    spec = SweepSpec.from_dict(spec_dict(tmp_path, variants=["none", "shuffle"], cross_seed="all"))
    runs = expand(spec)
    # 3 methods x 2 sparsities x 2 seeds x (2 variants + 1 cross-seed)
    assert len(runs) == 36 and len({r.id for r in runs}) == 36
    assert [r.id for r in expand(spec)] == [r.id for r in runs]  # deterministic
    # yopo-G and yopo-L share the saliency of a seed; every sparsity re-thresholds it
    fams = {r.family_key for r in runs}
    assert len(fams) == 4  # (yopo, magnitude) x 2 seeds
    # the run id ignores where things live (device, data_root) but not what changes results
    a = SweepSpec.from_dict(spec_dict(tmp_path, train={"epochs": 1, "device": "cuda", "data_root": "/x"}))
    b = SweepSpec.from_dict(spec_dict(tmp_path / "other", train={"epochs": 1}))
    c = SweepSpec.from_dict(spec_dict(tmp_path, train={"epochs": 2}))
    assert [r.id for r in expand(a)] == [r.id for r in expand(b)] != [r.id for r in expand(c)]
    # SynFlow's scores depend on the budget: one family per sparsity
    s = SweepSpec.from_dict(spec_dict(tmp_path, methods=["synflow"]))
    assert len({r.family_key for r in expand(s)}) == 4


def test_once_only_saliency_masks_from_family(tmp_path):
    calls = []

    def scorer(fam):
        from yopo.experiment.sweep import default_scorer
        calls.append(fam)
        return default_scorer(fam)

    runner = FakeRunner()
    spec = SweepSpec.from_dict(spec_dict(tmp_path, methods=[Y("yopo-G"), Y("yopo-L")], sparsities=[0.5, 0.8, 0.95],
                                         seeds=[0], train={"epochs": 1}))
    s = run_sweep(spec, runner=runner, scorer=scorer, log=quiet)
    assert (s.done, s.failed, s.families_computed) == (6, 0, 1)
    assert len(calls) == 1  # one saliency for 2 modes x 3 sparsities
    key = expand(spec)[0].family_key
    fam = Family.load(family_path(tmp_path, key))
    for settings, masks in runner.calls:
        ref = fam.calibrate(settings["sparsity"], mode=settings["mode"]).masks
        assert all(torch.equal(masks[n], ref[n]) for n in ref)
        assert settings["init_seed"] == settings["seed"] == 0
    # a second sweep (more seeds) reuses the cached family and scores only the new seed
    spec2 = SweepSpec.from_dict(spec_dict(tmp_path, methods=[Y("yopo-G"), Y("yopo-L")], sparsities=[0.5, 0.8, 0.95],
                                          seeds=[0, 1], train={"epochs": 1}))
    s = run_sweep(spec2, runner=FakeRunner(), scorer=scorer, log=quiet)
    assert (s.skipped, s.done, s.families_computed, len(calls)) == (6, 6, 1, 2)
    with ResultsDB(tmp_path / "results.sqlite") as db:
        assert len(db.families()) == 2
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_resume_after_interrupt_neither_repeats_nor_loses(tmp_path):
    spec = SweepSpec.from_dict(spec_dict(tmp_path, variants=["none", "invert"]))
    total = len(expand(spec))  # 3 x 2 x 2 x 2 = 24
    r1 = FakeRunner(fail_at=7)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, runner=r1, log=quiet)
    db = ResultsDB(tmp_path / "results.sqlite")
    assert db.count("done") == 6 and db.count("failed") == 0
    first = {c[0]["label"] + str(c[0]["sparsity"]) + str(c[0]["seed"]) + c[0]["variant"] for c in r1.calls[:6]}
    db.close()
    r2 = FakeRunner()
    s = run_sweep(spec, runner=r2, log=quiet)
    assert (s.total, s.skipped, s.done) == (total, 6, total - 6)
    assert len(r2.calls) == total - 6  # nothing repeated...
    second = {c[0]["label"] + str(c[0]["sparsity"]) + str(c[0]["seed"]) + c[0]["variant"] for c in r2.calls}
    assert not first & second
    with ResultsDB(tmp_path / "results.sqlite") as db:  # ...nothing lost, no duplicates
        assert db.count("done") == total
        ids = [r["id"] for r in db.runs()]
        assert len(ids) == len(set(ids)) == total
        assert set(ids) == {r.id for r in expand(spec)}
    s = run_sweep(spec, runner=FakeRunner(fail_at=1), log=quiet)  # all done: runner never called
    assert (s.skipped, s.done) == (total, 0)


def test_failures_recorded_then_retried(tmp_path):
    spec = SweepSpec.from_dict(spec_dict(tmp_path))
    total = len(expand(spec))
    s = run_sweep(spec, runner=FakeRunner(fail_at=3, exc=RuntimeError), log=quiet)
    assert (s.done, s.failed) == (total - 1, 1)
    with ResultsDB(tmp_path / "results.sqlite") as db:
        failed = db.runs("failed")
        assert len(failed) == 1 and "interrupted by the fake runner" in failed[0]["error"]
    r = FakeRunner()
    s = run_sweep(spec, runner=r, log=quiet)
    assert (s.done, s.failed, len(r.calls)) == (1, 0, 1)
    with pytest.raises(RuntimeError):
        run_sweep(SweepSpec.from_dict(spec_dict(tmp_path / "ff")), runner=FakeRunner(1, RuntimeError),
                  fail_fast=True, log=quiet)


def test_stalled_runs_are_counted_and_logged(tmp_path):
    """A run whose result says its training stalled is recorded done, logged and counted as stalled."""
    def runner(settings, masks):
        res = synthetic_runner(settings, masks)
        res["stalled"] = settings["label"] == "magnitude" and settings["sparsity"] == 0.9
        return res

    lines = []
    s = run_sweep(SweepSpec.from_dict(spec_dict(tmp_path)), runner=runner, log=lines.append)
    assert (s.done, s.failed, s.stalled) == (12, 0, 2)  # magnitude at 90%, seeds 0 and 1
    assert "12 run now (2 stalled: train loss near the class-prior loss), 0 failed" in str(s)
    flagged = [l for l in lines if "STALLED" in l]
    assert len(flagged) == 2 and all("magnitude" in l and "p=0.9" in l for l in flagged)


def test_transfer_masks_shape_mismatch():
    src = {"a": torch.tensor([[True, False, False, False]]), "head": torch.tensor([[True, False], [False, False]])}
    tgt = {"a": torch.rand(1, 4), "head": torch.arange(8.0).reshape(4, 2)}
    m, fb = transfer_masks(src, tgt)
    assert torch.equal(m["a"], src["a"]) and fb == ["head"]
    assert int(m["head"].sum()) == 2 and m["head"].flatten()[-2:].all()  # same fraction, target's best


def _cli(*args, env=None):
    code = "import sys; from yopo.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def test_cli_parallel_sweep_killed_and_resumed(tmp_path):
    """SIGKILL a `yopo sweep --workers 2` mid-way, rerun it: every run exactly once in the database,
    and no run that was committed before the kill is run again."""
    log = tmp_path / "calls.jsonl"
    cfg = tmp_path / "sweep.json"
    cfg.write_text(json.dumps(spec_dict(tmp_path / "out", methods=[Y("yopo-G"), "magnitude"], seeds=[0, 1, 2],
                                        train={"epochs": 1, "sleep": 0.15})))
    total = len(expand(SweepSpec.from_dict(load_config(cfg))))  # 2 x 2 x 3 = 12
    env = dict(os.environ, YOPO_SYNTH_LOG=str(log))
    p = _cli("sweep", str(cfg), "--workers", "2", env=env)
    db_path = tmp_path / "out" / "results.sqlite"
    deadline = time.time() + 60
    done_before = 0
    while time.time() < deadline:
        if db_path.exists():
            try:
                with sqlite3.connect(db_path) as c:
                    done_before = c.execute("SELECT COUNT(*) FROM runs WHERE status='done'").fetchone()[0]
            except sqlite3.OperationalError:
                pass
        if done_before >= 3 or p.poll() is not None:
            break
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    with sqlite3.connect(db_path) as c:
        committed = {r[0] for r in c.execute("SELECT id FROM runs WHERE status='done'")}
    assert 3 <= len(committed) < total
    n_first = len(log.read_text().splitlines())
    p = _cli("sweep", str(cfg), "--workers", "2", env=env)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()[-2000:]
    calls = [json.loads(line)["id"] for line in log.read_text().splitlines()]
    rerun = calls[n_first:]
    assert not committed & set(rerun)  # committed runs are not repeated
    with ResultsDB(db_path) as db:
        ids = [r["id"] for r in db.runs()]
    assert len(ids) == len(set(ids)) == total  # none lost
    assert len(rerun) <= total - len(committed) + 0  # only the missing ones (in-flight ones included)
    assert f"{len(committed)} already done" in err.decode()


def test_cli_dry_run_and_set(tmp_path, capsys):
    from yopo.cli import main

    cfg = tmp_path / "s.json"
    cfg.write_text(json.dumps(spec_dict(tmp_path / "o")))
    assert main(["sweep", str(cfg), "--dry-run", "--set", "epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "12 runs, 0 done, 4 saliency families" in out
    assert main(["sweep", str(cfg), "--limit", "2"]) == 0
    assert main(["sweep", str(cfg), "--dry-run"]) == 0
    assert "12 runs, 2 done" in capsys.readouterr().out
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2


def test_synflow_family_uses_the_datasets_input_shape(tmp_path, monkeypatch):
    # SynFlow builds its own all-ones input: the sweep gives it the data's example shape, and the
    # shape is part of the family's identity (32x32 ones and 64x64 ones give different scores)
    import yopo.core.registry
    from yopo.experiment.sweep import default_scorer

    spec = SweepSpec.from_dict(spec_dict(tmp_path, methods=["synflow"], sparsities=[0.9], seeds=[0]))
    run = expand(spec)[0]
    assert run.family["input_shape"] == [1, 8, 8]
    seen = {}
    real = yopo.core.registry.score

    def spy(model, method, **kw):
        seen.update(kw)
        return real(model, method, **kw)

    monkeypatch.setattr(yopo.core.registry, "score", spy)
    default_scorer(run.family)
    assert seen["input_shape"] == (1, 8, 8)
    other = dict(run.family, input_shape=[1, 16, 16])
    from yopo.experiment.sweep import family_key
    assert family_key(other) != run.family_key
