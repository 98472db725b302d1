"""Running a sweep: phase 1 computes the missing saliency families, phase 2 runs every run not yet
recorded ``done``, on an executor (:mod:`.executors`: in-process, a local process pool, Ray or
SLURM through submitit). The parent records each finished or failed run in one transaction of the
results store as it arrives (:func:`run_sweep`), so an interrupted sweep resumes with exactly the
unfinished runs whichever executor ran it."""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...core.progress import bar as progress_bar, get_logger, prefixed
from ..store import ResultsDB
from .executors import InProcess, Task, make_executor
from .families import ensure_family, family_path, load_family, run_masks
from .runners import RUNNERS, SCORERS, resolve
from .spec import Run, SweepSpec, expand


def _compute_family(folder, key, fam, scorer_name) -> tuple[str, float]:
    return ensure_family(folder, key, fam, resolve(scorer_name, SCORERS))


def execute(run: Run, folder, runner: Callable) -> dict:
    """Masks from the cached family, then the runner; returns the result record."""
    masks, info = run_masks(run, folder)
    settings = dict(run.settings, init_seed=info["init_seed"], family=run.family_key,
                    out_dir=str(Path(folder) / "runs" / run.id))
    t0 = time.perf_counter()
    res = dict(runner(settings, masks))
    res.setdefault("wall_s", time.perf_counter() - t0)
    for k, v in info.items():
        res.setdefault(k, v)
    res.setdefault("machine", machine())  # where the run ran (a pool worker, a Ray node, a SLURM job)
    if "test_acc" not in res:
        raise RuntimeError(f"runner returned no test_acc for run {run.id}: {sorted(res)}")
    return res


