"""Durable logs: log.txt holds every printed line at once, rotated names never collide, and an
uncaught exception's traceback is written into the log."""
import sys

import pytest

import textrefiner.cli.train as train_cli
from conftest import COOP_YAML, SYNTHETIC_YAML, TINY
from textrefiner.framework import setup_logger, teardown_logger


def test_a_printed_line_is_in_the_file_before_any_flush(tmp_path):
    setup_logger(str(tmp_path))
    try:
        sys.stdout.write("first line\n")  # no flush: a kill -9 right now must not lose it
        assert (tmp_path / "log.txt").read_text() == "first line\n"
    finally:
        teardown_logger()


def test_logs_rotated_in_the_same_second_get_distinct_names(tmp_path):
    names = []
    for i in range(4):
        setup_logger(str(tmp_path))
        print(f"run {i}")
        names.append(sys.stdout.fpath)
        teardown_logger()
    assert len(set(names)) == 4
    assert [open(n).read() for n in names] == [f"run {i}\n" for i in range(4)]


def test_an_uncaught_exception_reaches_log_txt(data_root, tmp_path, monkeypatch):
    def broken(cfg):
        raise RuntimeError("a bug, not an input error")

    monkeypatch.setattr(train_cli, "build_trainer", broken)
    argv = ["--root", data_root, "--trainer", "CoOp", "--dataset-config-file", str(SYNTHETIC_YAML),
            "--config-file", str(COOP_YAML), "--output-dir", str(tmp_path), "MODEL.BACKBONE.NAME", TINY]
    with pytest.raises(RuntimeError):
        train_cli.main(argv)
    log = (tmp_path / "log.txt").read_text()
    assert "Traceback" in log and "RuntimeError: a bug, not an input error" in log
    assert not (tmp_path / "train.lock").exists()
