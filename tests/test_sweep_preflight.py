"""The sweep before and while it runs: no flags prints usage, a preflight lists everything the
grid lacks at once before any job starts, progress lines carry each job's log and an ETA."""
import importlib.util
import re
import shutil
from types import SimpleNamespace

import pytest

from textrefiner.backbones import registry as backbone_registry
from textrefiner.sweep.cli import main, parse, settings_from
from textrefiner.sweep.executors import Progress, duration
from textrefiner.sweep.preflight import preflight
from textrefiner.sweep.runner import JobOutcome
from textrefiner.testbed import backbone as testbed_backbone


def test_no_flags_prints_usage_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main([])
    assert stop.value.code.startswith("Error: say what to run with --protocol or --config")
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m textrefiner.sweep --protocol")
    assert len(out.splitlines()) <= 5 and out.splitlines()[-1] == "Every flag: python -m textrefiner.sweep --help"
    assert "--no-preflight" not in out, "the short usage, not the whole help"
    assert not any(tmp_path.iterdir())


def test_preflight_lists_every_missing_dataset_and_weights_before_any_job(tmp_path, capsys):
    out = tmp_path / "output"
    args = ["--protocol", "base2new", "--datasets", "dtd", "caltech101", "--trainers", "CoOp", "--seeds", "1",
            "--data", str(tmp_path / "data"), "--output", str(out), "--", "MODEL.BACKBONE.NAME",
            str(tmp_path / "ViT-B-16.pt")]
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    assert "Nothing started" in err and "3 problem(s)" in err
    assert stop.value.code.startswith("Error: the 3 problem(s) above: fix them and rerun")
    assert "--no-preflight" in stop.value.code
    assert "DescribableTextures: dataset folder not found" in err and "Caltech101: dataset folder not found" in err
    assert f"CLIP weights {tmp_path / 'ViT-B-16.pt'}: no such file" in err
    assert not out.exists(), "no job started"


def _preflight_problems(tmp_path, capsys, backbone, grid=("--protocol", "base2new", "--datasets", "dtd",
                                                           "--trainers", "CoOp", "--seeds", "1")):
    out = tmp_path / "output"
    args = [*grid, "--data", str(tmp_path / "data"), "--output", str(out), "--", "MODEL.BACKBONE.NAME", backbone]
    with pytest.raises(SystemExit):
        main(args)
    assert not out.exists(), "no job started"
    return [line.strip()[2:] for line in capsys.readouterr().err.splitlines() if line.strip().startswith("- ")]


def test_preflight_accepts_the_testbed_clip_and_names_its_file_when_missing(tmp_path, capsys, monkeypatch):
    # the missing dataset stops the sweep; the shipped testbed weights are no problem
    problems = _preflight_problems(tmp_path, capsys, "testbed")
    assert len(problems) == 1 and problems[0].startswith("DescribableTextures: dataset folder not found")
    gone = tmp_path / "testbed-clip.pt"
    monkeypatch.setitem(testbed_backbone.TESTBED_MODELS, "testbed", str(gone))
    weights = [p for p in _preflight_problems(tmp_path, capsys, "testbed") if p.startswith("CLIP weights")]
    assert weights == [f"CLIP weights testbed: {gone} not found; this version ships none yet. Build them with "
                       f"python -m textrefiner.testbed.pretrain --out {gone} (README, 'Offline testbed')"]


TESTBED_GRID = ["--protocol", "base2new", "--datasets", "testbed_shapes", "--cfg", "testbed_ep10_ctxv1",
                "--trainers", "CoOp", "CoOp_TextRefiner", "--seeds", "1"]


def test_preflight_passes_a_testbed_config_whose_backbone_the_resolver_knows(tmp_path, capsys, monkeypatch):
    """The README's offline sweep: the testbed configs name MODEL.BACKBONE.NAME testbed, which the
    preflight asks the one backbone resolver about (no second list of names)."""
    args = TESTBED_GRID + ["--data", str(tmp_path / "data"), "--output", str(tmp_path / "output")]
    jobs = settings_from(*parse(args)).jobs()
    assert {step.expected[1]["MODEL.BACKBONE.NAME"] for job in jobs for step in job.steps} == {"testbed"}
    assert preflight(jobs, str(tmp_path / "data")) == []
    # a name another part registers with the resolver is known the same way, its own fix named
    gone = tmp_path / "mine.pt"
    monkeypatch.setitem(backbone_registry._REGISTRY, "mine", backbone_registry.NamedBackbone(
        "mine", "my CLIP", lambda: str(gone), lambda path: {}, "build it into {file}"))
    problems = _preflight_problems(tmp_path, capsys, "mine", TESTBED_GRID)
    assert problems == [f"CLIP weights mine: {gone} not found; build it into {gone}"]


def test_eta_reads_in_minutes_under_an_hour(capsys):
    assert (duration(20), duration(125), duration(59 * 60), duration(5400)) == ("20 s", "2 min", "59 min", "1.5 h")
    jobs = [SimpleNamespace(name=f"job{i}", label=f"job {i}") for i in range(3)]
    progress = Progress(jobs)
    progress.finished(JobOutcome("job0", "job 0", "ok", seconds=60.0, steps_run=["base2new_train"]))
    assert "2 jobs left, ETA 2 min (about " in capsys.readouterr().out  # not "0.0 h"


def test_progress_names_each_log_and_estimates_the_rest(capsys):
    jobs = [SimpleNamespace(name=f"job{i}", label=f"job {i}") for i in range(4)]
    progress = Progress(jobs, parallel=2)
    progress.started(jobs[0], "GPU 0", "logs/job0.log")
    progress.finished(JobOutcome("job0", "job 0", "ok", seconds=3600.0, steps_run=["few_shot"]))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[1/4] job 0: running on GPU 0; log: logs/job0.log"
    assert "3 jobs left, ETA 1.5 h" in lines[1]  # 3 jobs x 1 h / 2 at a time


@pytest.mark.skipif(importlib.util.find_spec("submitit") is None or shutil.which("sbatch") is not None,
                    reason="needs submitit and a machine without SLURM")
def test_slurm_off_a_cluster_says_what_to_do(tmp_path, capsys):
    args = ["--protocol", "few_shot", "--datasets", "synthetic", "--shots", "1", "--seeds", "1", "--trainers", "CoOp",
            "--output", str(tmp_path), "--executor", "slurm", "--no-preflight"]
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert re.match(r"Error: .*sbatch.*--executor local", stop.value.code)


def test_preflight_asks_the_resolver_about_a_promptkd_teachers_clip_too(tmp_path, capsys):
    teacher = tmp_path / "teacher.pt"
    args = ["--host", "promptkd", "--protocol", "base2new", "--datasets", "dtd", "--trainers", "PromptKD", "--seeds",
            "1", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "output"), "--", "MODEL.BACKBONE.NAME",
            "random:tiny", "TRAINER.PROMPTKD.TEACHER_NAME", str(teacher)]
    with pytest.raises(SystemExit):
        main(args)
    problems = [line.strip()[2:] for line in capsys.readouterr().err.splitlines() if line.strip().startswith("- ")]
    assert problems[1:] == [f"teacher CLIP weights {teacher}: no such file"]  # after the missing dataset
