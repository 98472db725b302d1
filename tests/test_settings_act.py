"""Issue 11, item 1: every setting that names a run must act.

Every field of CalibrationSettings, at a non-default value that changes the mask of the digits CNN
at 95% sparsity, goes through every entry point (``yopo prune``, ``yopo inspect``, ``yopo train``
(CLI -> ``yopo.experiment.train.run``, 1 epoch), a sweep with the synthetic runner, and
``Family.calibrate``). Each entry point must give exactly the mask that ``Family.calibrate`` gives
for those settings (they score the same seeded initialization), that mask must differ from the
default's, and where a setting cannot act the entry point refuses it in one line. The sweep's
recorded settings must rebuild the masks its runner received.
"""
from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
import torch

from yopo.cli import main
from yopo.core.calibration import CalibrationSettings, CollapseWarning
from yopo.core.family import Family, load_mask

SPARSITY = 0.95
MODEL = "cnn_digits"
YOPO_ITERS = 10

# (case, field, value, base settings the value is compared against, scoring method). robust acts
# only through per-layer statistics (allocation layerwise): with the pooled global order it changes
# the reported alpha, not the mask. bisect gives the exact mask on tie-free scores (the paper's
# Alg. 2 and the exact order agree, see test_core_calibrate); it shows on tied scores: RReg's
# kernel-level expander mask built for 90% and calibrated at 95% cuts through tied kernels, which
# bisection cannot split (it misses the budget by the tie) while the exact order can.
CASES = [
    ("allocation", "allocation", "uniform", {}, "yopo"),
    ("allocation_from", "allocation", "from:magnitude", {}, "yopo"),
    ("ranking", "ranking", "rows", {}, "yopo"),
    ("robust", "robust", "std", {"allocation": "layerwise"}, "yopo"),
    ("min_keep", "min_keep", 0, {}, "yopo"),
    ("col_keep", "col_keep", 1, {}, "yopo"),
    ("class_keep", "class_keep", 3, {"min_keep": 0}, "yopo"),
    ("min_layer_density", "min_layer_density", 0.04, {}, "yopo"),
    ("calibration_solver", "calibration_solver", "bisect", {}, "rreg"),  # see RREG_OPTS
    ("exclude", "exclude", ("classifier*",), {}, "yopo"),
]
# fields that act on the weights a mask is applied to, not on the mask (tests/test_kept_scale.py
# checks them through the API, yopo train and the sweep's run ids)
APPLY_FIELDS = {"kept_scale"}
BASES = {("yopo", ()), ("yopo", (("allocation", "layerwise"),)), ("yopo", (("min_keep", 0),)), ("rreg", ())}
RREG_OPTS = {"target_sparsity": 0.9}


def _settings(base: dict, field=None, value=None) -> CalibrationSettings:
    return CalibrationSettings(**base, **({field: value} if field else {}))


def _flags(d: dict) -> list[str]:
    out = []
    for k, v in d.items():
        out += [f"--{k.replace('_', '-')}", *(list(v) if isinstance(v, tuple) else [str(v)])]
    return out


def _method_flags(method: str) -> list[str]:
    # --preset paper: the dataclass defaults (prune/train default to the recommended preset for yopo)
    return ["--method", method] + (["--preset", "paper", "--iters", str(YOPO_ITERS)] if method == "yopo" else
                                   ["--method-opt", *(f"{k}={v}" for k, v in RREG_OPTS.items())])


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n].bool(), b[n].bool()) for n in a)


def test_cases_cover_every_calibration_setting():
    fields = {f.name for f in dataclasses.fields(CalibrationSettings)}
    assert {c[1] for c in CASES} | APPLY_FIELDS == fields  # a new setting must be added here (and must act)
    for _, field, value, base, _ in CASES:
        assert value != getattr(_settings(base), field)


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """`yopo prune` families with the default settings, one per (method, base settings), and the
    reference masks of every case from ``Family.calibrate`` (the library entry point)."""
    d = tmp_path_factory.mktemp("fam")
    fams = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method, base in BASES:
            path = d / f"{method}-{'-'.join(k for k, _ in base) or 'plain'}.safetensors"
            assert main(["prune", "--model", MODEL, "--sparsity", str(SPARSITY), *_method_flags(method),
                         *_flags(dict(base)), "--out", str(path)]) == 0
            fams[(method, base)] = path
        # the from:<method> family holds the budget method's scores too
        path = d / "from.safetensors"
        assert main(["prune", "--model", MODEL, "--sparsity", str(SPARSITY), *_method_flags("yopo"),
                     "--allocation", "from:magnitude", "--out", str(path)]) == 0
        fams["from"] = path
        ref, default = {}, {}
        for case, field, value, base, method in CASES:
            fam = Family.load(fams["from"] if case == "allocation_from" else fams[(method, tuple(base.items()))])
            ref[case] = fam.calibrate(SPARSITY, _settings(base, field, value)).masks
            default[case] = fam.calibrate(SPARSITY, _settings(base)).masks
    return fams, ref, default


