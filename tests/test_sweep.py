"""The sweep runner: the grid, settings precedence, and a sweep that fails midway and is
finished by a rerun (through submitit's local executor) without redoing finished jobs."""
import importlib.util
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO
from launch_helpers import LAUNCH_OPTS
from textrefiner.results.layout import RunKey, run_dir
from textrefiner.results.render import compare_table
from textrefiner.results.tables import Stat, Summary
from textrefiner.errors import UserError
from textrefiner.sweep.cli import main, parse, settings_from

CFG = "vit_b16_ep10_ctxv1"


def test_dry_run_lists_the_grid(tmp_path, capsys):
    main(["--protocol", "base2new", "--datasets", "synthetic", "caltech101", "--seeds", "1", "2",
          "--trainers", "CoOp", "CoOp_TextRefiner", "--output", str(tmp_path), "--dry-run"])
    out = capsys.readouterr().out
    assert "= 8 jobs" in out
    jobs = [line for line in out.splitlines() if line.startswith("[")]
    # paper order of datasets, then seeds, then trainers in the given order
    assert [j.split(":")[0] for j in jobs[:3]] == [
        "[1/8] base2new caltech101 16-shot CoOp seed 1",
        "[2/8] base2new caltech101 16-shot CoOp_TextRefiner seed 1",
        "[3/8] base2new caltech101 16-shot CoOp seed 2",
    ]
    for trainer in ("CoOp", "CoOp_TextRefiner"):
        for kind in ("base2new_train", "base2new_test"):
            assert run_dir(str(tmp_path), RunKey(kind, "synthetic", 16, trainer, CFG, 2)) in out
    assert not any(tmp_path.iterdir()), "a dry run writes nothing"

    main(["--protocol", "xd", "--datasets", "imagenetv2", "imagenet_r", "--seeds", "1", "2", "--trainers", "CoOp",
          "--output", str(tmp_path), "--dry-run"])
    out = capsys.readouterr().out
    assert "= 2 jobs" in out and out.count("xd_train") == 2 and out.count("xd_test") == 4
    assert os.path.join(str(tmp_path), "evaluation", "CoOp", f"{CFG}_16shots", "imagenet_r", "seed2") in out


