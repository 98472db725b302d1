"""Report figures (PNG + PDF): accuracy vs sparsity (Fig. 2), MAD vs STD (Fig. 4), mask time
(Fig. 8), sanity checks, and from a model's saliency: layerwise sparsity (Figs. 1b, 5) and the
saliency distributions per NMF rank (Fig. 3b)."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from .. import metrics as M
from .tables import _dense, _group, _ordered, _pct, _time_by_label, is_base, summarize

FIG_FORMATS = ("png", "pdf")


def init_model(name: str, num_classes: int, seed: int, model_opts: dict | None = None):
    """The initialization a sweep family is computed from: ``yopo.models.build`` seeded with
    ``seed`` and the training default init (as ``yopo.experiment.sweep.build_model`` builds it)."""
    from ...models import build
    from ..train import TrainConfig

    return build(name, num_classes, init=TrainConfig().weight_init, seed=seed, **(model_opts or {}))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir: Path, name: str, formats=FIG_FORMATS) -> list[str]:
    from ...core.io import atomic_path

    paths = []
    for ext in formats:
        p = out_dir / f"{name}.{ext}"
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=ext, bbox_inches="tight", dpi=150)
        paths.append(p.name)
    _plt().close(fig)
    return paths


def _legend_union(fig, axes) -> None:
    """One legend right of the figure: the union of the panels' entries, once each, in the order
    first met over ``axes``."""
    handles, names = [], []
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="outside right center", fontsize=8)


def _density_axis(ax, sparsities) -> None:
    """x = -log10(1 - p): equal steps per decade of kept weights (90% -> 99% as far as 0% -> 90%),
    which keeps high sparsities apart; one tick per sparsity of the sweep."""
    ps = sorted(set(sparsities))
    ax.set_xticks([_density_x(p) for p in ps], [_pct(p) for p in ps])
    ax.set_xlabel("sparsity (log scale of kept weights)")


def _density_x(p: float) -> float:
    return -math.log10(max(1e-12, 1.0 - p))


def fig2_acc_vs_sparsity(runs, out_dir: Path, formats=FIG_FORMATS) -> list[str]:
    """Fig. 2: accuracy vs sparsity, one panel per (model, dataset), mean ± std over seeds as error
    bars at every sparsity of the sweep, the unpruned (dense) accuracy as a horizontal line."""
    base = [r for r in runs if is_base(r) and r["sparsity"] > 0]
    if not base:
        return []
    plt = _plt()
    blocks = _group(base, ("model", "dataset"))
    dense = _dense(runs)
    labels = _ordered(r["label"] for r in base)
    colors = {lab: plt.get_cmap("tab10")(i % 10) for i, lab in enumerate(labels)}
    fig, axes = plt.subplots(1, len(blocks), figsize=(5.6 * len(blocks) + 1.8, 4.0), squeeze=False,
                             layout="constrained")
    for ax, ((model, ds), rs) in zip(axes[0], blocks.items()):
        sps = sorted({r["sparsity"] for r in rs})
        labs = _ordered(r["label"] for r in rs)
        width = 0.06 * (_density_x(max(sps)) - _density_x(min(sps)) or 1.0)
        for j, lab in enumerate(labs):
            g = summarize([r for r in rs if r["label"] == lab], ("sparsity",))
            ps = sorted(p for (p,) in g)
            ms = [g[(p,)][0] for p in ps]
            ss = [g[(p,)][1] for p in ps]
            # methods side by side around each sparsity so that their error bars do not overlap
            x = [_density_x(p) + (j - (len(labs) - 1) / 2) * width / max(1, len(labs) - 1) for p in ps]
            yopo = lab.lower().startswith("yopo")
            ax.errorbar(x, ms, yerr=ss, marker="o" if yopo else "s", ms=4, capsize=2, lw=2.0 if yopo else 1.0,
                        ls="--" if "-L" in lab else "-", color=colors[lab], label=lab, alpha=0.95)
        if dense.get((model, ds)):
            m, sd, n = M.mean_std(dense[(model, ds)])
            ax.axhline(m, color="k", lw=1.2, ls=":", label=f"dense {m:.1f}" + (f" ± {sd:.1f}" if n > 1 else ""))
            if n > 1:
                ax.axhspan(m - sd, m + sd, color="k", alpha=0.07)
        _density_axis(ax, sps)
        seeds = len({r["seed"] for r in rs})
        ax.set_title(f"{model} / {ds} ({seeds} seed{'s' if seeds != 1 else ''})")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    _legend_union(fig, [axes[0][-1], *axes[0][:-1]])
    fig.suptitle("Accuracy vs sparsity (mean ± std over seeds)")
    return _save(fig, out_dir, "fig2_acc_vs_sparsity", formats)


def fig_training_curves(runs, out_dir: Path, formats=FIG_FORMATS) -> list[str]:
    """Test accuracy vs epoch, mean over seeds: one row of panels per (model, dataset), one panel
    per sparsity, the dense curve in every panel (black). Shows whether the dense net and each
    method have converged before the tables rank them (a flat end of the curve)."""
    base = [r for r in runs if r["variant"] == "none" and r.get("curve")
            and (r["sparsity"] == 0.0 or is_base(r))]
    sps = sorted({r["sparsity"] for r in base if r["sparsity"] > 0})
    if not base or not sps:
        return []
    plt = _plt()
    blocks = _group(base, ("model", "dataset"))
    labels = _ordered(r["label"] for r in base if r["sparsity"] > 0)
    colors = {lab: plt.get_cmap("tab10")(i % 10) for i, lab in enumerate(labels)}
    fig, axes = plt.subplots(len(blocks), len(sps), figsize=(4.2 * len(sps) + 1.8, 3.4 * len(blocks)),
                             squeeze=False, layout="constrained", sharey="row")

    def mean_curve(rs):
        by_epoch = defaultdict(list)
        for r in rs:
            for e, a in r["curve"]:
                by_epoch[e].append(a)
        es = sorted(by_epoch)
        return es, [sum(by_epoch[e]) / len(by_epoch[e]) for e in es], len(rs)

    for row, ((model, ds), rs) in zip(axes, blocks.items()):
        dense = [r for r in rs if r["sparsity"] == 0.0]
        for ax, p in zip(row, sps):
            if dense:
                es, ms, n = mean_curve(dense)
                ax.plot(es, ms, color="k", lw=1.6, label=f"dense ({n} run{'s' if n != 1 else ''})")
            for lab in labels:
                sel = [r for r in rs if r["label"] == lab and r["sparsity"] == p]
                if sel:
                    es, ms, n = mean_curve(sel)
                    ax.plot(es, ms, color=colors[lab], lw=1.0, marker=".", label=lab)
            ax.set_title(f"{model} / {ds}, {_pct(p)}")
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        row[0].set_ylabel("test accuracy (%)")
    _legend_union(fig, axes.flat)
    fig.suptitle("Training curves: test accuracy at each evaluated epoch (mean over seeds)")
    return _save(fig, out_dir, "fig_training_curves", formats)


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


def fig8_mask_time(runs, families, out_dir: Path, formats=FIG_FORMATS, machine: str = "") -> list[str]:
    """Fig. 8: scoring time (paid once per saliency) and calibration time (paid per sparsity) per
    method, side by side on a log axis (stacked bars would misstate the parts on a log axis), with
    the value on each bar; ``machine`` (the CPU the times come from) goes in the title."""
    times = _time_by_label(runs, families)
    if not times:
        return []
    plt = _plt()
    keys = sorted(times, key=lambda k: (k[0], -_nan0(M.mean(times[k]["score"]))))
    labels = [f"{lab}\n{model}" if len({m for m, _ in keys}) > 1 else lab for model, lab in keys]
    parts = [("scoring (once per saliency)", [M.mean(times[k]["score"]) for k in keys]),
             ("calibration (per sparsity)", [M.mean(times[k]["calib"]) for k in keys])]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.95 * len(keys) + 1.5), 4.0), layout="constrained")
    w = 0.4
    for j, (name, vals) in enumerate(parts):
        xs = [i + (j - 0.5) * w for i in range(len(keys))]
        ok = [(x, v) for x, v in zip(xs, vals) if not math.isnan(v) and v > 0]
        bars = ax.bar([x for x, _ in ok], [v for _, v in ok], w, label=name)
        for rect, (_, v) in zip(bars, ok):
            ax.annotate(_seconds(v), (rect.get_x() + rect.get_width() / 2, v), ha="center", va="bottom",
                        fontsize=6, xytext=(0, 1), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xticks(range(len(keys)), labels)
    ax.set_ylabel("seconds (log scale)")
    ax.set_title("Mask computation time per method" + (f"\n{machine}" if machine else ""), fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3, which="both")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right", fontsize=7)
    return _save(fig, out_dir, "fig8_mask_time", formats)


def _nan0(v: float) -> float:
    return 0.0 if math.isnan(v) else v


def _seconds(v: float) -> str:
    return f"{v:.2g} s" if v < 10 else f"{v:.0f} s"


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
    from ...core.calibration import mort

    out = {}
    for mode in modes:
        out[mode] = [list(mort(scores, p, mode=mode, robust=robust).layer_sparsity().values()) for p in sparsities]
    return out


def layer_labels(names) -> list[str]:
    """Axis labels of layers: the parameter names without the trailing ``.weight``."""
    return [n[: -len(".weight")] if n.endswith(".weight") else n for n in names]


def fig_layer_sparsity(scores: dict, sparsities, out_dir: Path, title: str = "", formats=FIG_FORMATS) -> list[str]:
    """Fig. 1b (heatmaps, YOPO-L vs YOPO-G) and Fig. 5 (per-layer profiles, L solid, G dashed), one
    row / line per target sparsity, layers named on the x axis in model order."""
    plt = _plt()
    sparsities = sorted(set(sparsities))
    prof = layer_sparsity_profile(scores, sparsities)
    names = list(scores)
    ticks = layer_labels(names)
    n = len(names)
    fig, axes = plt.subplots(1, 2, figsize=(max(11, 0.42 * n * 2), 4.6), squeeze=False, layout="constrained")
    for ax, (mode, lab) in zip(axes[0], (("local", "YOPO-L"), ("global", "YOPO-G"))):
        im = ax.imshow([[100 * v for v in row] for row in prof[mode]], aspect="auto", cmap="viridis", vmin=0, vmax=100)
        ax.set_yticks(range(len(sparsities)), [_pct(p) for p in sparsities])
        ax.set_xticks(range(n), ticks, fontsize=6, rotation=90)
        ax.set_ylabel("target sparsity")
        ax.set_title(f"{lab}: % of each layer pruned")
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.03, label="% pruned")
    fig.suptitle(f"Layerwise sparsity allocation {title}")
    paths = _save(fig, out_dir, "fig1b_layer_sparsity", formats)
    fig, ax = plt.subplots(figsize=(max(7, 0.34 * n + 2.5), 4.4), layout="constrained")
    cmap = plt.get_cmap("plasma")
    for i, p in enumerate(sparsities):
        c = cmap(i / max(1, len(sparsities) - 1) * 0.9)
        ax.plot(range(n), [100 * v for v in prof["local"][i]], "-", color=c, lw=1.0)
        ax.plot(range(n), [100 * v for v in prof["global"][i]], "--", color=c, lw=1.4, marker=".", ms=4,
                label=_pct(p))
    ax.plot([], [], "-", color="0.4", lw=1.0, label="YOPO-L (solid)")
    ax.plot([], [], "--", color="0.4", lw=1.4, label="YOPO-G (dashed)")
    ax.set_xticks(range(n), ticks, fontsize=6, rotation=90)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylabel("% of the layer pruned")
    ax.set_title(f"Per-layer sparsity, YOPO-L vs YOPO-G {title}", fontsize=10)
    fig.legend(fontsize=7, title="target sparsity", title_fontsize=7, loc="outside right center")
    ax.grid(alpha=0.3)
    paths += _save(fig, out_dir, "fig5_layer_profile", formats)
    return paths


def fig3b_saliency_ranks(model_name: str, num_classes: int, seed: int, ranks, out_dir: Path, iters: int = 200,
                         formats=FIG_FORMATS, max_points: int = 20000, model_opts: dict | None = None) -> list[str]:
    """Fig. 3b: per-layer YOPO saliency distributions for several NMF ranks (one init)."""
    import torch

    from ...core.registry import score

    model = init_model(model_name, num_classes, seed, model_opts)
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
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(names))], layer_labels(names), fontsize=6, rotation=90)
    ax.set_ylabel("saliency |  |W| - VH |")
    ax.set_title(f"YOPO saliency per layer for NMF ranks {list(ranks)} ({model_name}, T = {iters})")
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "fig3b_saliency_ranks", formats)
