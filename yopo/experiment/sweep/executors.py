"""Where the tasks of a sweep (saliency families, runs) execute. The parent process owns the results
store: an executor only runs ``task.fn(*task.args)`` somewhere and hands back one
:class:`Outcome` per task as it finishes; the parent records it (one transaction per run), so every
executor resumes the same way and writes the same run ids.

* ``local`` (default): in this process for one worker (:class:`InProcess`), else a pool of spawned
  worker processes (:class:`LocalPool`). The pool is ours rather than ``concurrent.futures``'s
  because a sweep needs what ``ProcessPoolExecutor`` cannot give: a worker killed by the OOM killer
  fails only the run it held (the executor's ``BrokenProcessPool`` fails every pending run), and
  Ctrl-C terminates the workers at once (the executor joins them, i.e. waits for in-flight runs).
* ``ray``: one Ray task per run (:class:`RayExecutor`), on a running cluster (``address=auto``) or a
  local instance it starts and stops.
* ``submitit``: one SLURM job per run through submitit, as a job array (:class:`SubmititExecutor`);
  ``cluster=local`` runs them as local processes (what the tests use), ``cluster=debug`` in-process.

Options of the distributed executors come as strings (``--executor-opt KEY=VALUE``) and are
checked here: a key an executor does not use is an error, not silently ignored.
"""
from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import signal
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from ...core.progress import get_logger

EXECUTORS = ("local", "ray", "submitit")


@dataclass(frozen=True)
class Task:
    key: str  # a run id or a family key
    fn: Callable  # module-level (picklable) except for the in-process executor
    args: tuple


class Outcome(NamedTuple):
    key: str
    result: Any  # fn's return value, or None
    error: str | None  # the formatted traceback (or how the worker died), or None


def format_error(e: BaseException) -> str:
    return "".join(traceback.format_exception(type(e), e, e.__traceback__))[-4000:]


def _call(fn, args, threads: int = 0):
    """Run a task where it landed: (result, None) or (None, traceback text)."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    try:
        return fn(*args), None
    except Exception as e:  # noqa: BLE001 - reported to the parent, which records the run failed
        return None, format_error(e)


class Executor:
    """Runs tasks and yields their outcomes in completion order. ``close(cancel=True)`` (on an
    exception, e.g. Ctrl-C, in the ``with`` block) stops whatever still runs, at once."""

    name = "executor"

    def map_unordered(self, tasks: list[Task]) -> Iterator[Outcome]:
        raise NotImplementedError

    def close(self, cancel: bool = False) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(cancel=exc_type is not None)


class InProcess(Executor):
    """Serial, in this process: callables need not be picklable; Ctrl-C stops the run at once."""

    name = "local (in-process)"

    def map_unordered(self, tasks):
        for t in tasks:
            result, error = _call(t.fn, t.args)
            yield Outcome(t.key, result, error)


# ----------------------------------------------------------------------------------------------
# local process pool


class _PipeQueue:
    """What ``logging.handlers.QueueHandler`` puts records into: the worker's pipe to the parent."""

    def __init__(self, conn, lock):
        self.conn, self.lock = conn, lock

    def put_nowait(self, record) -> None:
        with self.lock:
            self.conn.send(("log", record))