def test_flags_override_the_yaml_file(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text("protocol: few_shot\nseeds: [1, 2, 3]\ntrainers: [CoOp]\nopts: {OPTIM.MAX_EPOCH: 2}\n")
    settings = settings_from(*parse(["--config", str(config), "--seeds", "4", "--", "TRAIN.PRINT_FREQ", "7"]))
    assert (settings.protocol, settings.seeds, settings.shots) == ("few_shot", [4], [1, 2, 4, 8, 16])
    assert settings.opts == ["TRAIN.PRINT_FREQ", "7"]
    assert settings_from(*parse(["--config", str(config)])).opts == ["OPTIM.MAX_EPOCH", "2"]
    config.write_text("seed: [1]\n")
    with pytest.raises(UserError, match=r"unknown sweep key 'seed' \(did you mean seeds\?\)"):
        settings_from(*parse(["--config", str(config)]))


def test_the_default_comparison_is_textrefiner_minus_its_baseline(tmp_path):
    for host, baseline in (("coop", "CoOp"), ("maple", "MaPLe")):
        settings = settings_from(*parse(["--host", host, "--output", str(tmp_path)]))
        # the jobs keep the host's order (TextRefiner first); the table puts the baseline as A
        assert settings.trainers == [f"{baseline}_TextRefiner", baseline]
        assert settings.compare == [baseline, f"{baseline}_TextRefiner"]
    given = ["--trainers", "CoOp_TextRefiner", "CoOp", "--output", str(tmp_path)]
    assert settings_from(*parse(given)).compare == ["CoOp", "CoOp_TextRefiner"]
    explicit = settings_from(*parse([*given, "--compare", "CoOp_TextRefiner", "CoOp"]))
    assert explicit.compare == ["CoOp_TextRefiner", "CoOp"], "an explicit --compare is kept as given"

    # B-A of the default comparison is TextRefiner's gain: positive when TextRefiner scores higher
    summary = Summary("few_shot", "t", columns=["Acc"], rows=["dtd"], methods=["CoOp_TextRefiner", "CoOp"],
                      cells={("CoOp", "dtd", "Acc"): Stat(60.0), ("CoOp_TextRefiner", "dtd", "Acc"): Stat(63.0)})
    headers, rows = compare_table(summary, *settings_from(*parse(["--output", str(tmp_path)])).compare)
    assert headers == ["Dataset", "Acc (A)", "Acc (B)", "Acc B-A"]
    assert rows == [["dtd", 60.0, 63.0, 3.0]]


def run_sweep(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "textrefiner.sweep", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_a_failed_sweep_is_finished_by_a_rerun_without_redoing_done_jobs(data_root, tmp_path):
    out = tmp_path / "output"
    args = ["--protocol", "few_shot", "--datasets", "synthetic", "--shots", "2", "--seeds", "1", "2",
            "--trainers", "CoOp", "--data", data_root, "--output", str(out), "--", *LAUNCH_OPTS]
    seed_dir = {s: run_dir(str(out), RunKey("few_shot", "synthetic", 2, "CoOp", CFG, s)) for s in (1, 2)}
    os.makedirs(os.path.dirname(seed_dir[2]))
    with open(seed_dir[2], "w") as f:  # a file where seed 2's output folder must go: its train.py fails
        f.write("in the way")

    first = run_sweep(args, tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    report_path = out / "sweep_logs" / "sweep_report.json"
    jobs = {j["name"].rsplit("-", 1)[1]: j for j in json.loads(report_path.read_text())["jobs"]}
    assert (jobs["seed1"]["status"], jobs["seed2"]["status"]) == ("ok", "failed")
    assert "FAILED" in first.stdout and jobs["seed2"]["log"] in first.stdout
    assert "Traceback" in open(jobs["seed2"]["log"]).read()
    done = os.path.join(seed_dir[1], "result.json")
    mtime = os.stat(done).st_mtime_ns

    os.remove(seed_dir[2])
    # submitit is an optional extra ('.[test]' has it); without it the rerun still proves the resume
    executor = "submitit-local" if importlib.util.find_spec("submitit") else "local"
    second = run_sweep(["--executor", executor, *args], tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    jobs = {j["name"].rsplit("-", 1)[1]: j for j in json.loads(report_path.read_text())["jobs"]}
    assert (jobs["seed1"]["status"], jobs["seed2"]["status"]) == ("skipped", "ok")
    assert jobs["seed2"]["steps_run"] == ["few_shot"]
    assert os.stat(done).st_mtime_ns == mtime
    assert os.path.isfile(os.path.join(seed_dir[2], "result.json"))
    assert "Few-shot learning" in second.stdout and "2 shots" in second.stdout


def report_jobs(out) -> dict:
    """seed -> the job's entry in the last sweep's report."""
    report = json.loads((out / "sweep_logs" / "sweep_report.json").read_text())
    return {j["name"].rsplit("-", 1)[1]: j for j in report["jobs"]}


def test_a_job_whose_folder_lacks_result_json_resumes_from_its_checkpoints(data_root, tmp_path, capsys):
    """The real interruption: the output folder exists (checkpoints, log.txt) without result.json."""
    out = tmp_path / "output"
    args = ["--protocol", "few_shot", "--datasets", "synthetic", "--shots", "2", "--seeds", "1", "2",
            "--trainers", "CoOp", "--data", data_root, "--output", str(out), "--", *LAUNCH_OPTS]
    seed_dir = {s: run_dir(str(out), RunKey("few_shot", "synthetic", 2, "CoOp", CFG, s)) for s in (1, 2)}
    first = run_sweep(args, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    done = os.path.join(seed_dir[1], "result.json")
    mtime = os.stat(done).st_mtime_ns

    os.remove(os.path.join(seed_dir[2], "result.json"))  # killed after its last checkpoint
    assert os.path.isfile(os.path.join(seed_dir[2], "prompt_learner", "checkpoint"))
    old_log = open(os.path.join(seed_dir[2], "log.txt")).read()

    cut = args.index("--")  # the same overrides: a run made with others would not count as done
    main([*args[:cut], "--dry-run", *args[cut:]])
    states = dict(line.rsplit(": ", 1) for line in capsys.readouterr().out.splitlines() if line.startswith("["))
    assert states == {"[1/2] few_shot synthetic 2-shot CoOp seed 1": "done",
                      "[2/2] few_shot synthetic 2-shot CoOp seed 2": "partial"}

    second = run_sweep(args, tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    jobs = report_jobs(out)
    assert (jobs["seed1"]["status"], jobs["seed2"]["status"]) == ("skipped", "ok")
    assert jobs["seed2"]["steps_run"] == ["few_shot"]
    assert "1 ran, 1 skipped" in second.stdout
    last_attempt = open(jobs["seed2"]["log"]).read().split("===== ")[-1]
    assert f"{seed_dir[2]} exists without result.json (interrupted or failed): resuming from its checkpoints" \
        in last_attempt
    assert os.path.isfile(os.path.join(seed_dir[2], "result.json"))
    # train.py kept the first log and wrote this run's to a timestamped sibling, which says it resumed
    rotated = glob.glob(os.path.join(seed_dir[2], "log.txt-*"))
    assert len(rotated) == 1 and re.fullmatch(r"log\.txt-\d{4}(-\d\d){5}", os.path.basename(rotated[0]))
    assert f"Found checkpoint at {seed_dir[2]} (will resume training)" in open(rotated[0]).read()
    assert open(os.path.join(seed_dir[2], "log.txt")).read() == old_log
    assert os.stat(done).st_mtime_ns == mtime
    assert not glob.glob(os.path.join(seed_dir[1], "log.txt-*"))


def test_the_submitit_local_executor_runs_a_job(data_root, tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "output"
    args = ["--executor", "submitit-local", "--protocol", "few_shot", "--datasets", "synthetic", "--shots", "2",
            "--seeds", "1", "--trainers", "CoOp", "--data", data_root, "--output", str(out), "--", *LAUNCH_OPTS]
    result = run_sweep(args, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # submitit's path, not the plain local one: the job got a submitit job id and submitit's folder
    assert "executor submitit-local" in result.stdout
    assert re.search(r"\[1/1\] few_shot synthetic 2-shot CoOp seed 1: running on local job \d+", result.stdout)
    report = json.loads((out / "sweep_logs" / "sweep_report.json").read_text())
    assert report["settings"]["executor"] == "submitit-local"
    assert [(j["status"], j["steps_run"]) for j in report["jobs"]] == [("ok", ["few_shot"])]
    assert glob.glob(str(out / "sweep_logs" / "submitit" / "*_result.pkl"))
    run = run_dir(str(out), RunKey("few_shot", "synthetic", 2, "CoOp", CFG, 1))
    assert os.path.isfile(os.path.join(run, "result.json"))
