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
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from . import metrics as M
from .io import write_text

FIG_FORMATS = ("png", "pdf")


# ----------------------------------------------------------------------------------------------
# loading


def load_runs(db_path) -> tuple[list[dict], list[dict], dict]:
    """(done runs as flat dicts, families, meta) of a sweep database."""
    from .sweep import ResultsDB

    if not Path(db_path).exists():
        raise FileNotFoundError(f"results database {db_path} does not exist")
    with ResultsDB(db_path) as db:
        runs = []
        for r in db.runs("done"):
            d = {k: v for k, v in r.items() if k not in ("result", "settings")}
            res = r["result"]
            d["score_time_s"] = res.get("score_time_s")
            d["layer_sparsity"] = res.get("layer_sparsity")
            d["flops_kept"] = res.get("flops_kept")
            d["flops"] = res.get("flops")
            d["params_kept"] = res.get("params_kept")
            d["params"] = res.get("params")
            d["train"] = r["settings"].get("train", {})
            runs.append(d)
        return runs, db.families(), db.meta()


def is_base(r: dict) -> bool:
    """A run with the method's own mask on its own initialization and dataset."""
    return r["variant"] == "none" and r["mask_seed"] == r["seed"] and r["mask_dataset"] == r["dataset"]


def _group(runs, keys) -> dict:
    g = defaultdict(list)
    for r in runs:
        g[tuple(r[k] for k in keys)].append(r)
    return g


def _ordered(values):
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def _pct(p: float) -> str:
    v = 100 * p
    return f"{v:.0f}%" if abs(v - round(v)) < 1e-9 else f"{v:g}%"


def _fmt(x, nd=2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _ms(vals, nd=2) -> str:
    if not vals:
        return "–"
    m, s, n = M.mean_std(vals)
    return f"{m:.{nd}f} ± {s:.{nd}f}" if n > 1 else f"{m:.{nd}f}"


# ----------------------------------------------------------------------------------------------
# tables


@dataclass
class Table:
    name: str
    title: str
    header: list
    rows: list = field(default_factory=list)  # list of lists of str or (str, style)
    notes: list = field(default_factory=list)
    sections: list = field(default_factory=list)  # (row index, section title)

    def markdown(self) -> str:
        def cell(c):
            t, st = (c if isinstance(c, tuple) else (c, None))
            return f"**{t}**" if st == "bold" else f"*{t}*" if st == "italic" else str(t)

        out = [f"### {self.title}", ""]
        secs = dict(self.sections)
        out.append("| " + " | ".join(self.header) + " |")
        out.append("|" + "|".join(["---"] * len(self.header)) + "|")
        for i, row in enumerate(self.rows):
            if i in secs:
                out.append("| **" + secs[i] + "** |" + " |" * (len(self.header) - 1))
            out.append("| " + " | ".join(cell(c) for c in row) + " |")
        out += [""] + [f"{n}" for n in self.notes]
        return "\n".join(out).rstrip() + "\n"

    def latex(self) -> str:
        def esc(t):
            t = str(t)
            for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                         ("±", r"$\pm$"), ("–", "--"), ("|", r"$|$"), ("Δ", r"$\Delta$"), ("†", r"$^\dagger$"),
                         ("≥", r"$\geq$"), ("I^3", r"$\mathbb{I}^3$")):
                t = t.replace(a, b)
            return t

        def cell(c):
            t, st = (c if isinstance(c, tuple) else (c, None))
            return rf"\textbf{{{esc(t)}}}" if st == "bold" else rf"\textit{{{esc(t)}}}" if st == "italic" else esc(t)

        n = len(self.header)
        out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{esc(self.title)}}}",
               rf"\label{{tab:{self.name}}}", r"\small", r"\begin{tabular}{l" + "c" * (n - 1) + "}", r"\toprule",
               " & ".join(esc(h) for h in self.header) + r" \\", r"\midrule"]
        secs = dict(self.sections)
        for i, row in enumerate(self.rows):
            if i in secs:
                if i:
                    out.append(r"\midrule")
                out.append(rf"\multicolumn{{{n}}}{{l}}{{\textit{{{esc(secs[i])}}}}} \\")
            out.append(" & ".join(cell(c) for c in row) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}"]
        if self.notes:
            out.append(r"\\[2pt]{\footnotesize " + esc(" ".join(self.notes)) + "}")
        out.append(r"\end{table}")
        return "\n".join(out) + "\n"


