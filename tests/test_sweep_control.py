"""Sweep process control (issue 11, item 8): Ctrl-C of a `yopo sweep --workers N` stops within seconds
and records nothing it did not finish; a killed worker fails only its own run; resume reruns exactly
the unfinished runs. Slow runs come from the synthetic runner's `train.sleep`."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from yopo.experiment.sweep import ResultsDB
from yopo.experiment.sweep.executors import LocalPool, Task

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path, sleep: float, n: int = 6) -> Path:
    cfg = tmp_path / "sweep.json"
    cfg.write_text(json.dumps({"name": "ctl", "out": str(tmp_path / "out"), "models": ["mlp_digits"],
                               "datasets": ["digits"], "methods": ["magnitude"], "seeds": [0], "runner": "synthetic",
                               "sparsities": [round(0.1 * (i + 1), 1) for i in range(n)],
                               "train": {"sleep": sleep}}))
    return cfg


def _cli(*args, env):
    code = "import sys; from yopo.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _wait_for(pred, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _statuses(db_path) -> dict:
    with sqlite3.connect(db_path) as c:
        return {r[0]: r[1] for r in c.execute("SELECT id, status FROM runs")}


def _resume(cfg, log, monkeypatch):
    """Run the sweep again, in this process (serial); returns the ids the runner was called with."""
    from yopo.experiment.sweep import SweepSpec, load_config, run_sweep

    monkeypatch.setenv("YOPO_SYNTH_LOG", str(log))
    n_before = len(_calls(log))
    s = run_sweep(SweepSpec.from_dict(load_config(cfg)), log=lambda m: None)
    return s, [c["id"] for c in _calls(log)[n_before:]]


def test_sigint_stops_within_seconds_and_resume_runs_the_rest(tmp_path, monkeypatch):
    log = tmp_path / "calls.jsonl"
    cfg = _config(tmp_path, sleep=0.0)
    from yopo.experiment.sweep import SweepSpec, load_config, run_sweep

    monkeypatch.setenv("YOPO_SYNTH_LOG", str(log))
    run_sweep(SweepSpec.from_dict(load_config(cfg)), limit=2, log=lambda m: None)  # 2 runs committed first
    committed = set(_statuses(tmp_path / "out" / "results.sqlite"))
    first = {c["id"] for c in _calls(log)}
    assert len(committed) == len(first) == 2

    # runs of 60 s each on 2 workers: interrupt the parent (only) once both are in flight
    p = _cli("sweep", str(cfg), "--workers", "2", "--set", "sleep=60", env=dict(os.environ))
    _wait_for(lambda: len(_calls(log)) >= 4 or p.poll() is not None)
    in_flight = _calls(log)[2:]
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGINT)
    rc = p.wait(timeout=30)
    stopped_in = time.monotonic() - t0
    err = p.stderr.read().decode()
    assert rc == 130, err[-2000:]
    assert stopped_in < 10, stopped_in  # not the 60 s of the in-flight runs
    assert "interrupted" in err and "Traceback" not in err
    assert not any(_alive(c["pid"]) for c in in_flight)  # workers terminated, none orphaned
    assert set(_statuses(tmp_path / "out" / "results.sqlite")) == committed  # nothing in flight recorded

    # resume: exactly the 4 unfinished runs, each once, the 2 committed ones not again
    s, rerun = _resume(cfg, log, monkeypatch)
    assert (s.skipped, s.done, s.failed) == (2, 4, 0)
    assert len(rerun) == len(set(rerun)) == 4 and not first & set(rerun)
    assert {c["id"] for c in in_flight} <= set(rerun)
    st = _statuses(tmp_path / "out" / "results.sqlite")
    assert len(st) == 6 and set(st.values()) == {"done"}


def test_killed_worker_fails_only_its_run_and_resume_reruns_it(tmp_path, monkeypatch):
    log = tmp_path / "calls.jsonl"
    cfg = _config(tmp_path, sleep=1.0)
    p = _cli("sweep", str(cfg), "--workers", "2", env=dict(os.environ, YOPO_SYNTH_LOG=str(log)))
    _wait_for(lambda: len(_calls(log)) >= 1 or p.poll() is not None)
    victim = _calls(log)[0]
    os.kill(victim["pid"], signal.SIGKILL)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1, err.decode()[-2000:]  # one failed run
    with ResultsDB(tmp_path / "out" / "results.sqlite", readonly=True) as db:
        failed = db.runs("failed")
        assert db.count("done") == 5 and len(failed) == 1
    assert "killed by SIGKILL" in failed[0]["error"] and str(victim["pid"]) in failed[0]["error"]
    assert "5 run now, 1 failed" in out.decode()
    s, rerun = _resume(cfg, log, monkeypatch)
    assert rerun == [victim["id"]] and (s.skipped, s.done) == (5, 1)  # exactly the killed run
    assert set(_statuses(tmp_path / "out" / "results.sqlite").values()) == {"done"}


def _boom(x):
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    if x == 3:
        raise ValueError("three")
    return x * 10


def test_local_pool_outcomes():
    """The pool itself: results, a raised error and a dead worker each end their own task only."""
    with LocalPool(2, threads=1) as pool:
        outs = {o.key: o for o in pool.map_unordered([Task(str(i), _boom, (i,)) for i in range(6)])}
    assert {k: o.result for k, o in outs.items() if o.error is None} == {"0": 0, "1": 10, "4": 40, "5": 50}
    assert "ValueError: three" in outs["3"].error
    assert "killed by SIGKILL" in outs["2"].error and outs["2"].result is None


def test_executor_choice_and_options_are_checked(tmp_path):
    from yopo.experiment.sweep.executors import make_executor

    with pytest.raises(ValueError, match="did you mean 'ray'"):
        make_executor("rey")
    with pytest.raises(ValueError, match="takes no --executor-opt"):
        make_executor("local", options={"address": "auto"})
    pytest.importorskip("submitit")
    with pytest.raises(ValueError, match="'parttion' is not an option of executor 'submitit'"):
        make_executor("submitit", options={"parttion": "gpu"}, sweep_folder=tmp_path)
    with pytest.raises(ValueError, match="timeout_min='soon' must be an integer"):
        make_executor("submitit", options={"timeout_min": "soon", "cluster": "local"}, sweep_folder=tmp_path)


def test_cli_checks_executor_options_before_running(tmp_path, capsys):
    from yopo.cli import main

    cfg = _config(tmp_path, sleep=0.0, n=2)
    assert main(["sweep", str(cfg), "--executor", "ray", "--executor-opt", "num_cpu=2", "--dry-run"]) == 2
    assert "'num_cpu' is not an option of executor 'ray'" in capsys.readouterr().err
    assert main(["sweep", str(cfg), "--executor-opt", "address=auto"]) == 2
    assert "--executor-opt is for --executor ray or submitit" in capsys.readouterr().err
    assert main(["sweep", str(cfg), "--executor", "ray", "--executor-opt", "address", "--dry-run"]) == 2
    assert not (tmp_path / "out" / "results.sqlite").exists()  # nothing ran, nothing was written
