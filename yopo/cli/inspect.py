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
    p.add_argument("--pattern", default=None, help="instead of --sparsity: the N:M mask (e.g. 2:4) re-thresholded "
                   "from the stored scores")
    p.add_argument("--nm-indivisible", default="error", choices=("error", "dense"),
                   help="with --pattern: a layer whose input dimension is not divisible by M is an error, or "
                   "left dense (default: error)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..core.family import Family
    from .prune import layer_table

    fam = Family.load(args.file)
    meta = {k: v for k, v in fam.meta.items() if k != "fingerprint"}
    n = sum(s.numel() for s in fam.scores.values())
    print(json.dumps(meta, indent=2, sort_keys=True))
    print(f"{len(fam.scores)} prunable layers, {n} weights, fingerprint {fam.meta['fingerprint']['hash']}")
    if args.pattern is not None:
        from ..core.nm import nm_calibrate
        if args.sparsity is not None:
            raise ValueError(f"--sparsity {args.sparsity} and --pattern {args.pattern} both set: the pattern fixes "
                             f"the sparsity; drop one")
        layer_table(nm_calibrate(fam, args.pattern, indivisible=args.nm_indivisible))
    elif args.sparsity is not None:
        layer_table(fam.calibrate(args.sparsity, mode=args.mode, robust=args.robust, min_keep=args.min_keep))
    return 0