def _dense(runs) -> dict:
    """(model, dataset) -> accuracies of unpruned runs (sparsity 0 of any method, or 'dense')."""
    d = defaultdict(list)
    for r in runs:
        if r["sparsity"] == 0.0 and r["variant"] == "none":
            d[(r["model"], r["dataset"])].append(r["test_acc"])
    return d


def table6(runs) -> list[Table]:
    """Table 6 layout: one block per (model, dataset), methods x sparsities, mean ± std."""
    base = [r for r in runs if is_base(r) and r["sparsity"] > 0]
    if not base:
        return []
    dense = _dense(runs)
    t = Table("table6", "Top-1 accuracy (%) as mean ± std over seeds; best per column bold, second italic",
              ["Sparsity"])
    sps = sorted({r["sparsity"] for r in base})
    t.header = ["Method"] + [_pct(p) for p in sps]
    for (model, ds), block in _group(base, ("model", "dataset")).items():
        labels = _ordered(r["label"] for r in block)
        cells = {lab: {} for lab in labels}
        means = {}
        for (lab, p), rs in _group(block, ("label", "sparsity")).items():
            accs = [r["test_acc"] for r in rs]
            cells[lab][p] = _ms(accs)
            means[(lab, p)] = M.mean(accs)
        styles = {}
        for p in sps:
            ranks = M.rank_positions([means.get((lab, p), math.nan) for lab in labels])
            for lab, rk in zip(labels, ranks):
                styles[(lab, p)] = "bold" if rk == 0 else "italic" if rk == 1 and len(labels) > 2 else None
        seeds = sorted({r["seed"] for r in block})
        title = f"{model} + {ds} ({len(seeds)} seed{'s' if len(seeds) != 1 else ''})"
        if dense.get((model, ds)):
            title += f"; dense {_ms(dense[(model, ds)])}"
        t.sections.append((len(t.rows), title))
        for lab in labels:
            t.rows.append([lab] + [(cells[lab].get(p, "–"), styles.get((lab, p))) for p in sps])
    return [t]


def table1(runs) -> list[Table]:
    """Table 1 layout: rows = methods, columns = (model, dataset, sparsity), mean accuracy."""
    base = [r for r in runs if is_base(r)]
    pruned = [r for r in base if r["sparsity"] > 0]
    if not pruned:
        return []
    cols = sorted({(r["model"], r["dataset"], r["sparsity"]) for r in pruned},
                  key=lambda c: (c[0], c[1], c[2]))
    t = Table("table1", "Top-1 accuracy (%) at the indicated budgets (mean over seeds)",
              ["Method"] + [f"{m} {d} {_pct(p)}" for m, d, p in cols])
    dense = _dense(runs)
    if dense:
        t.rows.append(["Unpruned baseline"] + [_fmt(M.mean(dense.get((m, d), []))) for m, d, _ in cols])
    g = _group(pruned, ("label", "model", "dataset", "sparsity"))
    labels = _ordered(r["label"] for r in pruned)
    means = {(lab, c): M.mean(r["test_acc"] for r in g.get((lab, *c), [])) for lab in labels for c in cols}
    best = {c: max((means[(lab, c)] for lab in labels if not math.isnan(means[(lab, c)])), default=math.nan)
            for c in cols}
    for lab in labels:
        t.rows.append([lab] + [(_fmt(means[(lab, c)]), "bold" if means[(lab, c)] == best[c] else None) for c in cols])
    return [t]