def _watch_parent(parent_pid: int) -> None:
    """A worker whose parent died (SIGKILL of the sweep) exits instead of running on as an orphan."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(3)


def _worker_main(conn, parent_pid: int, threads: int, level: int) -> None:
    # Ctrl-C on a terminal signals the whole process group: the parent decides, workers ignore it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["YOPO_PROGRESS"] = "0"  # bars are the parent's; the worker's lines go through the pipe
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    import torch

    torch.set_num_threads(max(1, threads))
    lock = threading.Lock()
    log = get_logger()  # the worker's log lines (e.g. training epochs) go to the parent's handlers
    log.handlers = [logging.handlers.QueueHandler(_PipeQueue(conn, lock))]
    log.setLevel(level)
    log.propagate = False
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if task is None:
            return
        fn, args = task
        result, error = _call(fn, args)
        try:
            with lock:
                conn.send(("done", result, error))
        except (EOFError, OSError, BrokenPipeError):
            return
        except Exception as e:  # noqa: BLE001 - e.g. a result that cannot be pickled
            with lock:
                conn.send(("done", None, f"the task's result could not be sent to the parent: {e!r}"))


@dataclass
class _Worker:
    proc: Any
    conn: Any
    task: Task | None = None


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


class LocalPool(Executor):
    """``workers`` spawned processes with ``threads`` torch threads each; tasks go one at a time to
    an idle worker over its own pipe, so the parent always knows which task a worker holds.

    * a worker that dies (SIGKILL, OOM, segfault) fails only the task it held, with the reason,
      and is replaced; the other tasks go on;
    * :meth:`close` with ``cancel=True`` terminates the workers (SIGTERM, then SIGKILL after
      ``grace`` seconds) without waiting for their tasks;
    * log records of the workers (training epochs...) are handled by the parent's ``yopo``
      logger, i.e. printed above the sweep's progress bar.
    """

    name = "local"

    def __init__(self, workers: int, threads: int | None = None, grace: float = 2.0):
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.size = max(1, int(workers))
        self.threads = threads if threads else max(1, (os.cpu_count() or 1) // self.size)
        self.grace = grace
        self.level = get_logger().getEffectiveLevel()
        self.workers: list[_Worker] = []

    def _start(self) -> _Worker:
        parent, child = self.ctx.Pipe(duplex=True)
        p = self.ctx.Process(target=_worker_main, args=(child, os.getpid(), self.threads, self.level),
                             name="yopo-sweep-worker")
        p.start()
        child.close()
        w = _Worker(p, parent)
        self.workers.append(w)
        return w

    def map_unordered(self, tasks):
        from multiprocessing.connection import wait

        queue = deque(tasks)
        while len(self.workers) < min(self.size, len(queue)):
            self._start()
        while queue or any(w.task is not None for w in self.workers):
            for w in list(self.workers):
                if w.task is not None or not queue:
                    continue
                task = queue.popleft()
                try:
                    w.conn.send((task.fn, task.args))
                    w.task = task
                except (BrokenPipeError, ConnectionError, EOFError, OSError):  # died while idle: replace it
                    queue.appendleft(task)
                    self._reap(w)
                    self._start()
                except Exception as e:  # noqa: BLE001 - e.g. arguments that cannot be pickled: that task fails
                    yield Outcome(task.key, None, f"the task could not be sent to a worker process: {e!r}")
            busy = [w for w in self.workers if w.task is not None]
            if not busy:
                continue
            ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
            for w in busy:
                dead = False
                if w.conn in ready:
                    out, dead = self._drain(w)
                    if out is not None:
                        yield out
                if dead or w.proc.sentinel in ready:
                    out = self._reap(w)
                    if out is not None:
                        yield out
                    if queue:
                        self._start()

    def _drain(self, w: _Worker) -> tuple[Outcome | None, bool]:
        """Read what a worker sent: log records are handled, a result ends its task. Returns
        (outcome or None, whether the pipe is closed)."""
        out = None
        try:
            while w.conn.poll():
                msg = w.conn.recv()
                if msg[0] == "log":
                    record = msg[1]
                    logging.getLogger(record.name).handle(record)
                elif msg[0] == "done" and w.task is not None:
                    out = Outcome(w.task.key, msg[1], msg[2])
                    w.task = None
        except (EOFError, OSError):
            return out, True
        return out, False

    def _reap(self, w: _Worker) -> Outcome | None:
        """A worker that exited: its task (if any) failed, with how the process died."""
        out, _ = self._drain(w)  # a result sent just before it died still counts
        w.proc.join(timeout=self.grace)
        self.workers.remove(w)
        w.conn.close()
        if out is None and w.task is not None:
            out = Outcome(w.task.key, None, f"worker process {w.proc.pid} died ({_death(w.proc.exitcode)}) "
                                            f"while running this task")
        return out

    def close(self, cancel: bool = False) -> None:
        if not cancel:
            for w in self.workers:
                with contextlib.suppress(OSError, BrokenPipeError):
                    w.conn.send(None)
        else:
            for w in self.workers:
                if w.proc.is_alive():
                    w.proc.terminate()
        deadline = time.monotonic() + self.grace
        for w in self.workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=self.grace)
            w.conn.close()
        self.workers = []


# ----------------------------------------------------------------------------------------------
# Ray


def _options(given: dict, allowed: dict, executor: str) -> dict:
    """Parse ``KEY=VALUE`` option strings by the types of ``allowed`` (its defaults)."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"--executor-opt {unknown[0]!r} is not an option of executor {executor!r}; "
                         f"allowed: {sorted(allowed)}")
    out = dict(allowed)
    for k, v in given.items():
        default = allowed[k]
        if isinstance(v, str) and default is not None and not isinstance(default, str):
            try:
                v = type(default)(float(v)) if isinstance(default, (int, float)) and not isinstance(default, bool) \
                    else v.lower() in ("1", "true", "yes")
            except ValueError:
                kind = "an integer" if isinstance(default, int) else "a number"
                raise ValueError(f"--executor-opt {k}={v!r} must be {kind}") from None
        out[k] = v
    return out


