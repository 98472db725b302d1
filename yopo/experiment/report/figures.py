"""Report figures (PNG + PDF): accuracy vs sparsity (Fig. 2), MAD vs STD (Fig. 4), mask time
(Fig. 8), sanity checks, and from a model's saliency: layerwise sparsity (Figs. 1b, 5) and the
saliency distributions per NMF rank (Fig. 3b)."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from .. import metrics as M
from .tables import _group, _ordered, _pct, _time_by_label, is_base

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
    from ...core.calibration import mort

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
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(names))], [f"f.{i}" for i in range(len(names))], fontsize=6,
                  rotation=90)
    ax.set_ylabel("saliency |  |W| - VH |")
    ax.set_title(f"YOPO saliency per layer for NMF ranks {list(ranks)} ({model_name}, T = {iters})")
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "fig3b_saliency_ranks", formats)
