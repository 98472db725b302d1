"""Report tables from a sweep database: loading the runs (:func:`load_runs`), the table builders
(Tables 1, 2, 3, 4, 6, 8 and the sanity table) and :class:`Table` (markdown + LaTeX).

Libraries: the mean ± std aggregations are pandas ``groupby`` (:func:`summarize`) and the markdown
is tabulate's ``pipe`` format (aligned columns); both come with the ``report`` extra. The LaTeX
writer stays our own (30 lines): the paper's tables need booktabs rules, ``\\multicolumn`` section
rows and per-cell bold / italic, which tabulate's LaTeX formats do not express and pandas'
``Styler.to_latex`` would need more code (and jinja2) to configure than it replaces. The paper's
transfer metrics (DTI, I^3) are the small pure functions of ``yopo.experiment.metrics``."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .. import metrics as M
from ..store import ResultsDB


# ----------------------------------------------------------------------------------------------
# loading


def load_runs(db_path) -> tuple[list[dict], list[dict], dict]:
    """(done runs as flat dicts, families, meta) of a sweep database, opened read-only."""
    if not Path(db_path).exists():
        raise FileNotFoundError(f"results database {db_path} does not exist")
    with ResultsDB(db_path, readonly=True) as db:
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
            d["machine"] = res.get("machine")
            # test accuracy at each evaluated epoch: the training curves (convergence) figure
            d["curve"] = [(h["epoch"], h["test_acc"]) for h in res.get("history") or () if "test_acc" in h]
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
    return _ms_of(M.mean_std(vals), nd)


def _ms_of(stats, nd=2) -> str:
    """``mean ± std`` of a (mean, std, n) triple (just the mean for one value)."""
    if stats is None or not stats[2]:
        return "–"
    m, s, n = stats
    return f"{m:.{nd}f} ± {s:.{nd}f}" if n > 1 else f"{m:.{nd}f}"


def _pandas():
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("yopo report needs pandas and tabulate: pip install 'yopo[report]'") from None
    return pd


def summarize(runs, keys, value: str = "test_acc") -> dict[tuple, tuple[float, float, int]]:
    """{key tuple: (mean, sample std (ddof=1; 0 for one run), n)} of ``value`` over ``runs`` grouped
    by ``keys``, in first-seen order (a pandas ``groupby``)."""
    if not runs:
        return {}
    pd = _pandas()
    keys = list(keys)
    df = pd.DataFrame([{**{k: r[k] for k in keys}, "_v": float(r[value])} for r in runs])
    g = df.groupby(keys, sort=False, dropna=False)["_v"].agg(["mean", "std", "count"])
    out = {}
    for k, (m, sd, n) in zip(g.index, g.itertuples(index=False)):
        out[k if isinstance(k, tuple) else (k,)] = (float(m), 0.0 if n == 1 else float(sd), int(n))
    return out


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
        """GitHub markdown (tabulate's ``pipe`` format: aligned columns, first left, rest right)."""
        from tabulate import tabulate

        def cell(c):
            t, st = (c if isinstance(c, tuple) else (c, None))
            return f"**{t}**" if st == "bold" else f"*{t}*" if st == "italic" else str(t)

        secs = dict(self.sections)
        rows = []
        for i, row in enumerate(self.rows):
            if i in secs:
                rows.append([f"**{secs[i]}**"] + [""] * (len(self.header) - 1))
            rows.append([cell(c) for c in row])
        body = tabulate(rows, headers=self.header, tablefmt="pipe", disable_numparse=True,
                        colalign=("left",) + ("right",) * (len(self.header) - 1))
        out = [f"### {self.title}", "", body, ""] + [f"{n}" for n in self.notes]
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
    t = Table("table6", "Top-1 accuracy (%) as mean ± std over seeds, (rank of the method in its column); "
              "best per column bold, second italic", ["Sparsity"])
    sps = sorted({r["sparsity"] for r in base})
    t.header = ["Method"] + [_pct(p) for p in sps]
    for (model, ds), block in _group(base, ("model", "dataset")).items():
        labels = _ordered(r["label"] for r in block)
        cells = {lab: {} for lab in labels}
        means = {}
        for (lab, p), st in summarize(block, ("label", "sparsity")).items():
            cells[lab][p] = _ms_of(st)
            means[(lab, p)] = st[0]
        styles = {}
        for p in sps:
            ranks = M.rank_positions([means.get((lab, p), math.nan) for lab in labels])
            for lab, rk in zip(labels, ranks):
                styles[(lab, p)] = "bold" if rk == 0 else "italic" if rk == 1 and len(labels) > 2 else None
                if p in cells[lab] and not math.isnan(means.get((lab, p), math.nan)):
                    cells[lab][p] += f" ({rk + 1})"
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
    g = summarize(pruned, ("label", "model", "dataset", "sparsity"))
    labels = _ordered(r["label"] for r in pruned)
    means = {(lab, c): g[(lab, *c)][0] if (lab, *c) in g else math.nan for lab in labels for c in cols}
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
        by_p = summarize(rs, ("sparsity",))
        rows.append([model, ds, lab, _fmt(M.mean(dense.get((model, ds), [])))] +
                    [_ms_of(by_p.get((p,))) for p in sps] + [str(fams_per_seed)])
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
        g = summarize(block, ("label", "sparsity"))
        means = {(lab, p): g[(lab, p)][0] if (lab, p) in g else math.nan for lab in labels for p in sps}
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