def machine() -> dict:
    """The CPU (model name and the flags that change matmul speed), cores, torch and its threads,
    and the accelerator if one is visible: recorded with every run, shown by reports next to times."""
    import os
    import platform

    import torch

    cpu, flags = platform.processor() or platform.machine(), []
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name":
                cpu = val.strip()
            elif key.strip() == "flags":
                have = set(val.split())
                flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in have]
                break
    out = {"cpu": cpu, "cpu_flags": flags, "cores": os.cpu_count(), "torch": torch.__version__,
           "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def _execute_by_name(run: Run, folder, runner_name: str, tag: str = "") -> dict:
    """A run on a worker (pool, Ray, SLURM job): the runner by name; its log lines carry ``tag``."""
    with prefixed(tag):
        return execute(run, folder, resolve(runner_name, RUNNERS))


def _execute_callable(run: Run, folder, runner: Callable, tag: str = "") -> dict:
    with prefixed(tag):
        return execute(run, folder, runner)


STALLED_NOTE = "train loss near the class-prior loss"  # what a stalled run means, in the log and summary


@dataclass
class SweepSummary:
    total: int
    skipped: int
    done: int
    failed: int
    families_computed: int
    folder: str
    db: str
    stalled: int = 0  # runs done now whose training stalled (result["stalled"], TrainingStalledWarning)

    def __str__(self):
        stalled = f" ({self.stalled} stalled: {STALLED_NOTE})" if self.stalled else ""
        return (f"{self.total} runs: {self.skipped} already done, {self.done} run now{stalled}, {self.failed} failed; "
                f"{self.families_computed} saliency families computed; results in {self.db}")


class SweepFailed(RuntimeError):
    """A run failed and ``fail_fast`` stopped the sweep (the failure is recorded)."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped the sweep; ``summary`` counts what was recorded before."""

    def __init__(self, summary: "SweepSummary"):
        super().__init__(f"sweep interrupted after {summary.done} new runs ({summary.failed} failed)")
        self.summary = summary


def run_sweep(spec: SweepSpec, *, workers: int = 1, runner: Callable | str | None = None,
              scorer: Callable | str | None = None, fail_fast: bool = False, log=None,
              limit: int | None = None, executor: str = "local", executor_options: dict | None = None
              ) -> SweepSummary:
    """Run every run of ``spec`` not yet recorded ``done`` in ``<spec.out>/results.sqlite``.

    Exceptions raised by a run are recorded as ``failed`` (retried on the next invocation) and the
    sweep goes on, unless ``fail_fast`` (then :class:`SweepFailed`). A worker process that dies fails
    only its own run. Ctrl-C or SIGTERM stops the sweep within seconds (workers are terminated,
    in-flight runs are not recorded and run again on the next invocation) and raises
    :class:`SweepInterrupted`; the runs finished before are committed. ``runner``/``scorer`` may be
    callables (in-process execution only: ``workers=1``, ``executor='local'``) or names (builtin or
    ``module:function``); they default to the spec's. ``executor``: ``local`` (``workers`` processes),
    ``ray`` or ``submitit``, with ``executor_options`` (see :mod:`.executors`). ``limit`` stops
    after that many new runs (for smoke tests). ``log`` receives the progress lines (default: the
    ``yopo.sweep`` logger).
    """
    log = log or get_logger("sweep").info
    folder = Path(spec.out)
    folder.mkdir(parents=True, exist_ok=True)
    runner = runner if runner is not None else spec.runner
    scorer = scorer if scorer is not None else spec.scorer
    in_process = executor == "local" and workers <= 1
    if not in_process and (callable(runner) or callable(scorer)):
        raise ValueError("with workers > 1 or a distributed executor, runner and scorer must be given by name "
                         "('module:function')")
    runs = expand(spec)
    db = ResultsDB(folder / "results.sqlite")
    counts = {"done": 0, "failed": 0, "families": 0, "skipped": 0, "stalled": 0}

    def summary() -> SweepSummary:
        return SweepSummary(len(runs), counts["skipped"], counts["done"], counts["failed"], counts["families"],
                            str(folder), str(db.path), counts["stalled"])

    try:
        with _stop_on_sigterm(), make_executor(executor, workers=workers, options=executor_options,
                                               sweep_folder=folder) as ex:
            db.set_meta("spec", spec.to_dict())
            done = db.done_ids()
            pending = [r for r in runs if r.id not in done]
            counts["skipped"] = len(runs) - len(pending)
            if limit is not None:
                pending = pending[:limit]
            log(f"sweep {spec.name}: {len(runs)} runs, {counts['skipped']} already done, {len(pending)} to run"
                f" ({_where(ex, workers)})")
            failed_fams = _families(pending, folder, db, ex, scorer, in_process, counts, log, fail_fast)
            _runs(pending, folder, db, ex, runner, in_process, counts, log, fail_fast, failed_fams)
        return summary()
    except KeyboardInterrupt:
        raise SweepInterrupted(summary()) from None
    finally:
        db.close()


def _where(ex, workers: int) -> str:
    if isinstance(ex, InProcess):
        return "1 worker, in-process"
    if ex.name == "local":
        return f"{workers} worker processes"
    return f"executor {ex.name}"


def _families(pending, folder, db, ex, scorer, in_process, counts, log, fail_fast) -> dict[str, str]:
    """Phase 1: the once-only saliency of every family the pending runs need (shared by all their
    sparsities / modes / variants). Returns {family key: error} of the families that failed."""
    fams: dict[str, dict] = {}
    for r in pending:
        fams.setdefault(r.family_key, r.family)
        if r.target_family_key:
            fams.setdefault(r.target_family_key, r.target_family)
    known = {f["key"] for f in db.families()}
    missing = {k: f for k, f in fams.items() if not family_path(folder, k).exists()}
    if in_process or (ex.name == "local" and len(missing) <= 1):  # one family: not worth a worker start
        scorer_fn = resolve(scorer, SCORERS) if isinstance(scorer, str) else scorer
        tasks = [Task(k, ensure_family, (folder, k, f, scorer_fn)) for k, f in missing.items()]
        ex = InProcess()
    else:
        tasks = [Task(k, _compute_family, (str(folder), k, f, scorer)) for k, f in missing.items()]
    failed = {}
    with progress_bar(len(tasks), "saliency families", "family", enabled=len(tasks) > 1) as bar:
        for out in ex.map_unordered(tasks):
            f = fams[out.key]
            bar.update(1)
            if out.error is not None:
                failed[out.key] = out.error
                log(f"  family {out.key} ({f['method']}, seed {f['seed']}) FAILED: {out.error.splitlines()[-1]}")
                if fail_fast:
                    raise SweepFailed(f"family {out.key} failed: {out.error.splitlines()[-1]}")
                continue
            path, dt = out.result
            db.record_family(out.key, _relative(path, folder), f, dt)
            counts["families"] += 1
            log(f"  family {out.key} ({f['method']}, seed {f['seed']}): {dt:.2f}s")
    for k, f in fams.items():  # files present but not registered (e.g. killed between the two)
        if k not in known and k not in missing:
            p = family_path(folder, k)
            db.record_family(k, _relative(p, folder), f, float(load_family(p).meta.get("score_time_s", math.nan)))
    return failed


def _relative(path, folder) -> str:
    """A family file as the store records it: relative to the sweep folder (which may move)."""
    import os

    return os.path.relpath(Path(path).resolve(), Path(folder).resolve())


def _describe(run: Run) -> str:
    i = run.identity
    extra = "".join(f" {k}={i[k]}" for k, default in (("mask_seed", i["seed"]), ("mask_dataset", i["dataset"]),
                                                      ("variant", "none")) if i[k] != default)
    return f"{i['model']} {i['dataset']} {run.label} p={i['sparsity']} seed={i['seed']}{extra}"


def _runs(pending, folder, db, ex, runner, in_process, counts, log, fail_fast, failed_fams) -> None:
    """Phase 2: every pending run, recorded by this (the parent) process as it finishes."""
    by_id = {r.id: r for r in pending}
    n = len(pending)
    tasks = []
    for i, r in enumerate(pending):
        tag = f"[run {i + 1}/{n} {r.label} p={r.identity['sparsity']} seed={r.identity['seed']}] "
        bad = failed_fams.get(r.family_key) or failed_fams.get(r.target_family_key or "")
        if bad is not None:
            db.record(r, None, error=f"its saliency family failed:\n{bad}")
            counts["failed"] += 1
            continue
        if in_process:
            fn = resolve(runner, RUNNERS) if isinstance(runner, str) else runner
            tasks.append(Task(r.id, _execute_callable, (r, folder, fn, tag)))
        else:
            tasks.append(Task(r.id, _execute_by_name, (r, str(folder), runner, tag)))
    t_start = time.monotonic()
    with progress_bar(n, "sweep", "run", leave=True, enabled=n > 0) as bar:
        bar.update(counts["failed"])
        for j, out in enumerate(ex.map_unordered(tasks), 1):
            run = by_id[out.key]
            db.record(run, out.result, error=out.error)
            bar.update(1)
            if out.error is None:
                counts["done"] += 1
                i = counts["done"] + counts["failed"]
                eta = (time.monotonic() - t_start) / j * (len(tasks) - j)
                stalled = bool(out.result.get("stalled"))
                counts["stalled"] += stalled
                log(f"  [{i}/{n}] {_describe(run)}: acc {out.result['test_acc']:.2f}"
                    + (f"  STALLED ({STALLED_NOTE})" if stalled else "")
                    + f"  (eta {eta / 60:.1f} min)")
            else:
                counts["failed"] += 1
                log(f"  run {run.id} ({_describe(run)}) FAILED: {out.error.strip().splitlines()[-1]}")
                if fail_fast:
                    raise SweepFailed(f"run {run.id} ({_describe(run)}) failed: "
                                      f"{out.error.strip().splitlines()[-1]}")


@contextlib.contextmanager
def _stop_on_sigterm():
    """SIGTERM (SLURM's notice before it kills a job, ``kill PID``) stops the sweep like Ctrl-C:
    workers are terminated and the committed runs stay. Only the main thread can set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