def table2_dti(runs) -> list[Table]:
    """Table 2: DTI(src -> tgt, p) per target dataset (mean over sources, paired by seed)."""
    xfer = [r for r in runs if r["variant"] == "none" and r["mask_seed"] == r["seed"] and r["mask_dataset"] != r["dataset"]]
    if not xfer:
        return []
    own = {(r["model"], r["dataset"], r["label"], r["sparsity"], r["seed"]): r["test_acc"]
           for r in runs if is_base(r)}
    targets = sorted({r["dataset"] for r in xfer})
    t = Table("table2_dti", "Mask transfer across datasets (DTI, Def. 1, in accuracy points; lower is better, "
              "near 0 = transfer)", ["Model", "Method", "p"] + targets + ["Mean", "Worst |DTI|"])
    per = defaultdict(lambda: defaultdict(list))
    for r in xfer:
        key = (r["model"], r["dataset"], r["label"], r["sparsity"], r["seed"])
        if key in own:
            per[(r["model"], r["label"], r["sparsity"])][r["dataset"]].append(M.dti(r["test_acc"], own[key]))
    for (model, lab, p), by_tgt in sorted(per.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
        vals = {d: M.mean(v) for d, v in by_tgt.items()}
        s = M.dti_summary(list(vals.values()))
        t.rows.append([model, lab, f"{p:.2f}"] + [_fmt(vals.get(d)) for d in targets] + [_fmt(s["mean"]),
                                                                                       _fmt(s["worst_abs"])])
    t.notes.append("DTI = R(tgt | M_src) - R(tgt | M_tgt) with R = 100 - top-1 accuracy; per target, the mean over "
                   "source datasets and seeds (paired by seed). For a data-free method the source and target masks "
                   "coincide on all shared layers, so its DTI measures retraining noise.")
    return [t]


def table3_budget(runs, families) -> list[Table]:
    """Table 3: one saliency per (model, seed) re-thresholded to every sparsity."""
    base = [r for r in runs if is_base(r) and r["sparsity"] > 0]
    g = _group(base, ("model", "dataset", "label"))
    rows = []
    dense = _dense(runs)
    sps = sorted({r["sparsity"] for r in base})
    for (model, ds, lab), rs in g.items():
        if len({r["sparsity"] for r in rs}) < 2:
            continue
        fams_per_seed = max(len({r["family"] for r in rs if r["seed"] == s}) for s in {r["seed"] for r in rs})
        by_p = _group(rs, ("sparsity",))
        rows.append([model, ds, lab, _fmt(M.mean(dense.get((model, ds), [])))] +
                    [_ms([r["test_acc"] for r in by_p.get((p,), [])]) for p in sps] + [str(fams_per_seed)])
    if not rows:
        return []
    t = Table("table3_budget", "Mask transfer across sparsity levels: top-1 accuracy (%), saliency computed once per "
              "(model, seed) and re-thresholded to each sparsity", ["Model", "Dataset", "Method", "Unpruned"] +
              [_pct(p) for p in sps] + ["Saliencies / seed"], rows)
    t.notes.append("'Saliencies / seed' counts the distinct saliency families used across all sparsities of one seed "
                   "(1 = once-only: every budget re-thresholds the same scores; methods whose scores depend on the "
                   "budget, e.g. iterative SynFlow, need one per sparsity).")
    return [t]


def i3_rows(runs):
    """{(model, dataset, label, p): (acc_self {seed: acc}, acc_cross {(mask_seed, init_seed): acc})}."""
    out = {}
    cross = [r for r in runs if r["variant"] == "none" and r["mask_dataset"] == r["dataset"] and r["mask_seed"] != r["seed"]]
    keys = {(r["model"], r["dataset"], r["label"], r["sparsity"]) for r in cross}
    for key in keys:
        sel = lambda r: (r["model"], r["dataset"], r["label"], r["sparsity"]) == key  # noqa: E731
        self_ = defaultdict(list)
        xs = defaultdict(list)
        for r in runs:
            if not sel(r) or r["variant"] != "none" or r["mask_dataset"] != r["dataset"]:
                continue
            if r["mask_seed"] == r["seed"]:
                self_[r["seed"]].append(r["test_acc"])
            else:
                xs[(r["mask_seed"], r["seed"])].append(r["test_acc"])
        out[key] = ({s: M.mean(v) for s, v in self_.items()}, {k: M.mean(v) for k, v in xs.items()})
    return out


def table4_i3(runs) -> list[Table]:
    data = i3_rows(runs)
    if not data:
        return []
    t = Table("table4_i3", "Initialization-Independence Index I^3 (Def. 2): true cross-seed transfer (mask of seed s "
              "on the initialization of seed s') beside the paper's leave-one-out proxy",
              ["Seed", "Acc_self", "Acc_xseed (true)", "Δ (true)", "Acc_xseed† (proxy)", "Δ†"])
    for (model, ds, lab, p), (acc_self, acc_cross) in sorted(data.items()):
        seeds = sorted(acc_self)
        per = M.i3_per_seed(acc_self, acc_cross)
        selfs = [acc_self[s] for s in seeds]
        loo = M.loo_means(selfs)
        gaps = M.proxy_gaps(selfs)
        t.sections.append((len(t.rows), f"{model} + {ds}, {lab}, p = {p:.2f}"))
        for s, lo, gp in zip(seeds, loo, gaps):
            t.rows.append([str(s), _fmt(acc_self[s]), _fmt(per[s]["acc_xseed"]), _fmt(per[s]["gap"]), _fmt(lo),
                           _fmt(gp)])
        t.rows.append(["Mean ± std", _ms(selfs), _ms([per[s]["acc_xseed"] for s in seeds
                                                      if not math.isnan(per[s]["acc_xseed"])]),
                       f"I^3 = {_fmt(M.i3_true(acc_self, acc_cross))}", "",
                       f"mean |Δ†| = {_fmt(M.i3_proxy(selfs))}"])
    t.notes.append("Acc_xseed (true) is the mean accuracy of seed s's mask trained from the other seeds' "
                   "initializations; Δ = Acc_self - Acc_xseed; I^3 = mean_s [R_self - R_xseed] with R = 100 - acc "
                   "(= -mean Δ). The proxy Acc_xseed† is the leave-one-out mean of the other seeds' Acc_self (the "
                   "paper's Table 4); its signed mean gap is 0 by construction, hence mean |Δ†|.")
    return [t]


def _time_by_label(runs, families) -> dict:
    fam_time = {f["key"]: f["score_time_s"] for f in families}
    out = defaultdict(lambda: {"score": [], "calib": []})
    for r in runs:
        if not is_base(r) or r["sparsity"] <= 0:
            continue
        key = (r["model"], r["label"])
        st = fam_time.get(r["family"], r.get("score_time_s"))
        out[key]["fams"] = out[key].get("fams", {})
        if st is not None:
            out[key]["fams"][r["family"]] = st
        if r.get("calib_time_s") is not None:
            out[key]["calib"].append(r["calib_time_s"])
    for v in out.values():
        v["score"] = list(v.get("fams", {}).values())
    return out


def table8_time(runs, families) -> list[Table]:
    base = [r for r in runs if is_base(r) and r["sparsity"] > 0]
    if not base:
        return []
    times = _time_by_label(runs, families)
    sps = sorted({r["sparsity"] for r in base})
    t = Table("table8_time", "Accuracy (%) and pruning time (s) per method", ["Model", "Dataset", "Method"] +
              [_pct(p) for p in sps] + ["Scoring time (s)", "Calibration (s)"])
    for (model, ds), block in _group(base, ("model", "dataset")).items():
        labels = _ordered(r["label"] for r in block)
        g = _group(block, ("label", "sparsity"))
        means = {(lab, p): M.mean(r["test_acc"] for r in g.get((lab, p), [])) for lab in labels for p in sps}
        best = {p: max((means[(lab, p)] for lab in labels if not math.isnan(means[(lab, p)])), default=None)
                for p in sps}
        for lab in labels:
            tm = times.get((model, lab), {"score": [], "calib": []})
            t.rows.append([model, ds, lab] + [(_fmt(means[(lab, p)]), "bold" if means[(lab, p)] == best[p] else None)
                                              for p in sps] + [_fmt(M.mean(tm["score"]), 3),
                                                               _fmt(M.mean(tm["calib"]), 4)])
    t.notes.append("Scoring time: computing the saliency once (mean over seeds); calibration: re-thresholding it to "
                   "one sparsity (mean over runs). For YOPO the scoring is paid once for every budget.")
    return [t]


def table_sanity(runs) -> list[Table]:
    variants = [r for r in runs if r["variant"] != "none"]
    if not variants:
        return []
    pool = [r for r in runs if r["mask_seed"] == r["seed"] and r["mask_dataset"] == r["dataset"] and r["sparsity"] > 0]
    vs = [v for v in ("none", "shuffle", "reinit", "invert") if any(r["variant"] == v for r in pool)]
    t = Table("sanity", "Sanity checks (Su et al. 2020; Ma et al. 2021): top-1 accuracy (%) of the method's mask vs "
              "layerwise-shuffled masks, re-initialized weights and inverted scores (Δ vs original)",
              ["Model", "Dataset", "Method", "p"] + vs)
    g = _group(pool, ("model", "dataset", "label", "sparsity", "variant"))
    lab_order = _ordered(r["label"] for r in pool)
    keys = sorted(set((r["model"], r["dataset"], r["label"], r["sparsity"]) for r in pool),
                  key=lambda k: (k[0], k[1], lab_order.index(k[2]), k[3]))
    for model, ds, lab, p in keys:
        orig = M.mean(r["test_acc"] for r in g.get((model, ds, lab, p, "none"), []))
        row = [model, ds, lab, _pct(p)]
        for v in vs:
            accs = [r["test_acc"] for r in g.get((model, ds, lab, p, v), [])]
            cell = _ms(accs)
            if v != "none" and accs and not math.isnan(orig):
                cell += f" (Δ {M.mean(accs) - orig:+.2f})"
            row.append(cell)
        t.rows.append(row)
    t.notes.append("A method passes when its controls lose accuracy; equal accuracy under 'shuffle' means only the "
                   "per-layer ratios matter (Su et al. 2020).")
    return [t]


# ----------------------------------------------------------------------------------------------
# figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir: Path, name: str, formats=FIG_FORMATS) -> list[str]:
    from .io import atomic_path

    paths = []
    for ext in formats:
        p = out_dir / f"{name}.{ext}"
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=ext, bbox_inches="tight", dpi=150)
        paths.append(p.name)
    _plt().close(fig)
    return paths


