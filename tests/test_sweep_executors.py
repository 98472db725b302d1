"""Distributed executors (issue 14, item 7): Ray (a local instance) and SLURM through submitit (its
local cluster) run the runs of a sweep into the same resumable results store, with the same run ids
and the same results as the local executor."""
import pytest

from yopo.experiment.sweep import ResultsDB, SweepSpec, expand, run_sweep


def _spec(out):
    return SweepSpec.from_dict({"name": "x", "out": str(out), "models": ["mlp_digits"], "datasets": ["digits"],
                                "methods": ["magnitude"], "sparsities": [0.5, 0.8, 0.9], "seeds": [0],
                                "runner": "synthetic"})


def _acc(db_path) -> dict:
    with ResultsDB(db_path, readonly=True) as db:
        return {r["id"]: r["test_acc"] for r in db.runs()}


def _check(tmp_path, executor, options):
    """A local run records one run; the executor resumes with the other two; the store then holds
    the sweep's ids with the results a local run gives."""
    spec = _spec(tmp_path / "sweep")
    assert run_sweep(spec, limit=1, log=lambda m: None).done == 1
    s = run_sweep(spec, executor=executor, executor_options=options, log=lambda m: None)
    assert (s.skipped, s.done, s.failed) == (1, 2, 0)
    ref = _spec(tmp_path / "ref")
    run_sweep(ref, log=lambda m: None)
    got = _acc(tmp_path / "sweep" / "results.sqlite")
    assert set(got) == {r.id for r in expand(spec)}
    assert got == _acc(tmp_path / "ref" / "results.sqlite")
    s = run_sweep(spec, executor=executor, executor_options=options, log=lambda m: None)
    assert (s.skipped, s.done) == (3, 0)  # resumed: nothing left


def test_ray_executor(tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'yopo[ray]'")
    _check(tmp_path, "ray", {"local_cpus": "1"})  # one worker process: the cheapest Ray start


def test_submitit_executor_local_cluster(tmp_path):
    pytest.importorskip("submitit", reason="submitit is an optional extra: pip install 'yopo[slurm]'")
    _check(tmp_path, "submitit", {"cluster": "local", "poll_s": "0.2"})
    assert any((tmp_path / "sweep" / "submitit").iterdir())  # the jobs' logs
