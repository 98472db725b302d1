"""``yopo sweep CONFIG``: run (or resume) a sweep described by a JSON/TOML file."""
from __future__ import annotations


def add_parser(sub, name):
    p = sub.add_parser(name, help="run or resume a sweep (methods x sparsities x seeds x datasets x models)",
                       description="Run every run of the sweep CONFIG (JSON or TOML) that is not yet recorded as "
                       "done in OUT/results.sqlite. Saliency is computed once per (model, seed, method settings) "
                       "and re-thresholded for every sparsity. Interrupt at any time; rerunning resumes.")
    p.add_argument("config", help="sweep config (.json or .toml)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default: 1)")
    p.add_argument("--out", default=None, help="sweep folder (overrides the config's 'out')")
    p.add_argument("--runner", default=None, help="train | synthetic | module:function (overrides the config)")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failed run")
    p.add_argument("--limit", type=int, default=None, help="run at most this many new runs")
    p.add_argument("--dry-run", action="store_true", help="list the runs and what is done, run nothing")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a train setting, e.g. --set epochs=1 (JSON values; repeatable)")
    p.set_defaults(run=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from ..experiment.sweep import ResultsDB, SweepSpec, expand, load_config, run_sweep

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1; got {args.workers}")
    d = load_config(args.config)
    if args.out:
        d["out"] = args.out
    if args.runner:
        d["runner"] = args.runner
    for kv in args.set:
        k, sep, v = kv.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE; got {kv!r}")
        try:
            val = json.loads(v)
        except json.JSONDecodeError:
            val = v
        d.setdefault("train", {})[k] = val
    spec = SweepSpec.from_dict(d)
    if args.dry_run:
        runs = expand(spec)
        db_path = Path(spec.out) / "results.sqlite"
        done = set()
        if db_path.exists():
            with ResultsDB(db_path) as db:
                done = db.done_ids()
        for r in runs:
            i = r.identity
            print(f"{r.id} {'done' if r.id in done else 'todo'} {i['model']} {i['dataset']} {i['label']} "
                  f"p={i['sparsity']} seed={i['seed']} mask_seed={i['mask_seed']} mask_ds={i['mask_dataset']} "
                  f"variant={i['variant']} family={r.family_key}")
        print(f"{len(runs)} runs, {sum(r.id in done for r in runs)} done, "
              f"{len({r.family_key for r in runs})} saliency families")
        return 0
    summary = run_sweep(spec, workers=args.workers, fail_fast=args.fail_fast, limit=args.limit)
    print(summary)
    return 1 if summary.failed else 0