def fig2_acc_vs_sparsity(runs, out_dir: Path, formats=FIG_FORMATS) -> list[str]:
    base = [r for r in runs if is_base(r) and r["sparsity"] > 0]
    if not base:
        return []
    plt = _plt()
    blocks = _group(base, ("model", "dataset"))
    fig, axes = plt.subplots(1, len(blocks), figsize=(5.2 * len(blocks), 3.8), squeeze=False)
    for ax, ((model, ds), rs) in zip(axes[0], blocks.items()):
        for lab in _ordered(r["label"] for r in rs):
            g = _group([r for r in rs if r["label"] == lab], ("sparsity",))
            ps = sorted(p for (p,) in g)
            ms = [M.mean(r["test_acc"] for r in g[(p,)]) for p in ps]
            ss = [M.std([r["test_acc"] for r in g[(p,)]]) for p in ps]
            x = [100 * p for p in ps]
            line, = ax.plot(x, ms, marker="o", ms=3, label=lab, ls="--" if "-L" in lab else "-")
            ax.fill_between(x, [m - s for m, s in zip(ms, ss)], [m + s for m, s in zip(ms, ss)],
                            color=line.get_color(), alpha=0.2)
        ax.set_title(f"{model} / {ds}")
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle("Accuracy vs sparsity (mean ± std over seeds)")
    return _save(fig, out_dir, "fig2_acc_vs_sparsity", formats)


