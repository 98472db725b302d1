"""``yopo report DB --out DIR``: the paper's tables and figures from a sweep database."""
from __future__ import annotations


def add_parser(sub, name):
    p = sub.add_parser(name, help="tables (markdown + LaTeX) and figures (PNG + PDF) from a sweep database",
                       description="Write Tables 1, 2, 3, 4, 6, 8 and the sanity-check table, and Figs. 1b, 2, "
                       "3b, 4, 5 and the mask-time bars, as far as the runs in DB allow; README.md in DIR lists "
                       "what was produced and why anything was skipped.")
    p.add_argument("db", help="results.sqlite of a sweep (or its folder)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", default=None, help="model for the saliency figures (default: the sweep's)")
    p.add_argument("--num-classes", type=int, default=None, help="classes of that model (default 10)")
    p.add_argument("--seed", type=int, default=0, help="initialization seed of the saliency figures")
    p.add_argument("--ranks", type=int, nargs="*", default=[2, 4, 7, 10], help="NMF ranks of Fig. 3b")
    p.add_argument("--iters", type=int, default=200, help="NMF steps for saliency computed by the report")
    p.add_argument("--profile-sparsities", type=float, nargs="*", default=[0.5, 0.7, 0.8, 0.9, 0.95, 0.98],
                   help="target sparsities of the layer profiles (Figs. 1b, 5), besides every sparsity of the sweep")
    p.add_argument("--formats", nargs="*", default=["png", "pdf"], choices=["png", "pdf", "svg"])
    p.add_argument("--no-saliency-figures", action="store_true", help="skip Figs. 1b, 3b, 5")
    p.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from ..experiment.report import build_report

    db = Path(args.db)
    if db.is_dir():
        db = db / "results.sqlite"
    try:
        made = build_report(db, args.out, model=args.model, num_classes=args.num_classes, seed=args.seed,
                            ranks=tuple(args.ranks), iters=args.iters,
                            profile_sparsities=tuple(args.profile_sparsities), formats=tuple(args.formats),
                            saliency_figures=not args.no_saliency_figures)
    except ImportError as e:  # the optional 'report' extra (matplotlib, pandas, tabulate) is missing
        raise ValueError(f"{e}; the report needs: pip install 'yopo[report]'") from None
    print(f"wrote {len(made['tables'])} table files and {len(made['figures'])} figure files to {args.out}")
    for k, v in made["skipped"].items():
        print(f"  skipped {k}: {v}")
    return 0