def test_family_calibrate(families):
    fams, ref, default = families
    for case, *_ in CASES:
        assert not _same(ref[case], default[case]), f"{case} does not change the mask"
    # a family without the budget method's scores refuses from:<method> in one line
    plain = Family.load(fams[("yopo", ())])
    with pytest.raises(ValueError, match="needs the scores of 'magnitude'.*yopo prune --allocation from:magnitude"):
        plain.calibrate(SPARSITY, CalibrationSettings(allocation="from:magnitude"))


def test_prune_cli(families, tmp_path, capsys):
    fams, ref, default = families
    for case, field, value, base, method in CASES:
        out, mask = tmp_path / f"{case}.safetensors", tmp_path / f"{case}.mask"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(["prune", "--model", MODEL, "--sparsity", str(SPARSITY), *_method_flags(method),
                         *_flags({**base, field: value}), "--out", str(out), "--mask-out", str(mask)]) == 0
        got, _ = load_mask(mask)
        assert _same(got, ref[case]), case
        assert not _same(got, default[case]), case
        stored = Family.load(out).calibration_settings  # the family records what printed its mask
        assert stored == _settings(base, field, value)
        assert _same(Family.load(out).calibrate(SPARSITY).masks, got)
    capsys.readouterr()


def test_inspect_cli(families, tmp_path, capsys):
    fams, ref, default = families
    for case, field, value, base, method in CASES:
        fam = fams[(method, tuple(base.items()))]  # stored settings: the base; the flag on top
        mask = tmp_path / f"{case}.mask"
        argv = ["inspect", str(fam), "--sparsity", str(SPARSITY), *_flags({field: value}), "--mask-out", str(mask)]
        if case == "allocation_from":  # a family without magnitude's scores cannot act on it
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert "needs the scores of 'magnitude'" in err and len(err.splitlines()) == 1
            fam, argv = fams["from"], ["inspect", str(fams["from"]), "--sparsity", str(SPARSITY), "--mask-out",
                                       str(mask)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(argv) == 0
        got, _ = load_mask(mask)
        assert _same(got, ref[case]) and not _same(got, default[case]), case
    capsys.readouterr()


def test_train_cli(families, tmp_path, capsys):
    fams, ref, default = families
    common = ["train", "--model", MODEL, "--epochs", "1", "--subset", "100", "--test-subset", "50", "--no-progress",
              "--no-checkpoint", "--device", "cpu", "--sparsity", str(SPARSITY)]
    for case, field, value, base, method in CASES:
        out = tmp_path / case
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(common + _method_flags(method) + _flags({**base, field: value}) + ["--out", str(out)]) == 0
        got, meta = load_mask(out / "mask.safetensors")
        assert _same(got, ref[case]) and not _same(got, default[case]), case
        result = json.loads((out / "result.json").read_text())
        assert result["calibration"]["settings"] == _settings(base, field, value).to_dict()
        assert meta["calibration"] == _settings(base, field, value).to_dict()
        assert 0.0 <= result["test_acc"] <= 100.0
    # a setting that cannot act is refused in one line: calibration flags on a dense run or a fixed mask
    for argv in (common + ["--method", "dense", "--min-keep", "0"],
                 common + ["--mask", str(tmp_path / "ranking" / "mask.safetensors"), "--ranking", "rows"]):
        capsys.readouterr()  # the epoch log lines of the runs above (stderr)
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert ("calibrates nothing" in err or "cannot act" in err) and len(err.splitlines()) == 1, err
    capsys.readouterr()


def test_sweep(families, tmp_path):
    from yopo.experiment.sweep import ResultsDB, SweepSpec, expand, family_path, run_sweep, synthetic_runner

    fams, ref, default = families

    def entry(label, method, cal):
        e = {"label": label, "method": method, **{k: list(v) if isinstance(v, tuple) else v for k, v in cal.items()}}
        e["opts"] = {"iters": YOPO_ITERS} if method == "yopo" else RREG_OPTS
        return e

    methods = [entry(case, method, {**base, field: value}) for case, field, value, base, method in CASES]
    methods += [entry(f"default-{m}-" + ("-".join(k for k, _ in b) or "plain"), m, dict(b)) for m, b in BASES]
    spec = SweepSpec.from_dict({"name": "act", "out": str(tmp_path), "models": [MODEL], "datasets": ["digits"],
                                "methods": methods, "sparsities": [SPARSITY], "seeds": [0], "runner": "synthetic"})
    runs = expand(spec)
    assert len({r.id for r in runs}) == len(methods)  # every setting is part of the run id
    got = {}

    def runner(settings, masks):
        got[settings["label"]] = masks
        return synthetic_runner(settings, masks)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = run_sweep(spec, runner=runner, log=lambda m: None)
    assert (s.done, s.failed) == (len(methods), 0)
    for case, field, value, base, method in CASES:
        assert _same(got[case], ref[case]) and not _same(got[case], default[case]), case
    # what the database records is what was used: the recorded settings rebuild every run's masks
    with ResultsDB(tmp_path / "results.sqlite") as db:
        rows = db.runs()
    assert len(rows) == len(methods)
    for row in rows:
        recorded = CalibrationSettings(**{k: tuple(v) if isinstance(v, list) else v
                                          for k, v in row["settings"]["calibration"].items()})
        fam = Family.load(family_path(tmp_path, row["family"]))
        assert _same(fam.calibrate(SPARSITY, recorded).masks, got[row["label"]]), row["label"]
        assert row["result"]["calibration"]["settings"] == recorded.to_dict()
        assert row["result"]["calibration"]["effective_sparsity"] >= row["achieved_sparsity"] - 1e-12


def test_sweep_calibration_table_and_moved_train_keys(families, tmp_path):
    """The issue's example: [train] exclude / min_keep were hashed but ignored; now they are an error
    that names [calibration], where they act on every method (and on the run id)."""
    from yopo.experiment.sweep import SweepSpec, expand, run_sweep, synthetic_runner

    fams, ref, default = families
    base = {"name": "t", "out": str(tmp_path), "models": [MODEL], "datasets": ["digits"], "sparsities": [SPARSITY],
            "seeds": [0], "runner": "synthetic",
            "methods": [{"label": "yopo-G", "method": "yopo", "opts": {"iters": YOPO_ITERS}}]}
    for key, value in (("exclude", ["classifier*"]), ("min_keep", 0), ("robust", "std")):
        with pytest.raises(ValueError, match=rf"\['{key}'\] \(moved: {key} -> \[calibration\] {key}"):
            SweepSpec.from_dict({**base, "train": {key: value}})
    with pytest.raises(ValueError, match=r"\['init'\] \(moved: init -> weight_init\)"):
        SweepSpec.from_dict({**base, "train": {"init": "normal"}})
    plain = expand(SweepSpec.from_dict(base))[0]
    spec = SweepSpec.from_dict({**base, "calibration": {"exclude": ["classifier*"]}})
    assert expand(spec)[0].id != plain.id
    got = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_sweep(spec, runner=lambda st, m: got.setdefault("m", m) and synthetic_runner(st, m), log=lambda m: None)
    assert _same(got["m"], ref["exclude"])
    # a method's own key wins over the table
    spec = SweepSpec.from_dict({**base, "calibration": {"min_keep": 0},
                                "methods": [{"label": "a", "method": "yopo", "min_keep": 2}]})
    assert spec.methods[0].calibration.min_keep == 2


def test_collapse_warning_once_per_run(tmp_path):
    """Python shows a warning once per code location and process; a sweep shows it for every run
    whose mask has empty rows, once (the invert variant calibrates twice)."""
    from yopo.experiment.sweep import SweepSpec, run_sweep

    spec = SweepSpec.from_dict({"name": "w", "out": str(tmp_path), "models": ["mlp_digits"], "datasets": ["digits"],
                                "methods": [{"label": "m", "method": "magnitude", "min_keep": 0}],
                                "sparsities": [0.99, 0.995], "seeds": [0], "variants": ["none", "invert"],
                                "runner": "synthetic"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own rule: once per location
        run_sweep(spec, log=lambda m: None)
    collapse = [str(w.message) for w in caught if issubclass(w.category, CollapseWarning)]
    # per run: its calibration's warning and its connectivity warning (stranded weights), each once
    calib = [m for m in collapse if m.startswith("calibration at sparsity")]
    stranded = [m for m in collapse if "lie on no input-output path" in m and not m.startswith("calibration")]
    assert len(calib) == 4 and len(stranded) == 4 and len(collapse) == 8, collapse