def fig4_mad_vs_std(runs, out_dir: Path, formats=FIG_FORMATS) -> list[str]:
    """Fig. 4: MAD vs STD thresholding of the same method/mode, one point per sparsity."""
    base = [r for r in runs if is_base(r) and r["sparsity"] > 0]
    g = _group(base, ("model", "dataset", "method", "mode", "robust", "sparsity"))
    pairs = defaultdict(list)
    for (model, ds, meth, mode, rob, p), rs in g.items():
        if rob == "mad" and (model, ds, meth, mode, "std", p) in g:
            std_rs = g[(model, ds, meth, mode, "std", p)]
            pairs[(model, ds, meth, mode)].append((p, M.mean(r["test_acc"] for r in rs),
                                                   M.mean(r["test_acc"] for r in std_rs)))
    if not pairs:
        return []
    plt = _plt()
    fig, axes = plt.subplots(2, len(pairs), figsize=(4.5 * len(pairs), 7), squeeze=False)
    for i, ((model, ds, meth, mode), pts) in enumerate(sorted(pairs.items())):
        pts.sort()
        ax = axes[0][i]
        xs, ys = [s for _, _, s in pts], [m for _, m, _ in pts]
        ax.scatter(xs, ys)
        for p, m, s in pts:
            ax.annotate(_pct(p), (s, m), fontsize=7, xytext=(3, 3), textcoords="offset points")
        lo, hi = min(xs + ys) - 1, max(xs + ys) + 1
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("STD threshold accuracy (%)")
        ax.set_ylabel("MAD threshold accuracy (%)")
        ax.set_title(f"{meth}-{mode} {model}/{ds}")
        ax2 = axes[1][i]
        ax2.bar([_pct(p) for p, _, _ in pts], [m - s for _, m, s in pts])
        ax2.axhline(0, color="k", lw=0.8)
        ax2.set_ylabel("Δ = MAD - STD (points)")
        ax2.set_xlabel("sparsity")
    fig.suptitle("MAD vs STD thresholding (points above y = x favour MAD)")
    return _save(fig, out_dir, "fig4_mad_vs_std", formats)


