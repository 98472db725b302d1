"""PaI benchmark on CIFAR-10 that fits a 2-core CPU in under an hour.

ResNet-20 on a class-balanced 10k subset of CIFAR-10 (``../shared/data/cifar10-jpg`` relative to
the repository root), a short cosine recipe (SGD 0.9, lr 0.1, batch 128, wd 5e-4, the paper's
crop + flip augmentation), tested on the full 10k test set; methods YOPO-G, YOPO-L, random
(within-layer), magnitude, SNIP, GraSP, SynFlow at 90% and 98% sparsity, 2 seeds = 28 runs.

It is a ``yopo sweep`` (SQLite results + resume: interrupt and rerun at will; the YOPO saliency is
computed once per seed and re-thresholded for both budgets and both calibrations), followed by
``yopo report`` into the same folder (tables *.md/*.tex, figures *.png/*.pdf, README.md).

    python benchmarks/pai_cifar10.py                 # the full benchmark (28 runs + 2 dense)
    python benchmarks/pai_cifar10.py --quick         # end-to-end check in a few minutes
    python benchmarks/pai_cifar10.py --report-only   # tables and figures from the database

Results: ``benchmarks/results/pai_cifar10/`` (``--quick``: ``.../quick/``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ["yopo-G", "yopo-L", "random", "magnitude", "snip", "grasp", "synflow"]
# Measured on this 2-core CPU (ResNet-20, batch 128, 1 thread, CPU time of a contended machine ~=
# wall time of an idle one): 0.55 s per training step -> ~43 s per epoch of 10k images, ~17 s per
# pass over the 10k test images. Two worker processes with one thread each (2 threads in one
# process spin badly when the cores are shared): 3 epochs + 1 test ~ 2.6 min per run, 28 runs on
# 2 workers ~ 35-40 min including scoring (SynFlow: 100 rounds per budget).
DEFAULT_EPOCHS = 3
SOLVER_PASSES = {"amu": 20, "hals": 10}
DEFAULT_WORKERS = 2


def build_config(args) -> dict:
    data_root = args.data_root or str((ROOT / ".." / "shared" / "data" / "cifar10-jpg").resolve())
    quick = args.quick
    epochs = args.epochs or (1 if quick else DEFAULT_EPOCHS)
    train = {"data_root": data_root, "subset": args.subset or (1000 if quick else 10000), "subset_seed": 0,
             "epochs": epochs, "batch_size": 128, "lr": 0.1, "schedule": "cosine", "momentum": 0.9,
             "weight_decay": 5e-4, "recipe": "cifar", "device": "cpu", "amp": False, "progress": False,
             "eval_every": epochs,  # test once, after the last epoch
             "checkpoint": True}    # a killed run resumes from its last epoch
    if quick:
        train["test_subset"] = args.test_subset or 1000
    elif args.test_subset:
        train["test_subset"] = args.test_subset
    methods = args.methods or (["yopo-G", "snip"] if quick else METHODS)
    if args.solver_ablation:  # issue 6: accuracy of the fast NMF solvers against the default MU,
        # each run for the passes over W at which it first reaches MU-200's objective on ResNet-20
        # (benchmarks/solvers.py: amu 20, hals 10), i.e. as used for speed
        methods = list(methods) + [{"label": f"yopo-G-{s}", "method": "yopo", "mode": "global",
                                    "opts": {"nmf_solver": s, "iters": n}} for s, n in SOLVER_PASSES.items()]
    return {"name": "pai_cifar10" + ("_quick" if quick else ""), "out": str(args.out), "models": ["resnet20"],
            "datasets": ["cifar10"], "methods": methods, "sparsities": args.sparsities or [0.9, 0.98],
            "seeds": args.seeds or ([0] if quick else [0, 1]), "variants": ["none"], "runner": "train",
            "train": train, "dataset_settings": {"cifar10": {"num_classes": 10}}}


def portable(cfg: dict) -> dict:
    """The config as shipped: folders relative to the repository root (no absolute paths)."""
    import os

    rel = lambda p: os.path.relpath(p, ROOT) if os.path.isabs(p) else p  # noqa: E731
    return dict(cfg, out=rel(cfg["out"]), train=dict(cfg["train"], data_root=rel(cfg["train"]["data_root"])))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 1k train / 1k test images, 2 methods")
    p.add_argument("--out", type=Path, default=None, help="results folder")
    p.add_argument("--data-root", default=None, help="CIFAR-10 ImageFolder (default ../shared/data/cifar10-jpg)")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs per run (default {DEFAULT_EPOCHS})")
    p.add_argument("--subset", type=int, default=None, help="training images (class-balanced; default 10000)")
    p.add_argument("--test-subset", type=int, default=None, help="test images (default: all 10000)")
    p.add_argument("--methods", nargs="*", default=None, help=f"method labels (default {METHODS})")
    p.add_argument("--sparsities", type=float, nargs="*", default=None, help="default 0.9 0.98")
    p.add_argument("--seeds", type=int, nargs="*", default=None, help="default 0 1")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help=f"parallel runs, each with cpu_count/workers threads (default {DEFAULT_WORKERS})")
    p.add_argument("--solver-ablation", action="store_true",
                   help="also run YOPO-G with the fast NMF solvers (amu, hals) at the same budgets and seeds")
    p.add_argument("--report-only", action="store_true", help="only rebuild tables and figures")
    p.add_argument("--no-dense", dest="dense", action="store_false",
                   help="skip the unpruned baseline (one dense run per seed, the tables' 'dense' entries)")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = ROOT / "benchmarks" / "results" / "pai_cifar10" / ("quick" if args.quick else "")
    args.out = args.out.resolve()

    from yopo.core.io import write_json
    from yopo.experiment.report import build_report
    from yopo.experiment.sweep import SweepSpec, run_sweep

    cfg = build_config(args)
    db = args.out / "results.sqlite"
    t0 = time.time()
    if not args.report_only:
        write_json(args.out / "sweep.json", portable(cfg))
        if args.dense:  # unpruned baseline: sparsity 0 = every weight kept, same recipe and seeds
            dense = dict(cfg, name=cfg["name"] + "_dense", methods=["magnitude"], sparsities=[0.0])
            print(run_sweep(SweepSpec.from_dict(dense), workers=args.workers))
        summary = run_sweep(SweepSpec.from_dict(cfg), workers=args.workers)
        print(summary)
    made = build_report(db, args.out, model="resnet20", num_classes=10, seed=0, ranks=(2, 4, 7, 10),
                        iters=200, saliency_figures=True)
    print(f"report: {len(made['tables'])} table files, {len(made['figures'])} figure files in {args.out}")
    for k, v in made["skipped"].items():
        print(f"  skipped {k}: {v}")
    print(f"total {time.time() - t0:.0f} s; config in {args.out / 'sweep.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
