"""The installed commands (setup.py's console_scripts): each is main(argv) -> exit status."""
import re

import pytest

from conftest import REPO
from textrefiner.cli import console

DECLARED = dict(re.findall(r'"(textrefiner-[a-z]+) = textrefiner\.cli\.console:([a-z]+)"',
                           (REPO / "setup.py").read_text()))


def test_setup_py_declares_the_six_commands():
    assert DECLARED == {"textrefiner-train": "train", "textrefiner-table": "table", "textrefiner-sweep": "sweep",
                        "textrefiner-paper": "paper", "textrefiner-demo": "demo", "textrefiner-launch": "launch"}


@pytest.mark.parametrize("command", sorted(DECLARED))
def test_every_command_answers_help_with_status_0(command, capsys):
    assert getattr(console, DECLARED[command])(["--help"]) == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_launch_names_itself_in_its_usage_lines(capsys):
    assert console.launch([]) == 2
    assert "usage: textrefiner-launch HOST {base2new_train," in capsys.readouterr().err
    assert console.launch(["coop", "few_shot"]) == 2
    assert "usage: textrefiner-launch coop few_shot DATASET SHOTS [SEED] [KEY VALUE ...]" in capsys.readouterr().err
    assert console.launch(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: textrefiner-launch HOST STEP ARG...")


def test_a_one_line_error_becomes_status_1_on_stderr(tmp_path, capsys):
    assert console.table([str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and len(err.splitlines()) == 1


@pytest.mark.parametrize("command, module", [("textrefiner-sweep", "textrefiner.sweep"),
                                             ("textrefiner-paper", "textrefiner.paper")])
def test_sweep_and_paper_name_the_command_they_were_started_as(command, module, monkeypatch, capsys):
    function = getattr(console, DECLARED[command])
    monkeypatch.setattr("sys.argv", [f"/some/venv/bin/{command}"])
    assert function(["--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: {command} ")
    monkeypatch.setattr("sys.argv", ["/somewhere/__main__.py"])
    assert function(["--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m {module} ")
