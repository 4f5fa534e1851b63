"""Progress while a job runs: Dassl's epoch lines read from the job's log, one short line per
epoch (never lines an earlier attempt left in the log), in the sweep and in the demo."""
import re

import pytest

from launch_helpers import LAUNCH_OPTS
from textrefiner import demo
from textrefiner.protocols import progress
from textrefiner.protocols.progress import LogFollower, duration
from textrefiner.results.logs import epoch_line
from textrefiner.sweep.cli import main as sweep

EPOCH = "epoch [{e}/{n}] batch [{b}/2] time 0.5 (0.5) data 0.0 (0.0) loss 1.0 (1.0) lr 2.0000e-03 eta {eta}\n"


def test_dassl_epoch_lines_are_read_with_their_eta():
    line = epoch_line(EPOCH.format(e=3, n=10, b=1, eta="0:02:05"))
    assert (line.epoch, line.max_epoch, line.batch, line.num_batches, line.eta_seconds) == (3, 10, 1, 2, 125)
    assert epoch_line(EPOCH.format(e=1, n=50, b=2, eta="1 day, 1:00:00")).eta_seconds == 25 * 3600
    assert epoch_line("Evaluate on the *val* set") is None
    assert (duration(0.2), duration(125), duration(7200)) == ("1 s", "2 min", "2.0 h")


def test_a_follower_reports_each_new_epoch_of_the_log_once_and_nothing_written_before_it(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("Run few_shot; output to old\n" + EPOCH.format(e=7, n=9, b=1, eta="0:00:30"))  # an earlier attempt
    said = []
    follower = LogFollower(str(log), said.append, every=0)
    follower.offset = log.stat().st_size  # what start() does, without the thread: read() by hand below
    with open(log, "a") as f:
        f.write("===== attempt 2\nRun base2new_train; output to new\n" + EPOCH.format(e=1, n=3, b=1, eta="0:01:00"))
        f.write(EPOCH.format(e=1, n=3, b=2, eta="0:00:50")[:30])  # half a line, the rest comes later
        f.flush()
        follower.read()
        assert said == ["base2new_train epoch 1/3, ETA 1 min"]  # Dassl's estimate in the first epoch
        f.write(EPOCH.format(e=1, n=3, b=2, eta="0:00:50")[30:] + EPOCH.format(e=2, n=3, b=1, eta="0:09:00"))
        f.flush()
        follower.read()
    assert said[1:] == [said[1]] and re.fullmatch(r"base2new_train epoch 2/3, ETA \d+ s", said[1])  # measured pace
    follower.stop()  # never started: stopping is harmless


def test_a_follower_says_at_most_one_line_per_every_seconds(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("".join(EPOCH.format(e=e, n=5, b=1, eta="0:00:10") for e in range(1, 6)))
    said = []
    follower = LogFollower(str(log), said.append, every=3600)
    follower.read()
    assert said == ["epoch 1/5, ETA 10 s"]
    LogFollower(str(tmp_path / "not-yet.log"), said.append).read()  # a log not written yet: nothing, no error
    assert len(said) == 1


@pytest.fixture
def quick_progress(monkeypatch):
    """Look at logs often and report every epoch: a tiny job's epochs take a fraction of a second."""
    monkeypatch.setattr(progress, "POLL", 0.02)
    monkeypatch.setattr(progress, "EVERY", 0.0)


def test_a_sweep_prints_the_epochs_of_a_running_job(data_root, tmp_path, capsys, quick_progress):
    args = ["--protocol", "few_shot", "--datasets", "synthetic", "--shots", "2", "--seeds", "1", "--trainers", "CoOp",
            "--data", data_root, "--output", str(tmp_path / "out"), "--", *LAUNCH_OPTS, "OPTIM.MAX_EPOCH", "3"]
    with pytest.raises(SystemExit) as stop:
        sweep(args)
    out = capsys.readouterr().out
    assert stop.value.code == 0, out
    job = "[1/1] few_shot synthetic 2-shot CoOp seed 1"
    lines = [line for line in out.splitlines() if line.startswith(job)]
    assert lines[0].startswith(f"{job}: running") and lines[-1].startswith(f"{job}: ok in")
    epochs = [re.fullmatch(rf"{re.escape(job)}: few_shot epoch (\d)/3, ETA \d+ (s|min)", line) for line in lines[1:-1]]
    assert epochs and all(epochs), lines
    numbers = [int(m.group(1)) for m in epochs]
    assert numbers == sorted(set(numbers)), "each epoch once, in order"


def test_the_demo_prints_the_epochs_of_each_step_and_an_eta(data_root, tmp_path, capsys, quick_progress):
    demo.main(["--backbone", "random:tiny", "--trainers", "CoOp", "--seeds", "1", "2", "--epochs", "3",
               "--root", data_root, "--output-dir", str(tmp_path / "demo")])
    lines = capsys.readouterr().out.splitlines()
    first = [i for i, line in enumerate(lines) if line.startswith("[1/2] CoOp seed 1: ")]
    assert len(first) == 2, "one line when the job starts, one with its result"
    during = lines[first[0] + 1:first[1]]
    assert during and all(re.fullmatch(r" +base2new_train epoch [1-3]/3, ETA \d+ (s|min)", line) for line in during)
    assert re.fullmatch(r"\[1/2\] CoOp seed 1: base \d+\.\d%, novel \d+\.\d% \(\d+s\); 1 left, ETA \d+ (s|min)",
                        lines[first[1]])