RAY_OPTIONS = {"address": None, "num_cpus": 1.0, "num_gpus": 0.0, "max_retries": 0, "local_cpus": 0}


def _ray_task(fn, args, threads):
    return _call(fn, args, threads)


class RayExecutor(Executor):
    """One Ray task per run with ``num_cpus``/``num_gpus`` each. ``address`` joins a running
    cluster (``auto``: the one ``ray start`` made on this node); without it a local instance is
    started (``local_cpus`` CPUs, 0 = all) and shut down at the end. ``max_retries=0``: a task whose
    worker died is recorded failed (and rerun by the next ``yopo sweep``), as with ``local``."""

    name = "ray"

    def __init__(self, options: dict):
        try:
            import ray
        except ImportError:
            raise ValueError("executor 'ray' needs Ray: pip install 'yopo[ray]'") from None
        self.ray = ray
        self.opts = _options(options, RAY_OPTIONS, "ray")
        self.started = False
        if not ray.is_initialized():
            quiet = not get_logger().isEnabledFor(logging.DEBUG)  # Ray's start-up chatter only with -v
            kw = {"include_dashboard": False, "log_to_driver": True,
                  "logging_level": logging.ERROR if quiet else logging.INFO}
            if self.opts["address"]:
                kw["address"] = self.opts["address"]
            elif self.opts["local_cpus"]:
                kw["num_cpus"] = int(self.opts["local_cpus"])
            ray.init(**kw)
            self.started = True
        self.remote = ray.remote(_ray_task).options(num_cpus=self.opts["num_cpus"], num_gpus=self.opts["num_gpus"],
                                                    max_retries=int(self.opts["max_retries"]))
        self.pending: dict = {}

    def map_unordered(self, tasks):
        ray = self.ray
        threads = max(1, int(self.opts["num_cpus"]))
        self.pending = {self.remote.remote(t.fn, t.args, threads): t for t in tasks}
        while self.pending:
            done, _ = ray.wait(list(self.pending), num_returns=1)
            for ref in done:
                t = self.pending.pop(ref)
                try:
                    result, error = ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker died, the task was cancelled...
                    result, error = None, f"Ray task failed: {type(e).__name__}: {str(e).strip()[-1500:]}"
                yield Outcome(t.key, result, error)

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self.pending:
                with contextlib.suppress(Exception):  # noqa: BLE001 - best effort on the way out
                    self.ray.cancel(ref, force=True)
        self.pending = {}
        if self.started:
            self.ray.shutdown()
            self.started = False


# ----------------------------------------------------------------------------------------------
# submitit (SLURM)


