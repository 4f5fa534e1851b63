"""The built-in engine writes TensorBoard scalars as Dassl does (folder <output>/tensorboard, tags
train/<loss>, train/lr per iteration, <split>/<metric> per evaluation) when tensorboard is
installed, and trains as before without it."""
import sys
import types

import pytest

from conftest import build, make_cfg
from textrefiner.framework import FRAMEWORK

pytestmark = pytest.mark.skipif(FRAMEWORK != "builtin", reason="Dassl writes its own TensorBoard files")


class RecordingWriter:
    """Stands in for torch.utils.tensorboard.SummaryWriter: remembers what it was given."""

    made = []

    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.closed = log_dir, [], False
        RecordingWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def close(self):
        self.closed = True


def train_once(data_root, output_dir):
    trainer = build(make_cfg(data_root, "CoOp", str(output_dir), opts=["TEST.FINAL_MODEL", "last_step"]))
    trainer.train()
    return trainer


def test_dassls_tags_and_folder(data_root, tmp_path, monkeypatch):
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = RecordingWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    RecordingWriter.made.clear()
    trainer = train_once(data_root, tmp_path)
    (writer,) = RecordingWriter.made
    assert writer.log_dir == str(tmp_path / "tensorboard") and writer.closed
    tags = {tag for tag, _, _ in writer.scalars}
    assert {"train/loss", "train/acc", "train/lr", "test/accuracy"} <= tags
    steps = [step for tag, _, step in writer.scalars if tag == "train/lr"]
    assert steps == list(range(trainer.num_batches))  # epoch * batches + batch, one epoch


def test_without_tensorboard_training_still_runs(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    train_once(data_root, tmp_path)
    assert "TensorBoard is not installed" in capsys.readouterr().out
    assert not (tmp_path / "tensorboard").exists() and (tmp_path / "result.json").is_file()


def test_event_files_are_written(data_root, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_once(data_root, tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "test/accuracy"} <= set(events.Tags()["scalars"])
