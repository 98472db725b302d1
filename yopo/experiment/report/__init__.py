"""Reports from a sweep database: the paper's tables (markdown + LaTeX) and figures (PNG + PDF).

``build_report(db_path, out_dir)`` writes, as far as the runs in the database allow:

* ``table1_*``   methods x (model, dataset, sparsity), mean accuracy (Table 1 layout)
* ``table6_*``   per (model, dataset) block: methods x sparsities, mean +- std over seeds, best **bold**,
  second *italic* (Table 6 layout)
* ``table2_dti`` DTI per target dataset, mean and worst |DTI| (Table 2; needs ``cross_dataset`` runs)
* ``table3_budget`` one saliency re-thresholded to every sparsity (Table 3)
* ``table4_i3``  per seed Acc_self, true cross-seed accuracy and gap, the paper's leave-one-out
  proxy beside it, and I^3 (Def. 2) (needs ``cross_seed`` runs)
* ``table8_time`` accuracy and mask (pruning) time per method (Table 8)
* ``sanity``     accuracy under the sanity-check variants (shuffle / reinit / invert) vs the original
* ``fig2_acc_vs_sparsity``, ``fig4_mad_vs_std``, ``fig8_mask_time``, ``fig_sanity``: from the runs
* ``fig1b_layer_sparsity`` (heatmap) and ``fig5_layer_profile``: YOPO-G vs YOPO-L per-layer
  sparsity, and ``fig3b_saliency_ranks``: per-layer saliency distributions for several NMF ranks,
  computed directly from a model's saliency (no training).

Everything that cannot be produced (e.g. no cross-seed runs) is listed with the reason in
``README.md`` of the output folder.

Modules: ``tables`` (loading the runs, the table builders and :class:`Table` with its markdown /
LaTeX rendering), ``figures`` (the figure functions). The report reads the results store
(``yopo.experiment.store``) and never imports the sweep package.
"""
from __future__ import annotations

from pathlib import Path

from ...core.io import write_text
from .. import metrics as M
from .figures import (FIG_FORMATS, fig2_acc_vs_sparsity, fig3b_saliency_ranks, fig4_mad_vs_std, fig8_mask_time,
                      fig_layer_sparsity, fig_sanity, fig_training_curves, init_model, layer_sparsity_profile)
from .tables import (Table, i3_rows, is_base, load_runs, table1, table2_dti, table3_budget, table4_i3, table6,
                     table8_time, table_sanity)

__all__ = ["FIG_FORMATS", "Table", "build_report", "fig2_acc_vs_sparsity", "fig3b_saliency_ranks", "fig4_mad_vs_std",
           "fig8_mask_time", "fig_layer_sparsity", "fig_sanity", "i3_rows", "init_model", "is_base",
           "layer_sparsity_profile", "load_runs", "table1", "table2_dti", "table3_budget", "table4_i3", "table6",
           "table8_time", "table_sanity"]


def family_file(f: dict, db_path) -> Path | None:
    """The file of a family row: ``families/<key>.safetensors`` beside the database (where a sweep
    keeps it, wherever the folder was moved), else the path recorded at the time."""
    for p in (Path(db_path).parent / "families" / f"{f['key']}.safetensors", Path(db_path).parent / f["path"]):
        if p.is_file():
            return p
    return None


def _profile_scores(runs, families, model: str | None, num_classes: int | None, seed: int, iters: int, db_path):
    """Saliency for the layer profiles: a cached YOPO family of the sweep when there is one, else
    computed now for ``model``. Returns (scores, model, num_classes, model_opts, note)."""
    from ...core.family import Family

    for f in families:
        path = family_file(f, db_path) if f["method"] == "yopo" else None
        if path is not None and (model is None or f["model"] == model):
            fam = Family.load(path)
            st = f.get("settings") or {}
            return (fam.scores, f["model"], st.get("num_classes") or fam.meta.get("num_classes") or 10,
                    st.get("model_opts"), f"(YOPO saliency of seed {f['seed']}, from the sweep)")
    model = model or (runs[0]["model"] if runs else None)
    if model is None:
        return None, None, None, None, ""
    from ...core.registry import score
    from ...models import input_kwargs
    from ..data import dataset_input_shape

    nc = num_classes or 10
    opts = {}
    ds = next((r["dataset"] for r in runs if r["model"] == model), None)
    if ds is not None:
        try:
            opts = input_kwargs(model, dataset_input_shape(ds, {}))
        except (FileNotFoundError, ValueError):  # a dataset of unknown shape that cannot be loaded here
            opts = {}
    m = init_model(model, nc, seed, opts)
    return score(m, "yopo", seed=seed, iters=iters), model, nc, opts, f"(YOPO saliency of seed {seed}, T = {iters})"


