"""Bad input to the sweep and to parse_test_res.py: every mistake ends the command with exit status 1
and ONE ``Error:`` line naming the key or file and the fix, no traceback, and nothing written.
The sweep checks its whole file (and the config each step would build, with train.py's own checks)
before the first job; a job's log is written only by the sweep holding the job's lock."""
import fcntl
import hashlib
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from textrefiner.cli.parse_test_res import main as parse_test_res
from textrefiner.cli.train import main as train_main
from textrefiner.resources import config_path
from textrefiner.results.layout import RunKey, run_dir
from textrefiner.sweep.cli import main as sweep
from textrefiner.sweep.cli import parse, settings_from
from textrefiner.sweep.runner import log_path

CFG = "vit_b16_ep10_ctxv1"


def fingerprint(folder) -> dict:
    """path -> content hash of every file and folder under ``folder``."""
    return {str(p.relative_to(folder)): p.is_file() and hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))}


def refused(command, argv, capsys, folder) -> str:
    """Run ``command(argv)``; assert it stops with one ``Error:`` line (``SystemExit("Error: ...")``:
    Python prints it as the last line on stderr, exit status 1), no traceback, and ``folder``
    unchanged. Returns the message after ``Error: ``."""
    before = fingerprint(folder)
    with pytest.raises(SystemExit) as stop:
        command([str(a) for a in argv])
    captured = capsys.readouterr()
    error = stop.value.code
    assert isinstance(error, str) and error.startswith("Error: ") and "\n" not in error, (error, captured)
    assert "Error:" not in captured.out + captured.err and "Traceback" not in captured.out + captured.err
    assert fingerprint(folder) == before, "nothing written"
    return error[len("Error: "):]