def fig8_mask_time(runs, families, out_dir: Path, formats=FIG_FORMATS) -> list[str]:
    times = _time_by_label(runs, families)
    if not times:
        return []
    plt = _plt()
    keys = sorted(times)
    labels = [f"{lab}\n{model}" if len({m for m, _ in keys}) > 1 else lab for model, lab in keys]
    score = [M.mean(times[k]["score"]) for k in keys]
    calib = [M.mean(times[k]["calib"]) for k in keys]
    score = [0.0 if math.isnan(v) else v for v in score]
    calib = [0.0 if math.isnan(v) else v for v in calib]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(keys)), 3.6))
    ax.bar(labels, score, label="scoring (once)")
    ax.bar(labels, calib, bottom=score, label="calibration (per sparsity)")
    ax.set_ylabel("seconds")
    tot = [a + b for a, b in zip(score, calib) if a + b > 0]
    if tot and max(tot) / min(tot) > 50:
        ax.set_yscale("log")
    ax.set_title("Mask computation time per method")
    ax.legend(fontsize=7)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right", fontsize=7)
    return _save(fig, out_dir, "fig8_mask_time", formats)


def fig_sanity(runs, out_dir: Path, formats=FIG_FORMATS) -> list[str]:
    pool = [r for r in runs if r["mask_seed"] == r["seed"] and r["mask_dataset"] == r["dataset"] and r["sparsity"] > 0]
    if not any(r["variant"] != "none" for r in pool):
        return []
    plt = _plt()
    vs = [v for v in ("none", "shuffle", "reinit", "invert") if any(r["variant"] == v for r in pool)]
    groups = _ordered((r["label"], r["sparsity"]) for r in pool)
    g = _group(pool, ("label", "sparsity", "variant"))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(groups) * len(vs) / 2), 3.6))
    w = 0.8 / len(vs)
    for j, v in enumerate(vs):
        ms = [M.mean(r["test_acc"] for r in g.get((lab, p, v), [])) for lab, p in groups]
        ss = [M.std([r["test_acc"] for r in g.get((lab, p, v), [])]) for lab, p in groups]
        ax.bar([i + j * w for i in range(len(groups))], ms, w, yerr=ss, label=v)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(groups))], [f"{lab}\n{_pct(p)}" for lab, p in groups],
                  fontsize=7)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Sanity checks: original vs shuffled / reinitialized / inverted")
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "fig_sanity", formats)


def layer_sparsity_profile(scores: dict, sparsities, modes=("global", "local"), robust: str = "mad") -> dict:
    """{mode: [[layer sparsity for each layer] for each target sparsity]} from one saliency."""
    from .calibrate import mort

    out = {}
    for mode in modes:
        out[mode] = [list(mort(scores, p, mode=mode, robust=robust).layer_sparsity().values()) for p in sparsities]
    return out


def fig_layer_sparsity(scores: dict, sparsities, out_dir: Path, title: str = "", formats=FIG_FORMATS) -> list[str]:
    """Fig. 1b (heatmaps, YOPO-L vs YOPO-G) and Fig. 5 (per-layer profiles, L solid, G dashed)."""
    plt = _plt()
    prof = layer_sparsity_profile(scores, sparsities)
    names = list(scores)
    n = len(names)
    fig, axes = plt.subplots(1, 2, figsize=(max(11, 0.35 * n * 2), 3.8), squeeze=False, layout="constrained")
    for ax, (mode, lab) in zip(axes[0], (("local", "YOPO-L"), ("global", "YOPO-G"))):
        im = ax.imshow([[100 * v for v in row] for row in prof[mode]], aspect="auto", cmap="viridis", vmin=0, vmax=100)
        ax.set_yticks(range(len(sparsities)), [_pct(p) for p in sparsities])
        ax.set_xticks(range(n), [f"f.{i}" for i in range(n)], fontsize=6, rotation=90)
        ax.set_xlabel("layer")
        ax.set_ylabel("target sparsity")
        ax.set_title(f"{lab}: % pruned per layer")
        fig.colorbar(im, ax=ax, fraction=0.04)
    fig.suptitle(f"Layerwise sparsity allocation {title}")
    paths = _save(fig, out_dir, "fig1b_layer_sparsity", formats)
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * n), 3.8))
    cmap = plt.get_cmap("plasma")
    for i, p in enumerate(sparsities):
        c = cmap(i / max(1, len(sparsities) - 1) * 0.9)
        ax.plot(range(n), [100 * v for v in prof["local"][i]], "-", color=c, label=f"L {_pct(p)}")
        ax.plot(range(n), [100 * v for v in prof["global"][i]], "--", color=c, label=f"G {_pct(p)}")
    ax.set_xticks(range(n), [f"f.{i}" for i in range(n)], fontsize=6, rotation=90)
    ax.set_ylabel("% pruned")
    ax.set_title(f"YOPO-L (solid) vs YOPO-G (dashed) per-layer sparsity {title}")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    paths += _save(fig, out_dir, "fig5_layer_profile", formats)
    return paths


