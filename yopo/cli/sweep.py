"""``yopo sweep CONFIG``: run (or resume) a sweep described by a JSON/TOML file."""
from __future__ import annotations

from dataclasses import MISSING, dataclass

from ..core.config import add_dataclass_args, from_args, opt, validate_fields


@dataclass(frozen=True)
class SweepArgs:
    config: str = opt(MISSING, "sweep config (.json or .toml)", positional=True)
    workers: int = opt(1, "parallel worker processes", low=1)
    out: str | None = opt(None, "sweep folder (overrides the config's 'out')")
    runner: str | None = opt(None, "train | synthetic | module:function (overrides the config)")
    fail_fast: bool = opt(False, "stop at the first failed run")
    limit: int | None = opt(None, "run at most this many new runs", low=0)
    dry_run: bool = opt(False, "list the runs and what is done, run nothing")
    set: tuple[str, ...] = opt((), "override a setting as KEY=VALUE: a train setting (epochs=1) or SECTION.KEY "
                               "(calibration.min_keep=0); values are JSON or plain strings")

    def __post_init__(self):
        validate_fields(self)


def add_parser(sub, name):
    p = sub.add_parser(name, help="run or resume a sweep (methods x sparsities x seeds x datasets x models)",
                       description="Run every run of the sweep CONFIG (JSON or TOML) that is not yet recorded as "
                       "done in OUT/results.sqlite. Saliency is computed once per (model, seed, method settings) "
                       "and re-thresholded for every sparsity. Interrupt at any time; rerunning resumes. "
                       "Accuracies are stored in percent (0-100).")
    add_dataclass_args(p, SweepArgs)
    p.set_defaults(run=run)


def apply_sets(d: dict, items) -> dict:
    """``KEY=VALUE`` overrides of a sweep config dict: ``KEY`` is a train setting, ``SECTION.KEY``
    a key of another table (e.g. ``calibration.min_keep``)."""
    import json

    for kv in items:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise ValueError(f"--set expects KEY=VALUE; got {kv!r}")
        section, dot, key = k.rpartition(".")
        try:
            val = json.loads(v)
        except json.JSONDecodeError:
            val = v
        d.setdefault(section if dot else "train", {})[key] = val
    return d


def run(args) -> int:
    from pathlib import Path

    from ..experiment.sweep import ResultsDB, SweepSpec, expand, load_config, run_sweep

    a = from_args(SweepArgs, args)
    d = load_config(a.config)
    if a.out:
        d["out"] = a.out
    if a.runner:
        d["runner"] = a.runner
    spec = SweepSpec.from_dict(apply_sets(d, a.set))
    if a.dry_run:
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
    summary = run_sweep(spec, workers=a.workers, fail_fast=a.fail_fast, limit=a.limit)
    print(summary)
    return 1 if summary.failed else 0
