"""The step server (``textrefiner/cli/step_server.py``, ``protocols/step_server.py``): a sweep's train.py
steps forked from a process that imported torch once. A step run there writes what a ``python -m``
process writes (bit-identical checkpoints and metrics), returns the same exit status, dies with the
sweep, and the sweep falls back to a process of its own when the server is off or cannot run it."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from test_kill_resume import alive, assert_same_outputs, train_args
from textrefiner.protocols import step_server
from textrefiner.protocols.steps import TRAIN_COMMAND, _run

pytestmark = pytest.mark.skipif(not step_server.available(), reason="the step server needs Linux (fork, SCM_RIGHTS)")


@pytest.fixture(autouse=True)
def one_thread_per_step(monkeypatch):
    """As a testbed sweep runs its steps (one job per core); with more threads torch's import starts
    OpenMP's pool and the server hands the steps back (tested below)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def command(*args):
    return [*TRAIN_COMMAND, *[str(a) for a in args]]


def test_a_step_run_by_the_server_writes_what_a_process_of_its_own_writes(data_root, tmp_path, monkeypatch):
    runs = {}
    for how in ("server", "process"):
        monkeypatch.setenv(step_server.SWITCH, "1" if how == "server" else "0")
        out = tmp_path / how
        with open(tmp_path / f"{how}.log", "a") as log:
            assert _run(command(*train_args(data_root, out, "CoOp_TextRefiner")), log, None) == 0
        runs[how] = out
        if how == "server":  # it was the server's step, not a fallback
            server = step_server._local.server
            assert server is not None and server.process.poll() is None and server.env["OMP_NUM_THREADS"] == "1"
    assert_same_outputs(runs["process"], runs["server"], ["prompt_learner", "textrefiner"])
    server_log = (tmp_path / "server.log").read_text()
    assert "epoch [2/2]" in server_log and "Elapsed" in server_log  # train.py's console output reaches the log
    assert (runs["server"] / "log.txt").read_text().count("* accuracy") == (runs["process"] / "log.txt").read_text().count("* accuracy")


def test_exit_status_and_error_lines_are_those_of_a_process(tmp_path, monkeypatch):
    bad = command("--config-file", tmp_path / "missing.yaml", "--output-dir", tmp_path / "out")
    results = {}
    for how in ("server", "process"):
        monkeypatch.setenv(step_server.SWITCH, "1" if how == "server" else "0")
        log_path = tmp_path / f"{how}.log"
        with open(log_path, "a") as log:
            log.write("before\n")
            code = _run(bad, log, None)
            log.write("after\n")
        results[how] = code, log_path.read_text()
    assert results["server"][0] == results["process"][0] == 1
    for _, text in results.values():
        lines = text.splitlines()
        assert lines[0] == "before" and lines[-1] == "after"  # the step's lines between, none lost or reordered
        assert any(line.startswith("Error: ") and "missing.yaml" in line for line in lines)
    monkeypatch.setenv(step_server.SWITCH, "1")
    with open(tmp_path / "help.log", "a") as log:
        assert step_server.run(command("--help"), log, dict(os.environ)) == 0
    assert "usage:" in (tmp_path / "help.log").read_text()


def test_one_server_per_thread_and_environment_and_a_switch_to_turn_it_off(tmp_path, monkeypatch):
    monkeypatch.setenv(step_server.SWITCH, "1")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    other = {**env, "TEXTREFINER_TEST_MARK": "another environment"}
    with open(tmp_path / "a.log", "a") as log:
        assert step_server.run(command("--help"), log, env) == 0
        first = step_server._local.server.process.pid
        assert step_server.run(command("--help"), log, env) == 0
        assert step_server._local.server.process.pid == first  # reused: torch imported once
        assert step_server.run(command("--help"), log, other) == 0
        second = step_server._local.server
        assert second.process.pid != first and second.env["TEXTREFINER_TEST_MARK"] == "another environment"
        # two threads per step: importing torch starts GNU OpenMP's pool, which a fork must not inherit
        assert step_server.run(command("--help"), log, {**env, "OMP_NUM_THREADS": "2"}) is None
        assert step_server.run(command("--help"), None, env) is None  # the terminal: a process of its own
        assert step_server.run([sys.executable, "-c", "print(1)"], log, env) is None  # not a train.py step
        monkeypatch.setenv(step_server.SWITCH, "0")
        assert step_server.run(command("--help"), log, env) is None
    monkeypatch.setenv(step_server.SWITCH, "1")
    with open(tmp_path / "b.log", "a") as log:
        third = step_server.run(command("--help"), log, env), step_server._local.server
        third[1].process.kill()  # a server that died between steps is replaced by the next step's
        third[1].process.wait()
        assert step_server.run(command("--help"), log, env) == 0
    assert third[0] == 0 and step_server._local.server.process.pid != third[1].process.pid
    with open(tmp_path / "c.log", "a") as log:  # with OMP_NUM_THREADS 2 the step still runs, as a process
        assert _run(command("--help"), log, {**env, "OMP_NUM_THREADS": "2"}) == 0
    assert "usage:" in (tmp_path / "c.log").read_text()


def test_killing_the_sweep_stops_the_step_and_the_server(data_root, tmp_path):
    """kill -9 the process that asked for the step: the server gets SIGTERM, the step too (log.txt says
    "Stopped (exit status 143)") and neither outlives it."""
    out = tmp_path / "run"
    args = [str(a) for a in train_args(data_root, out, "CoOp_TextRefiner")]
    args[args.index("OPTIM.MAX_EPOCH") + 1] = "50"
    log = tmp_path / "sweep.log"
    sweep = ("import os; from textrefiner.protocols.steps import _run, TRAIN_COMMAND; "
             f"log = open({str(log)!r}, 'a'); print(os.getpid(), flush=True); "
             f"code = _run([*TRAIN_COMMAND, *{args!r}], log, None); print(code, flush=True)")
    proc = subprocess.Popen([sys.executable, "-c", sweep], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), step_server.SWITCH: "1", "OMP_NUM_THREADS": "1"})
    proc.stdout.readline()
    for _ in range(600):
        if "epoch [2/50]" in (log.read_text() if log.exists() else ""):
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the step never reached epoch 2")
    pids = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()]
    steps = [int(p) for server in pids for p in
             subprocess.run(["pgrep", "-P", str(server)], capture_output=True, text=True).stdout.split()]
    assert len(pids) == 1 and len(steps) == 1  # sweep -> server -> step
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(200):
        if not any(alive(p) for p in pids + steps):
            break
        time.sleep(0.05)
    assert not any(alive(p) for p in pids + steps), "the server or its step outlived the sweep"
    assert "Stopped (exit status 143)" in (out / "log.txt").read_text()
    assert not (out / "result.json").exists()
