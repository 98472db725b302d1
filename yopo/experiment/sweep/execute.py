"""Running a sweep: phase 1 computes the missing saliency families, phase 2 runs every run not yet
recorded ``done`` (serially or in a spawn process pool), recording each finished or failed run in
one transaction of the results store (:func:`run_sweep`)."""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..store import ResultsDB
from .families import ensure_family, family_path, load_family, run_masks
from .runners import RUNNERS, SCORERS, resolve
from .spec import Run, SweepSpec, expand


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def _compute_family(folder, key, fam, scorer_name) -> tuple[str, str, float]:
    path, dt = ensure_family(folder, key, fam, resolve(scorer_name, SCORERS))
    return key, path, dt


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
    if "test_acc" not in res:
        raise RuntimeError(f"runner returned no test_acc for run {run.id}: {sorted(res)}")
    return res


def _execute_by_name(run: Run, folder, runner_name: str) -> tuple[str, dict]:
    return run.id, execute(run, folder, resolve(runner_name, RUNNERS))


@dataclass
class SweepSummary:
    total: int
    skipped: int
    done: int
    failed: int
    families_computed: int
    folder: str
    db: str

    def __str__(self):
        return (f"{self.total} runs: {self.skipped} already done, {self.done} run now, {self.failed} failed; "
                f"{self.families_computed} saliency families computed; results in {self.db}")


def run_sweep(spec: SweepSpec, *, workers: int = 1, runner: Callable | str | None = None,
              scorer: Callable | str | None = None, fail_fast: bool = False, log=None,
              limit: int | None = None) -> SweepSummary:
    """Run every run of ``spec`` not yet recorded ``done`` in ``<spec.out>/results.sqlite``.

    Exceptions raised by a run are recorded as ``failed`` (retried on the next invocation) and the
    sweep goes on, unless ``fail_fast``. ``KeyboardInterrupt``/``SystemExit`` stop the sweep at
    once; the runs finished so far are already committed. ``runner``/``scorer`` may be callables
    (serial execution only) or names (builtin or ``module:function``); they default to the spec's.
    ``limit`` stops after that many new runs (for smoke tests).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    folder = Path(spec.out)
    folder.mkdir(parents=True, exist_ok=True)
    runner = runner if runner is not None else spec.runner
    scorer = scorer if scorer is not None else spec.scorer
    if workers > 1 and (callable(runner) or callable(scorer)):
        raise ValueError("with workers > 1, runner and scorer must be given by name ('module:function')")
    runs = expand(spec)
    db = ResultsDB(folder / "results.sqlite")
    try:
        db.set_meta("spec", spec.to_dict())
        done = db.done_ids()
        pending = [r for r in runs if r.id not in done]
        if limit is not None:
            pending = pending[:limit]
        skipped = len(runs) - len([r for r in runs if r.id not in done])
        log(f"sweep {spec.name}: {len(runs)} runs, {skipped} already done, {len(pending)} to run"
            f" ({workers} worker{'s' if workers > 1 else ''})")

        # phase 1: once-only saliency per family (shared by all sparsities / modes / variants)
        fams: dict[str, dict] = {}
        for r in pending:
            fams.setdefault(r.family_key, r.family)
            if r.target_family_key:
                fams.setdefault(r.target_family_key, r.target_family)
        known = {f["key"] for f in db.families()}
        missing = {k: f for k, f in fams.items() if not family_path(folder, k).exists()}
        n_new = len(missing)
        scorer_fn = resolve(scorer, SCORERS) if isinstance(scorer, str) else scorer
        if workers > 1 and len(missing) > 1:
            with _pool(workers) as pool:
                futs = [pool.submit(_compute_family, str(folder), k, f, scorer) for k, f in missing.items()]
                for fut in futs:
                    k, path, dt = fut.result()
                    db.record_family(k, path, fams[k], dt)
                    log(f"  family {k} ({fams[k]['method']}, seed {fams[k]['seed']}): {dt:.2f}s")
        else:
            for k, f in missing.items():
                path, dt = ensure_family(folder, k, f, scorer_fn)
                db.record_family(k, path, f, dt)
                log(f"  family {k} ({f['method']}, seed {f['seed']}): {dt:.2f}s")
        for k, f in fams.items():  # files present but not registered (e.g. killed between the two)
            if k not in known and k not in missing:
                p = family_path(folder, k)
                db.record_family(k, str(p), f, float(load_family(p).meta.get("score_time_s", math.nan)))

        # phase 2: the runs
        n_done = n_failed = 0
        t_start = time.time()

        def finished(run: Run, res: dict | None, err: str | None) -> None:
            nonlocal n_done, n_failed
            db.record(run, res, error=err)
            if err is None:
                n_done += 1
                i = n_done + n_failed
                eta = (time.time() - t_start) / i * (len(pending) - i)
                log(f"  [{i}/{len(pending)}] {run.identity['model']} {run.identity['dataset']} {run.label} "
                    f"p={run.identity['sparsity']} seed={run.identity['seed']} mask_seed="
                    f"{run.identity['mask_seed']} mask_ds={run.identity['mask_dataset']} "
                    f"variant={run.identity['variant']}: acc {res['test_acc']:.2f}  (eta {eta / 60:.1f} min)")
            else:
                n_failed += 1
                log(f"  run {run.id} ({run.label} p={run.identity['sparsity']} seed={run.identity['seed']}) "
                    f"FAILED: {err.splitlines()[-1] if err else err}")

        if workers <= 1:
            runner_fn = resolve(runner, RUNNERS) if isinstance(runner, str) else runner
            for run in pending:
                try:
                    res = execute(run, folder, runner_fn)
                except Exception as e:  # noqa: BLE001 - recorded, then re-raised if fail_fast
                    finished(run, None, _format_error(e))
                    if fail_fast:
                        raise
                    continue
                finished(run, res, None)
        else:
            by_id = {r.id: r for r in pending}
            with _pool(workers) as pool:
                futs = {pool.submit(_execute_by_name, r, str(folder), runner): r.id for r in pending}
                try:
                    remaining = set(futs)
                    while remaining:
                        ready, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                        for fut in ready:
                            run = by_id[futs[fut]]
                            try:
                                _, res = fut.result()
                            except Exception as e:  # noqa: BLE001
                                finished(run, None, _format_error(e))
                                if fail_fast:
                                    raise
                                continue
                            finished(run, res, None)
                except BaseException:
                    for f in futs:
                        f.cancel()
                    raise
        return SweepSummary(len(runs), skipped, n_done, n_failed, n_new, str(folder), str(db.path))
    finally:
        db.close()


def _format_error(e: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(e), e, e.__traceback__))[-4000:]


@contextlib.contextmanager
def _pool(workers: int):
    import multiprocessing as mp

    cores = os.cpu_count() or 1
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=_worker_init, initargs=(max(1, cores // workers),))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
