"""`yopo report`: every table and figure is produced from a sweep database (synthetic runs), and
the table numbers are the metrics of the runs."""
import math

import pytest

from yopo.experiment import metrics as M
from yopo.experiment.report import Table, build_report, i3_rows, layer_sparsity_profile, load_runs
from yopo.experiment.sweep import SweepSpec, run_sweep

TABLES = ["table1", "table6", "table2_dti", "table3_budget", "table4_i3", "table8_time", "sanity"]
FIGURES = ["fig_training_curves", "fig2_acc_vs_sparsity", "fig4_mad_vs_std", "fig8_mask_time", "fig_sanity", "fig1b_layer_sparsity",
           "fig5_layer_profile", "fig3b_saliency_ranks"]


def Y(label):
    return {"label": label, "method": "yopo", "opts": {"iters": 10, "rank": 2}}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    spec = SweepSpec.from_dict({
        "name": "rep", "out": str(out), "models": ["mlp_digits"], "datasets": ["digits", "mnist1d"],
        "methods": [Y("yopo-G"), Y("yopo-LW"), Y("yopo-LW-std"), "magnitude"], "sparsities": [0.0, 0.5, 0.9],
        "seeds": [0, 1, 2], "variants": ["none", "invert"], "cross_seed": "all",
        "cross_dataset": True, "cross_methods": ["yopo-G"], "runner": "synthetic"})
    s = run_sweep(spec, log=lambda m: None)
    assert s.failed == 0
    return out / "results.sqlite"


def test_every_table_and_figure(db, tmp_path):
    made = build_report(db, tmp_path, iters=10, ranks=(2, 3), profile_sparsities=(0.5, 0.9),
                        formats=("png", "pdf"))
    assert made["skipped"] == {}
    for t in TABLES:
        for ext in ("md", "tex"):
            assert (tmp_path / f"{t}.{ext}").stat().st_size > 100, t
    for f in FIGURES:
        for ext in ("png", "pdf"):
            assert (tmp_path / f"{f}.{ext}").stat().st_size > 1000, f
    readme = (tmp_path / "README.md").read_text()
    assert "Not produced" not in readme and "fig2_acc_vs_sparsity.png" in readme
    tex = (tmp_path / "table6.tex").read_text()
    assert r"\begin{tabular}" in tex and r"$\pm$" in tex and r"\textbf{" in tex and "mlp\\_digits" in tex


def test_table_numbers_are_run_metrics(db, tmp_path):
    runs, fams, meta = load_runs(db)
    # mlp_digits takes 64 inputs on digits and 40 on mnist1d: one family per (method, seed, input size)
    assert meta["spec"]["name"] == "rep" and len(fams) == 12
    build_report(db, tmp_path, saliency_figures=False, formats=("png",))
    # Table 6: mean ± std of the three seeds
    sel = [r["test_acc"] for r in runs if r["label"] == "yopo-G" and r["dataset"] == "digits" and r["sparsity"] == 0.9
           and r["variant"] == "none" and r["mask_seed"] == r["seed"] and r["mask_dataset"] == r["dataset"]]
    m, s, n = M.mean_std(sel)
    assert n == 3 and f"{m:.2f} ± {s:.2f}" in (tmp_path / "table6.md").read_text()
    # Table 4: true I^3 from the cross-seed runs
    acc_self, acc_cross = i3_rows(runs)[("mlp_digits", "digits", "yopo-G", 0.9)]
    assert set(acc_cross) == {(a, b) for a in range(3) for b in range(3) if a != b}
    assert f"I^3 = {M.i3_true(acc_self, acc_cross):.2f}" in (tmp_path / "table4_i3.md").read_text()
    # the README lists what the disabled saliency figures would have been
    assert "saliency figures disabled" in (tmp_path / "README.md").read_text()


def test_skips_are_explained(tmp_path):
    out = tmp_path / "s"
    spec = SweepSpec.from_dict({"name": "few", "out": str(out), "models": ["mlp_digits"], "datasets": ["digits"],
                                "methods": ["magnitude"], "sparsities": [0.9], "seeds": [0], "runner": "synthetic"})
    run_sweep(spec, log=lambda m: None)
    made = build_report(out / "results.sqlite", tmp_path / "r", iters=5, ranks=(2,), formats=("png",))
    for name in ("table2_dti", "table4_i3", "sanity", "table3_budget", "fig4_mad_vs_std"):
        assert name in made["skipped"]
    assert "table6.md" in made["tables"] and "fig1b_layer_sparsity.png" in made["figures"]
    assert "cross_seed" in (tmp_path / "r" / "README.md").read_text()


def test_training_curves_figure_draws_dense_and_every_method(tmp_path):
    from yopo.experiment.report.figures import fig_training_curves

    def run(label, p, seed, accs):
        return {"label": label, "sparsity": p, "seed": seed, "mask_seed": seed, "variant": "none", "model": "m",
                "dataset": "d", "mask_dataset": "d", "curve": [(e + 1, a) for e, a in enumerate(accs)]}

    runs = [run("dense", 0.0, s, [50, 70, 80]) for s in (0, 1)]
    runs += [run(lab, p, 0, [20, 40, 45]) for lab in ("a", "b") for p in (0.9, 0.98)]
    made = fig_training_curves(runs, tmp_path, formats=("png",))
    assert made == ["fig_training_curves.png"] and (tmp_path / made[0]).stat().st_size > 0
    assert fig_training_curves([dict(r, curve=[]) for r in runs], tmp_path, formats=("png",)) == []


def test_layer_profile_local_is_uniform_global_is_not():
    import torch
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(8, 8, generator=g) * 3, "b": torch.rand(16, 16, generator=g)}
    prof = layer_sparsity_profile(scores, [0.5, 0.9])
    assert all(abs(v - p) < 0.05 for row, p in zip(prof["local"], [0.5, 0.9]) for v in row)
    assert prof["global"][0][0] < 0.5 < prof["global"][0][1]


def test_table_rendering():
    t = Table("x", "A & B 90%", ["Method", "p_1"], [["yopo-G", ("1.00 ± 0.10", "bold")], ["b", ("2", "italic")]])
    t.sections.append((0, "block"))
    md = t.markdown()
    assert "**1.00 ± 0.10**" in md and "*2*" in md and "| **block** |" in md
    tex = t.latex()
    assert r"A \& B 90\%" in tex and r"\textbf{1.00 $\pm$ 0.10}" in tex and r"\textit{2}" in tex and "p\\_1" in tex
    assert not math.isnan(M.mean([1.0]))


def test_report_cli(db, tmp_path, capsys):
    from yopo.cli import main

    assert main(["report", str(db.parent), "--out", str(tmp_path), "--no-saliency-figures", "--formats", "png"]) == 0
    assert "table files" in capsys.readouterr().out
    assert (tmp_path / "table1.md").exists()
    assert main(["report", str(tmp_path / "nope.sqlite"), "--out", str(tmp_path)]) == 2
