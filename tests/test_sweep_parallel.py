"""The local executor's CPU parallelism (``parallel: N`` / ``--parallel N``): N jobs at once, each
with an equal share of the cores as its threads unless OMP_NUM_THREADS is set."""
import threading
import time
from types import SimpleNamespace

import pytest

from textrefiner.errors import UserError
from textrefiner.sweep import executors
from textrefiner.sweep.runner import JobOutcome
from textrefiner.sweep.settings import SweepSettings


def _jobs(n):
    return [SimpleNamespace(name=f"job{i}", label=f"job {i}") for i in range(n)]


def test_parallel_runs_jobs_at_once_with_a_share_of_the_cores(monkeypatch, tmp_path):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 8)
    running, peak, envs, lock = [0], [0], [], threading.Lock()

    def fake_run_job(job, log, env=None):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            envs.append(env)
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return JobOutcome(job.name, job.label, "ok")

    monkeypatch.setattr(executors, "run_job", fake_run_job)
    jobs = _jobs(4)
    progress = executors.Progress(jobs, parallel=2)
    outcomes = executors.run_locally(jobs, str(tmp_path), progress, parallel=2)
    assert [o.status for o in outcomes] == ["ok"] * 4
    assert peak[0] == 2
    assert all(env["OMP_NUM_THREADS"] == "4" and "CUDA_VISIBLE_DEVICES" not in env for env in envs)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's setting wins: the environment is inherited
    envs.clear()
    executors.run_locally(_jobs(2), str(tmp_path), executors.Progress(_jobs(2), 2), parallel=2)
    assert envs == [None, None]


def test_parallel_is_for_the_cpu():
    with pytest.raises(UserError, match="parallel is for the local executor on the CPU"):
        SweepSettings().update({"parallel": 2, "gpus": [0]}, "command line").resolve()
    with pytest.raises(UserError, match="whole number >= 1"):
        SweepSettings().update({"parallel": 0}, "a.yaml")
    assert SweepSettings().update({"parallel": 3}, "a.yaml").resolve().parallel == 3
