"""``yopo sweep CONFIG``: run (or resume) a sweep described by a JSON/TOML file."""
from __future__ import annotations


def add_parser(sub, name):
    p = sub.add_parser(name, help="run or resume a sweep (methods x sparsities x seeds x datasets x models)",
                       description="Run every run of the sweep CONFIG (JSON or TOML) that is not yet recorded as "
                       "done in OUT/results.sqlite. Saliency is computed once per (model, seed, method settings) "
                       "and re-thresholded for every sparsity. Interrupt at any time; rerunning resumes.")
    p.add_argument("config", help="sweep config (.json or .toml)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes of the local executor "
                   "(default: 1, in this process)")
    p.add_argument("--executor", default="local", choices=["local", "ray", "submitit"],
                   help="where runs execute: local (this machine, --workers processes), ray (a Ray cluster or a "
                   "local Ray instance), submitit (SLURM jobs; cluster=local for local processes); results go to "
                   "the same OUT/results.sqlite either way (docs/sweeps.md)")
    p.add_argument("--executor-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the ray/submitit executor, e.g. address=auto, num_cpus=2 (ray); cluster=slurm, "
                   "slurm_partition=gpu, timeout_min=120, gpus_per_node=1 (submitit); repeatable")
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

    from ..core.progress import get_logger
    from ..experiment.sweep import ResultsDB, SweepSpec, expand, load_config, run_sweep
    from ..experiment.sweep.execute import SweepFailed, SweepInterrupted
    from ..experiment.sweep.executors import check_options

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
    if args.executor == "local" and args.executor_opt:
        raise ValueError("--executor-opt is for --executor ray or submitit")
    options = {}
    for kv in args.executor_opt:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise ValueError(f"--executor-opt expects KEY=VALUE; got {kv!r}")
        options[k] = v
    check_options(args.executor, options)  # before a dry run too
    if args.dry_run:
        runs = expand(spec)
        db_path = Path(spec.out) / "results.sqlite"
        done = set()
        if db_path.exists():
            with ResultsDB(db_path, readonly=True) as db:  # a dry run writes nothing
                done = db.done_ids()
        for r in runs:
            i = r.identity
            print(f"{r.id} {'done' if r.id in done else 'todo'} {i['model']} {i['dataset']} {i['label']} "
                  f"p={i['sparsity']} seed={i['seed']} mask_seed={i['mask_seed']} mask_ds={i['mask_dataset']} "
                  f"variant={i['variant']} family={r.family_key}")
        print(f"{len(runs)} runs, {sum(r.id in done for r in runs)} done, "
              f"{len({r.family_key for r in runs})} saliency families")
        return 0
    log = get_logger("sweep")
    try:
        summary = run_sweep(spec, workers=args.workers, fail_fast=args.fail_fast, limit=args.limit,
                            executor=args.executor, executor_options=options)
    except SweepInterrupted as e:
        s = e.summary
        log.warning(f"interrupted: {s.done} runs recorded done and {s.failed} failed in this invocation; runs in "
                    f"flight were stopped and not recorded. Rerun the same command to resume.")
        return 130
    except SweepFailed as e:
        log.error(f"stopped (--fail-fast): {e}")
        return 1
    print(summary)
    return 1 if summary.failed else 0
