"""``yopo inspect FILE``: show what a family artifact holds, optionally the mask at a sparsity."""
from __future__ import annotations

import json

from ..core.calibration import MODES, ROBUST


def add_parser(sub, name):
    p = sub.add_parser(name, help="describe a family artifact; with --sparsity, print that mask",
                       description="Print the provenance of a family artifact written by `yopo prune` and, "
                       "with --sparsity, the per-layer mask derived from it (no rescoring).")
    p.add_argument("file", help="family artifact (.safetensors)")
    p.add_argument("--sparsity", type=float, default=None, help="derive and describe the mask at this sparsity")
    p.add_argument("--mode", default="global", choices=MODES, help="calibration mode (default: global)")
    p.add_argument("--robust", default="mad", choices=ROBUST, help="threshold statistics (default: mad)")
    p.add_argument("--min-keep", type=int, default=1, help="entries kept per output row (default: 1)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..core.family import Family
    from ..core.validate import check_int, check_sparsity
    from .prune import layer_table

    if args.sparsity is not None:  # bad settings fail before the file is read
        check_sparsity(args.sparsity, "--sparsity")
    check_int("--min-keep", args.min_keep, 0)
    fam = Family.load(args.file)
    meta = {k: v for k, v in fam.meta.items() if k != "fingerprint"}
    n = sum(s.numel() for s in fam.scores.values())
    print(json.dumps(meta, indent=2, sort_keys=True))
    print(f"{len(fam.scores)} prunable layers, {n} weights, fingerprint {fam.meta['fingerprint']['hash']}")
    if args.sparsity is not None:
        layer_table(fam.calibrate(args.sparsity, mode=args.mode, robust=args.robust, min_keep=args.min_keep))
    return 0
