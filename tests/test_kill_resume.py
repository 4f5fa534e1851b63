"""``kill -9`` mid-epoch, then the identical command again: the run ends bit-identical to an
uninterrupted one (checkpoint tensors and result.json metrics), the killed run's log keeps
every line it printed, and the stale lock is taken over. Through a launcher, killing the
launcher also stops its train.py."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, SYNTHETIC_YAML, TINY, run_train_py
from launch_helpers import LAUNCH_OPTS, launcher_env

CONFIGS = {
    "CoOp_TextRefiner": REPO / "configs" / "trainers" / "CoOp_TextRefiner" / "vit_b16_ep10_ctxv1.yaml",
    "MaPLe_TextRefiner": REPO / "configs" / "trainers" / "MaPLe_TextRefiner" / "vit_b16_c2_ep5_batch4_2ctx.yaml",
}
RUN_OPTS = ["OPTIM.MAX_EPOCH", 2, "TRAIN.CHECKPOINT_FREQ", 1, "TRAIN.PRINT_FREQ", 1, "TEST.FINAL_MODEL", "best_val"]
METRICS = ("accuracy", "macro_f1", "per_class_accuracy", "num_images")


def train_args(root, out, trainer):
    return ["--root", root, "--seed", 1, "--trainer", trainer, "--dataset-config-file", SYNTHETIC_YAML,
            "--config-file", CONFIGS[trainer], "--output-dir", out,
            "MODEL.BACKBONE.NAME", TINY, "DATALOADER.NUM_WORKERS", 0, "DATALOADER.TRAIN_X.BATCH_SIZE", 4,
            "DATASET.NUM_SHOTS", 2, "TRAINER.COOP.PREC", "fp32", "TRAINER.MAPLE.PREC", "fp32",
            "TRAINER.MAPLE.PROMPT_DEPTH", 2, *RUN_OPTS]


def kill_when(command, marker: str, env=None, cwd=REPO):
    """Start ``command``, SIGKILL it once a line containing ``marker`` is printed; returns that line."""
    proc = subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=cwd)
    seen = None
    for line in proc.stdout:
        if marker in line:
            seen = line.strip()
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.stdout.read()  # until every writer (a launcher's train.py too) has gone
    proc.wait()
    assert seen is not None, f"{marker!r} never printed"
    return seen


def assert_same_outputs(ref, run, names):
    for name in names:
        for file in ("model.pth.tar-2", "model-best.pth.tar"):
            a = torch.load(ref / name / file, map_location="cpu", weights_only=True)
            b = torch.load(run / name / file, map_location="cpu", weights_only=True)
            assert (a["epoch"], a["val_result"]) == (b["epoch"], b["val_result"]), file
            for k in a["state_dict"]:
                assert torch.equal(a["state_dict"][k], b["state_dict"][k]), f"{name}/{file}: {k}"
    ref_result = json.loads((ref / "result.json").read_text())
    run_result = json.loads((run / "result.json").read_text())
    assert {k: ref_result[k] for k in METRICS} == {k: run_result[k] for k in METRICS}


@pytest.mark.parametrize("trainer", ["CoOp_TextRefiner", "MaPLe_TextRefiner"])
def test_kill_9_then_rerun_is_bit_identical(data_root, tmp_path, trainer):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    run_train_py(train_args(data_root, ref, trainer))
    command = [sys.executable, REPO / "train.py", *train_args(data_root, out, trainer)]
    last = kill_when(command, "epoch [2/2] batch [3/5]")
    assert (out / "train.lock").exists()  # left behind by the killed process
    assert last in (out / "log.txt").read_text()  # every printed line reached the log
    rerun = run_train_py(train_args(data_root, out, trainer))
    assert "Removing a stale lock" in rerun.stdout and "Resuming after epoch 1" in rerun.stdout
    assert not (out / "train.lock").exists()
    assert_same_outputs(ref, out, ["prompt_learner", "textrefiner"])


def test_killing_a_launcher_stops_its_train_py_and_the_rerun_resumes_exactly(data_root, tmp_path):
    script = [REPO / "scripts" / "coop" / "base2new_train.sh", "synthetic", 1, *LAUNCH_OPTS, *RUN_OPTS]
    runs = {}
    for name in ("ref", "killed"):
        env = launcher_env(data_root, tmp_path / name)
        if name == "killed":
            kill_when(["bash", *script], "epoch [2/2] batch [1/", env=env, cwd=tmp_path)
        subprocess.run(["bash", *map(str, script)], env=env, cwd=tmp_path, check=True, capture_output=True)
        runs[name] = next((tmp_path / name).rglob("result.json")).parent
    killed_log = (runs["killed"] / "log.txt").read_text()
    assert "Stopped (exit status 143)" in killed_log  # SIGTERM from the dying launcher, not orphaned
    assert_same_outputs(runs["ref"], runs["killed"], ["prompt_learner", "textrefiner"])


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_child_dies_with_its_parent(tmp_path):
    """The mechanism the sweep relies on: kill -9 the parent, the child gets SIGTERM."""
    child = ("import os, sys, time; from textrefiner.cli.parent import die_with_parent; die_with_parent(); "
             "print(os.getpid(), flush=True); time.sleep(60)")
    parent = (f"import os, subprocess, sys; env = {{**os.environ, 'TEXTREFINER_PARENT_PID': str(os.getpid())}}; "
              f"subprocess.run([sys.executable, '-c', {child!r}], env=env)")
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    child_pid = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(100):
        if not alive(child_pid):
            return
        time.sleep(0.05)
    os.kill(child_pid, signal.SIGKILL)
    pytest.fail("the child outlived its parent")
