"""textrefiner.atomic: a failed write leaves the old file and no temporary one; what a kill leaves
behind is what the resume's clean-up removes; files and folders get the usual mode."""
import json
import os
import stat

import pytest

from textrefiner.atomic import atomic_folder, atomic_write, write_json
from textrefiner.framework.checkpoint_set import remove_partial_files


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "result.json"
    write_json({"accuracy": 1.0}, str(path), indent=2)

    def half_then_full_disk(tmp):
        with open(tmp, "w") as f:
            f.write('{"accu')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(half_then_full_disk, str(path))
    assert json.loads(path.read_text()) == {"accuracy": 1.0}
    assert os.listdir(tmp_path) == ["result.json"]


def test_written_text_and_mode_are_those_of_a_plain_open(tmp_path):
    record = {"b": [1, 2.5, None], "a": "é"}
    write_json(record, str(tmp_path / "atomic.json"), indent=2)
    with open(tmp_path / "plain.json", "w") as f:
        json.dump(record, f, indent=2)
    assert (tmp_path / "atomic.json").read_bytes() == (tmp_path / "plain.json").read_bytes()
    assert mode(tmp_path / "atomic.json") == mode(tmp_path / "plain.json")


def test_what_a_kill_leaves_is_what_the_resume_removes(tmp_path):
    names = []

    def killed(tmp):
        names.append(os.path.relpath(tmp, tmp_path))
        raise KeyboardInterrupt

    for path in (tmp_path / "result.json", tmp_path / "prompt_learner" / "model.pth.tar-1"):
        with pytest.raises(KeyboardInterrupt):
            atomic_write(killed, str(path))
    for name in names:  # a kill -9 at that instant leaves the temporary file
        (tmp_path / name).write_bytes(b"half a file")
    assert sorted(remove_partial_files(str(tmp_path))) == sorted(str(tmp_path / name) for name in names)


def test_a_folder_appears_complete_or_not_at_all(tmp_path):
    target = tmp_path / "converted"
    with pytest.raises(RuntimeError):
        with atomic_folder(str(target)) as tmp:
            open(os.path.join(tmp, "half"), "w").close()
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []
    with atomic_folder(str(target)) as tmp:
        open(os.path.join(tmp, "done"), "w").close()
    assert os.listdir(target) == ["done"]
    os.mkdir(tmp_path / "plain")
    assert mode(target) == mode(tmp_path / "plain")


def test_a_folder_another_process_finished_first_is_no_error(tmp_path):
    target = tmp_path / "synthetic"
    with atomic_folder(str(target), prefix=".synthetic-", complete_marker="split.json") as tmp:
        open(os.path.join(tmp, "split.json"), "w").close()
        os.mkdir(target)  # the other process's copy lands first
        (target / "split.json").write_text("{}")
        (target / "images").mkdir()
    assert sorted(os.listdir(tmp_path)) == ["synthetic"]
    with pytest.raises(OSError):
        with atomic_folder(str(target)):
            pass  # no marker named: the existing folder is an error
