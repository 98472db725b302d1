"""``yopo sweep CONFIG``: run (or resume) a sweep described by a JSON/TOML file."""
from __future__ import annotations

from dataclasses import MISSING, dataclass

from ..core.config import add_dataclass_args, from_args, opt, validate_fields

EXECUTORS = ("local", "ray", "submitit")


@dataclass(frozen=True)
class SweepArgs:
    config: str = opt(MISSING, "sweep config (.json or .toml)", positional=True)
    workers: int = opt(1, "parallel worker processes of the local executor (1: in this process)", low=1)
    executor: str = opt("local", "where runs execute: local (this machine, --workers processes), ray (a Ray cluster "
                        "or a local Ray instance), submitit (SLURM jobs; cluster=local for local processes); "
                        "results go to the same OUT/results.sqlite either way (docs/sweeps.md)", EXECUTORS)
    executor_opt: tuple[str, ...] = opt((), "option of the ray/submitit executor as KEY=VALUE, e.g. address=auto, "
                                        "num_cpus=2 (ray); cluster=slurm, slurm_partition=gpu, timeout_min=120 "
                                        "(submitit)")
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

    from ..core.progress import get_logger
    from ..experiment.sweep import ResultsDB, SweepSpec, expand, load_config, run_sweep
    from ..experiment.sweep.execute import SweepFailed, SweepInterrupted
    from ..experiment.sweep.executors import check_options

    a = from_args(SweepArgs, args)
    d = load_config(a.config)
    if a.out:
        d["out"] = a.out
    if a.runner:
        d["runner"] = a.runner
    spec = SweepSpec.from_dict(apply_sets(d, a.set))
    if a.executor == "local" and a.executor_opt:
        raise ValueError("--executor-opt is for --executor ray or submitit")
    options = {}
    for kv in a.executor_opt:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise ValueError(f"--executor-opt expects KEY=VALUE; got {kv!r}")
        options[k] = v
    check_options(a.executor, options)  # before a dry run too
    if a.dry_run:
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
        summary = run_sweep(spec, workers=a.workers, fail_fast=a.fail_fast, limit=a.limit,
                            executor=a.executor, executor_options=options)
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