def fig3b_saliency_ranks(model_name: str, num_classes: int, seed: int, ranks, out_dir: Path, iters: int = 200,
                         formats=FIG_FORMATS, max_points: int = 20000, model_opts: dict | None = None) -> list[str]:
    """Fig. 3b: per-layer YOPO saliency distributions for several NMF ranks (one init)."""
    import torch

    from .registry import score
    from .sweep import build_model

    model = build_model(model_name, num_classes, seed, model_opts=model_opts)
    per_rank = {}
    for k in ranks:
        s = score(model, "yopo", seed=seed, rank=int(k), iters=int(iters))
        per_rank[k] = {n: v.flatten() for n, v in s.items()}
    names = list(next(iter(per_rank.values())))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(7, 0.45 * len(names) * max(1, len(ranks) / 2)), 4))
    w = 0.8 / len(ranks)
    g = torch.Generator().manual_seed(0)
    for j, k in enumerate(ranks):
        data = []
        for n in names:
            v = per_rank[k][n]
            if v.numel() > max_points:
                v = v[torch.randperm(v.numel(), generator=g)[:max_points]]
            data.append(v.numpy())
        bp = ax.boxplot(data, positions=[i + j * w for i in range(len(names))], widths=w * 0.9, showfliers=False,
                        patch_artist=True)
        color = plt.get_cmap("tab10")(j)
        for b in bp["boxes"]:
            b.set_facecolor(color)
            b.set_alpha(0.6)
        ax.plot([], [], color=color, lw=6, alpha=0.6, label=f"rank {k}")
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(names))], [f"f.{i}" for i in range(len(names))], fontsize=6,
                  rotation=90)
    ax.set_ylabel("saliency |  |W| - VH |")
    ax.set_title(f"YOPO saliency per layer for NMF ranks {list(ranks)} ({model_name}, T = {iters})")
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "fig3b_saliency_ranks", formats)


# ----------------------------------------------------------------------------------------------
# the report


def _profile_scores(runs, families, model: str | None, num_classes: int | None, seed: int, iters: int):
    """Saliency for the layer profiles: a cached YOPO family of the sweep when there is one, else
    computed now for ``model``. Returns (scores, model, num_classes, model_opts, note)."""
    from .family import Family

    for f in families:
        if f["method"] == "yopo" and (model is None or f["model"] == model) and Path(f["path"]).exists():
            fam = Family.load(f["path"])
            st = f.get("settings") or {}
            return (fam.scores, f["model"], st.get("num_classes") or fam.meta.get("num_classes") or 10,
                    st.get("model_opts"), f"(cached family {f['key']})")
    model = model or (runs[0]["model"] if runs else None)
    if model is None:
        return None, None, None, None, ""
    from .registry import score
    from .sweep import build_model, model_kwargs

    nc = num_classes or 10
    opts = {}
    ds = next((r["dataset"] for r in runs if r["model"] == model), None)
    if ds is not None:
        try:
            opts = model_kwargs(model, ds, {})
        except Exception:
            opts = {}
    m = build_model(model, nc, seed, model_opts=opts)
    return score(m, "yopo", seed=seed, iters=iters), model, nc, opts, f"(computed now, seed {seed}, T = {iters})"


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
          f"{len(runs)} finished runs from `{db_path}`.", ""]
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
             "no pair of runs differing only in robust = mad / std (e.g. methods yopo-G and yopo-G-std)"),
            ("fig8_mask_time", lambda: fig8_mask_time(runs, families, out, formats), "no timing data"),
            ("fig_sanity", lambda: fig_sanity(runs, out, formats), "no sanity variants")]
    if saliency_figures:
        scores, pmodel, nc, mopts, how = _profile_scores(runs, families, model, num_classes, seed, iters)
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