@pytest.mark.parametrize("command, argv", [
    (["-m", "textrefiner.sweep"], ["--protocol", "base2new", "--seeds", "-1"]),
    ([str(REPO / "parse_test_res.py")], ["exp"]),
])
def test_the_commands_end_with_one_error_line_and_status_1(tmp_path, command, argv):
    os.makedirs(tmp_path / "exp" / "seed1" / "log.txt")
    proc = subprocess.run([sys.executable, *command, *argv], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1 and "Error" not in proc.stdout and "Traceback" not in proc.stdout
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("Error: "), proc.stderr


def sweep_file(tmp_path, text: str):
    path = tmp_path / "sweep.yaml"
    path.write_text("protocol: few_shot\ntrainers: [CoOp]\ndatasets: [synthetic]\nshots: [2]\nseeds: [1]\n"
                    f"output: {tmp_path / 'output'}\ndata: {tmp_path / 'data'}\n{text}")
    return path


def refused_sweep_file(tmp_path, capsys, text: str, *flags) -> str:
    return refused(sweep, ["--config", sweep_file(tmp_path, text), *flags], capsys, tmp_path)


# ----------------------------------------------------------------------------------- the sweep file

@pytest.mark.parametrize("key", ["trainers", "datasets", "seeds", "shots", "gpus", "compare", "opts"])
def test_an_empty_list_is_refused_instead_of_meaning_the_default(tmp_path, capsys, key):
    path = tmp_path / "sweep.yaml"
    path.write_text(f"protocol: base2new\noutput: {tmp_path / 'output'}\n{key}: []\n")
    message = refused(sweep, ["--config", path], capsys, tmp_path)
    assert message.startswith(f"{path}: {key} is an empty list") or message.startswith(f"{path}: {key} is empty")
    assert "leave the key out" in message


def test_an_empty_list_is_refused_in_a_dry_run_too(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text("protocol: base2new\ndatasets: []\n")
    assert "datasets is an empty list" in refused(sweep, ["--config", path, "--dry-run"], capsys, tmp_path)


@pytest.mark.parametrize("line, expected", [
    ("datasets:", "datasets has no value: give one, or leave the key out for the default"),
    ("seeds: one", "seeds must be a list of whole numbers >= 0 (e.g. seeds: [1, 2, 3]), got a string 'one'"),
    ("seeds: [1, two]", "seeds must be a list of whole numbers >= 0 (e.g. seeds: [1, 2, 3]); 'two' is not"),
    ("shots: [-1]", "shots must be a list of whole numbers >= 0"),
    ("datasets: dtd", "datasets must be a list of dataset config names (e.g. datasets: [caltech101, dtd])"),
    ("protocol: [few_shot]", "protocol must be a single name or path, got a list"),
    ("overwrite: 1", "overwrite must be true or false, got a number 1"),
    ("opts: OPTIM.LR 0.1", "opts must be a mapping of train.py config keys to values"),
    ("slurm: gpu", "slurm must be a mapping of submitit parameters"),
    ("compare: [CoOp]", "compare takes two trainer names A and B"),
    ("seeds: [1, 1]", "seeds names 1 more than once"),
])
def test_a_value_of_the_wrong_type_names_the_key_and_the_type_expected(tmp_path, capsys, line, expected):
    message = refused_sweep_file(tmp_path, capsys, line + "\n")
    assert message.startswith(f"{tmp_path / 'sweep.yaml'}: ") and expected in message


def test_a_flag_out_of_range_names_the_flag(tmp_path, capsys):
    message = refused(sweep, ["--protocol", "few_shot", "--seeds", "-1", "--output", tmp_path / "output"],
                      capsys, tmp_path)
    assert message.startswith("--seeds must be a list of whole numbers >= 0")


def test_an_unknown_key_gets_the_closest_known_one(tmp_path, capsys):
    message = refused_sweep_file(tmp_path, capsys, "seed: [1]\n")
    assert "unknown sweep key 'seed' (did you mean seeds?)" in message


def test_a_choice_outside_its_values_is_refused(tmp_path, capsys):
    assert "executor must be one of" in refused_sweep_file(tmp_path, capsys, "executor: cluster\n")
    assert "compare names MaPLe, which this sweep does not run" in refused_sweep_file(
        tmp_path, capsys, "compare: [CoOp, MaPLe]\n")


def test_broken_yaml_names_the_file_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text("protocol: few_shot\nseeds: [1, 2\n")
    message = refused(sweep, ["--config", path], capsys, tmp_path)
    assert message.startswith(f"{path} is not valid YAML") and message.endswith("fix the syntax there")
    message = refused(sweep, ["--config", tmp_path / "missing.yaml"], capsys, tmp_path)
    assert message.startswith(f"Sweep file {tmp_path / 'missing.yaml'} not found")
    path.write_text("- protocol\n- few_shot\n")
    assert "a sweep file is a mapping of keys" in refused(sweep, ["--config", path], capsys, tmp_path)


def test_an_unknown_config_key_in_opts_gets_the_closest_valid_one(tmp_path, capsys):
    message = refused_sweep_file(tmp_path, capsys, "opts: {OPTIM.MAX_EPOCHS: 2}\n")
    assert message.startswith(f"Unknown config key OPTIM.MAX_EPOCHS in the opts of {tmp_path / 'sweep.yaml'} "
                              "(did you mean OPTIM.MAX_EPOCH?)")
    assert "nothing started" in message
    message = refused(sweep, ["--protocol", "few_shot", "--datasets", "synthetic", "--trainers", "CoOp",
                              "--output", tmp_path / "output", "--dry-run", "--", "OPTIM.LRR", "0.1"], capsys, tmp_path)
    assert message.startswith("Unknown config key OPTIM.LRR in the overrides after -- (did you mean OPTIM.LR?)")


@pytest.mark.parametrize("key, value", [("OPTIM.MAX_EPOCH", "-1"), ("TRAINER.COOP.PREC", "fp64"),
                                        ("OPTIM.LR", "0.0")])
def test_a_value_that_would_fail_every_job_is_refused_with_train_py_s_own_check(tmp_path, capsys, key, value):
    message = refused_sweep_file(tmp_path, capsys, f"opts: {{{key}: {value}}}\n")
    # the same check train.py runs before it writes anything, with the same words
    with pytest.raises(SystemExit):  # train.py prints its Error line, then exits 1
        train_main(["--trainer", "CoOp", "--dataset-config-file", config_path("datasets", "synthetic.yaml"),
                    "--config-file", config_path("trainers", "CoOp", f"{CFG}.yaml"),
                    "--output-dir", str(tmp_path / "train"), key, value])
    train_message = capsys.readouterr().err.strip().splitlines()[-1]
    assert train_message.startswith("Error: ") and key in train_message
    assert message.startswith(train_message[len("Error: "):])
    assert f"with the opts of {tmp_path / 'sweep.yaml'}" in message and "nothing started" in message
    assert not (tmp_path / "output").exists() and not (tmp_path / "train").exists()


def test_a_run_tag_or_protocol_key_in_opts_is_one_error_line(tmp_path, capsys):
    assert "Run tag 'seed1'" in refused_sweep_file(tmp_path, capsys, "tag: seed1\n")
    assert "Do not override DATASET.NUM_SHOTS" in refused_sweep_file(tmp_path, capsys,
                                                                     "opts: {DATASET.NUM_SHOTS: 4}\n")


def test_no_protocol_prints_usage_then_one_error_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        sweep([])
    assert stop.value.code == ("Error: say what to run with --protocol or --config "
                               "(add --dry-run to list the jobs first)")
    assert "usage: python -m textrefiner.sweep" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())


def test_a_damaged_result_json_in_the_grid_names_the_file(tmp_path, capsys):
    folder = run_dir(str(tmp_path / "output"), RunKey("few_shot", "synthetic", 2, "CoOp", CFG, 1))
    os.makedirs(folder)
    with open(os.path.join(folder, "result.json"), "w") as f:
        f.write('{"accuracy": 7')  # cut short
    for flags in ((), ("--dry-run",)):
        message = refused_sweep_file(tmp_path, capsys, "", *flags)
        assert message.startswith(f"{folder}/result.json is damaged: not valid JSON")
        assert "Delete it and rerun the job that wrote it" in message


# ----------------------------------------------------------------------------------- job locks

def test_a_job_locked_by_another_sweep_is_not_written_or_run(tmp_path, capsys):
    """Two copies of one sweep at once: the one without the job's lock leaves the log alone and its
    FAILED line says the job is locked, not the other sweep's progress."""
    out = tmp_path / "output"
    log = out / "sweep_logs" / "few_shot-synthetic-shots2-CoOp-vit_b16_ep10_ctxv1-seed1.log"
    os.makedirs(log.parent)
    winner = open(log, "a")
    try:
        fcntl.flock(winner.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # the other sweep, mid-job
        winner.write("===== 2025-01-01 10:00:00 few_shot synthetic 2-shot CoOp seed 1 (process 4242 on node7)\n"
                     "epoch [1/9] batch [1/2] loss 2.3\n")
        winner.flush()
        before = log.read_bytes()
        with pytest.raises(SystemExit) as stop:
            sweep(["--protocol", "few_shot", "--datasets", "synthetic", "--shots", "2", "--seeds", "1",
                   "--trainers", "CoOp", "--data", str(tmp_path / "data"), "--output", str(out), "--no-preflight"])
    finally:
        winner.close()
    stdout = capsys.readouterr().out
    assert stop.value.code == 1
    assert log.read_bytes() == before, "the log belongs to the sweep holding the lock"
    failed = [line for line in stdout.splitlines() if "FAILED" in line]
    assert failed and all("epoch [1/9]" not in line for line in failed)
    assert "FAILED at lock (another sweep (process 4242 on node7, since 2025-01-01 10:00:00) is running this job " \
           "and holds its log: wait for it to finish or stop it, then rerun this sweep)" in stdout
    assert not os.path.exists(run_dir(str(out), RunKey("few_shot", "synthetic", 2, "CoOp", CFG, 1))), "no train.py"
    job = json.loads((out / "sweep_logs" / "sweep_report.json").read_text())["jobs"][0]
    assert (job["status"], job["failed_step"], job["steps_run"]) == ("failed", "lock", [])


def test_a_tagged_job_has_its_own_log_and_lock():
    """A tagged job writes other folders than the untagged one: a sweep of each may run at once."""
    grid = ["--protocol", "few_shot", "--datasets", "synthetic", "--shots", "2", "--seeds", "1", "--trainers", "CoOp"]
    logs = {log_path("logs", settings_from(*parse([*grid, *tag])).jobs()[0]) for tag in ((), ("--tag", "ep2"))}
    assert logs == {os.path.join("logs", "few_shot-synthetic-shots2-CoOp-vit_b16_ep10_ctxv1-seed1.log"),
                    os.path.join("logs", "few_shot-synthetic-shots2-CoOp-vit_b16_ep10_ctxv1-seed1-ep2.log")}


# ----------------------------------------------------------------------------------- parse_test_res.py

def test_parse_test_res_errors_are_one_error_line(tmp_path, capsys):
    message = refused(parse_test_res, [tmp_path / "nowhere"], capsys, tmp_path)
    assert message.startswith(f"{tmp_path / 'nowhere'} is not a folder")
    message = refused(parse_test_res, [tmp_path / "nowhere", "--table", "xd"], capsys, tmp_path)
    assert "pass the output root" in message
    os.makedirs(tmp_path / "output")
    message = refused(parse_test_res, [tmp_path / "output", "--table", "few_shot", "--paper"], capsys, tmp_path)
    assert message.startswith("--paper: the paper has tables for")


def test_a_folder_named_like_a_log_is_named_without_a_traceback(tmp_path, capsys):
    os.makedirs(tmp_path / "exp" / "seed1" / "log.txt")
    message = refused(parse_test_res, [tmp_path / "exp"], capsys, tmp_path)
    assert message.startswith(f"{tmp_path / 'exp' / 'seed1' / 'log.txt'} is a folder where a log file belongs")
    assert "move or rename it" in message


def test_table_on_a_truncated_result_json_names_the_file_and_what_to_do(tmp_path, capsys):
    good = run_dir(str(tmp_path), RunKey("few_shot", "dtd", 16, "CoOp", CFG, 1))
    bad = run_dir(str(tmp_path), RunKey("few_shot", "dtd", 16, "CoOp", CFG, 2))
    for folder, text in ((good, json.dumps({"accuracy": 60.0})), (bad, '{"accuracy": 6')):
        os.makedirs(folder)
        with open(os.path.join(folder, "result.json"), "w") as f:
            f.write(text)
    message = refused(parse_test_res, [tmp_path, "--table", "few_shot"], capsys, tmp_path)
    assert message.startswith(f"{bad}/result.json is damaged: not valid JSON")
    assert message.endswith("Delete it and rerun the job that wrote it (its launcher or sweep runs that folder again)")
