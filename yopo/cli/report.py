"""``yopo report DB --out DIR``: the paper's tables and figures from a sweep database."""
from __future__ import annotations

from dataclasses import MISSING, dataclass

from ..core.config import add_dataclass_args, from_args, opt, validate_fields

FORMATS = ("png", "pdf", "svg")


def _check_sparsities(name: str, value) -> None:
    from ..core.validate import check_sparsity

    for v in value:
        check_sparsity(v, f"{name} entry")


@dataclass(frozen=True)
class ReportArgs:
    db: str = opt(MISSING, "results.sqlite of a sweep (or its folder)", positional=True)
    out: str = opt(MISSING, "output folder")
    model: str | None = opt(None, "model for the saliency figures (default: the sweep's)")
    num_classes: int | None = opt(None, "classes of that model (default 10)", low=1)
    seed: int = opt(0, "initialization seed of the saliency figures", low=0)
    ranks: tuple[int, ...] = opt((2, 4, 7, 10), "NMF ranks of Fig. 3b", low=1)
    iters: int = opt(200, "NMF steps for saliency computed by the report", low=1)
    profile_sparsities: tuple[float, ...] = opt((0.5, 0.7, 0.8, 0.9, 0.95, 0.98), "target sparsities of the layer "
                                                "profiles (Figs. 1b, 5), besides every sparsity of the sweep",
                                                check=_check_sparsities)
    formats: tuple[str, ...] = opt(("png", "pdf"), "figure formats", FORMATS)
    saliency_figures: bool = opt(True, "draw Figs. 1b, 3b, 5 (they compute saliency)")

    def __post_init__(self):
        validate_fields(self)


def add_parser(sub, name):
    p = sub.add_parser(name, help="tables (markdown + LaTeX) and figures (PNG + PDF) from a sweep database",
                       description="Write Tables 1, 2, 3, 4, 6, 8 and the sanity-check table, and Figs. 1b, 2, "
                       "3b, 4, 5 and the mask-time bars, as far as the runs in DB allow; README.md in DIR lists "
                       "what was produced and why anything was skipped. Accuracies are in percent.")
    add_dataclass_args(p, ReportArgs)
    p.set_defaults(run=run)


def run(args) -> int:
    from pathlib import Path

    from ..experiment.report import build_report

    a = from_args(ReportArgs, args)
    db = Path(a.db)
    if db.is_dir():
        db = db / "results.sqlite"
    try:
        made = build_report(db, a.out, model=a.model, num_classes=a.num_classes, seed=a.seed, ranks=a.ranks,
                            iters=a.iters, profile_sparsities=a.profile_sparsities, formats=a.formats,
                            saliency_figures=a.saliency_figures)
    except ImportError as e:  # the optional 'report' extra (matplotlib, pandas, tabulate) is missing
        raise ValueError(f"{e}; the report needs: pip install 'yopo[report]'") from None
    print(f"wrote {len(made['tables'])} table files and {len(made['figures'])} figure files to {a.out}")
    for k, v in made["skipped"].items():
        print(f"  skipped {k}: {v}")
    return 0