def build_report(db_path, out_dir, *, model: str | None = None, num_classes: int | None = None, seed: int = 0,
                 ranks=(2, 4, 7, 10), iters: int = 200, profile_sparsities=(0.5, 0.7, 0.8, 0.9, 0.95, 0.98),
                 formats=FIG_FORMATS, saliency_figures: bool = True) -> dict:
    """Write every table and figure the database allows into ``out_dir``; returns
    {"tables": [...], "figures": [...], "skipped": {name: reason}}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs, families, meta = load_runs(db_path)
    made = {"tables": [], "figures": [], "skipped": {}}
    md = [f"# Report: {meta.get('spec', {}).get('name', Path(db_path).stem)}", "",
          f"{len(runs)} finished runs from `{_shown_path(db_path, out)}`.", ""]
    machine = machine_line(meta, runs)
    if machine:
        md += [f"Machine: {machine}.", ""]
    times = [r["time_s"] for r in runs if r.get("time_s")]
    if times:
        md += [f"Training time: {sum(times) / 60:.1f} min in total, {M.mean(times):.0f} s per run on average "
               f"(scoring: {sum(f['score_time_s'] or 0 for f in families):.1f} s for {len(families)} saliency "
               f"families).", ""]
    builders = [("table1", lambda: table1(runs), "no pruned runs"),
                ("table6", lambda: table6(runs), "no pruned runs"),
                ("table2_dti", lambda: table2_dti(runs), "no cross-dataset runs (cross_dataset = true)"),
                ("table3_budget", lambda: table3_budget(runs, families), "no method with two or more sparsities"),
                ("table4_i3", lambda: table4_i3(runs), "no cross-seed runs (cross_seed = next | all)"),
                ("table8_time", lambda: table8_time(runs, families), "no pruned runs"),
                ("sanity", lambda: table_sanity(runs), "no sanity variants (variants = shuffle | reinit | invert)")]
    for name, fn, why in builders:
        tables = fn()
        if not tables:
            made["skipped"][name] = why
            continue
        for t in tables:
            write_text(out / f"{t.name}.md", t.markdown())
            write_text(out / f"{t.name}.tex", t.latex())
            made["tables"] += [f"{t.name}.md", f"{t.name}.tex"]
            md += [t.markdown(), f"(LaTeX: `{t.name}.tex`)", ""]
    figs = [("fig2_acc_vs_sparsity", lambda: fig2_acc_vs_sparsity(runs, out, formats), "no pruned runs"),
            ("fig4_mad_vs_std", lambda: fig4_mad_vs_std(runs, out, formats),
             "no pair of runs differing only in robust = mad / std (e.g. methods yopo-LW and yopo-LW-std)"),
            ("fig8_mask_time", lambda: fig8_mask_time(runs, families, out, formats, machine=machine or
                                                      "CPU not recorded in this database"), "no timing data"),
            ("fig_sanity", lambda: fig_sanity(runs, out, formats), "no sanity variants"),
            ("fig_training_curves", lambda: fig_training_curves(runs, out, formats), "no per-epoch test accuracy")]
    if saliency_figures:
        scores, pmodel, nc, mopts, how = _profile_scores(runs, families, model, num_classes, seed, iters, db_path)
        # the profile's sparsities and every sparsity the sweep ran
        profile_sparsities = sorted(set(profile_sparsities) | {r["sparsity"] for r in runs if r["sparsity"] > 0})
        if scores is not None:
            figs.append(("fig1b_layer_sparsity", lambda: fig_layer_sparsity(scores, list(profile_sparsities), out,
                                                                            f"{pmodel} {how}", formats), ""))
            figs.append(("fig3b_saliency_ranks", lambda: fig3b_saliency_ranks(pmodel, nc, seed, list(ranks), out,
                                                                              iters, formats, model_opts=mopts), ""))
        else:
            made["skipped"]["fig1b_layer_sparsity"] = "no model (pass --model)"
    else:
        made["skipped"]["fig1b_layer_sparsity / fig5 / fig3b"] = "saliency figures disabled"
    md += ["## Figures", ""]
    for name, fn, why in figs:
        paths = fn()
        if not paths:
            made["skipped"][name] = why
            continue
        made["figures"] += paths
        for p in paths:
            if p.endswith(".png"):
                md.append(f"![{Path(p).stem}]({p})")
        md.append("")
    if made["skipped"]:
        md += ["## Not produced", ""] + [f"- `{k}`: {v}" for k, v in made["skipped"].items()] + [""]
    write_text(out / "README.md", "\n".join(md))
    return made


def _shown_path(db_path, out: Path) -> str:
    """The database as the report names it: relative to the report folder (no absolute paths in
    a shipped report)."""
    import os

    try:
        return os.path.relpath(Path(db_path).resolve(), out.resolve())
    except ValueError:  # another drive (Windows)
        return Path(db_path).name


def machine_line(meta: dict, runs) -> str:
    """The machine(s) the runs ran on (``result['machine']``, recorded by ``yopo sweep`` with every
    run), in words; "" when the database predates that record."""
    seen = []
    for r in runs:
        m = r.get("machine")
        if m:
            text = ", ".join(b for b in (m.get("cpu") or "unknown CPU",
                                         f"flags {'/'.join(m['cpu_flags'])}" if m.get("cpu_flags") else "",
                                         f"{m['cores']} cores" if m.get("cores") else "",
                                         f"torch {m['torch']}" if m.get("torch") else "",
                                         f"{m['threads']} threads per run" if m.get("threads") else "",
                                         m.get("gpu", "")) if b)
            if text not in seen:
                seen.append(text)
    if len(seen) > 2:
        return f"{len(seen)} different machines, e.g. {seen[0]}"
    return "; ".join(seen)