SUBMITIT_OPTIONS = {"cluster": None, "timeout_min": 240, "cpus_per_task": 1, "gpus_per_node": 0,
                    "mem_gb": 0.0, "slurm_partition": None, "slurm_account": None, "slurm_qos": None,
                    "slurm_array_parallelism": 0, "poll_s": 1.0, "folder": None}


def _submitit_task(fn, args, threads):
    return _call(fn, args, threads)


class SubmititExecutor(Executor):
    """One job per run, submitted as one job array (``slurm_array_parallelism`` caps how many run at
    once). ``cluster``: ``slurm``, ``local`` (subprocesses, for tests), ``debug`` (in-process) or
    unset (SLURM if ``sbatch`` is found, else local). Job logs go to ``folder`` (default
    ``<sweep out>/submitit``). The parent polls the jobs every ``poll_s`` seconds; a cancelled,
    timed-out or crashed job fails its run only."""

    name = "submitit"

    def __init__(self, options: dict, sweep_folder):
        try:
            import submitit
        except ImportError:
            raise ValueError("executor 'submitit' needs submitit: pip install 'yopo[slurm]'") from None
        self.opts = o = _options(options, SUBMITIT_OPTIONS, "submitit")
        folder = Path(o["folder"] or Path(sweep_folder) / "submitit")
        self.executor = submitit.AutoExecutor(folder=folder, cluster=o["cluster"])
        params = {"timeout_min": int(o["timeout_min"]), "cpus_per_task": int(o["cpus_per_task"]),
                  "name": "yopo-sweep"}
        if int(o["gpus_per_node"]):
            params["gpus_per_node"] = int(o["gpus_per_node"])
        if float(o["mem_gb"]):
            params["mem_gb"] = float(o["mem_gb"])
        for k in ("slurm_partition", "slurm_account", "slurm_qos"):
            if o[k]:
                params[k] = o[k]
        if int(o["slurm_array_parallelism"]):
            params["slurm_array_parallelism"] = int(o["slurm_array_parallelism"])
        if self.executor.cluster != "slurm":  # slurm_* keys are rejected by the other clusters
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        self.executor.update_parameters(**params)
        self.jobs: list = []

    def map_unordered(self, tasks):
        if not tasks:
            return
        threads = max(1, int(self.opts["cpus_per_task"]))
        with self.executor.batch():
            submitted = [(self.executor.submit(_submitit_task, t.fn, t.args, threads), t) for t in tasks]
        self.jobs = [j for j, _ in submitted]
        pending = dict(submitted)
        while pending:
            finished = [j for j in pending if j.done()]
            if not finished:
                time.sleep(float(self.opts["poll_s"]))
                continue
            for job in finished:
                t = pending.pop(job)
                try:
                    result, error = job.result()
                except Exception as e:  # noqa: BLE001 - submitit's FailedJobError / UncompletedJobError
                    result, error = None, f"job {job.job_id} failed: {str(e).strip()[-1500:]}"
                yield Outcome(t.key, result, error)

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for job in self.jobs:
                if not job.done():
                    with contextlib.suppress(Exception):  # noqa: BLE001 - best effort on the way out
                        job.cancel(check=False)
        self.jobs = []


def check_options(name: str, options: dict) -> dict:
    """Parse and check ``--executor-opt`` values without starting anything (for ``--dry-run``)."""
    from ...core.validate import check_choice

    check_choice("executor", name, EXECUTORS)
    if name == "local":
        if options:
            raise ValueError(f"executor 'local' takes no --executor-opt (got {sorted(options)}); use --workers")
        return {}
    return _options(options, RAY_OPTIONS if name == "ray" else SUBMITIT_OPTIONS, name)


def make_executor(name: str, *, workers: int = 1, options: dict | None = None, sweep_folder=".") -> Executor:
    """The executor ``name`` (one of :data:`EXECUTORS`)."""
    options = dict(options or {})
    check_options(name, options)
    if name == "local":
        return InProcess() if workers <= 1 else LocalPool(workers)
    if name == "ray":
        return RayExecutor(options)
    return SubmititExecutor(options, sweep_folder)
