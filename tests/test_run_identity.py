"""Run identity: a folder counts as done only for the settings it was made with; a run with
other settings is refused (or goes to its own tagged folder), never skipped; tables never
average two settings, and partial averages say so in the table and the exit status."""
import csv
import io
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from launch_helpers import LAUNCH_OPTS, finish_without_training, launcher_env
from textrefiner.cli.parse_test_res import main as parse_test_res
from textrefiner.protocols import Setup, run_step
from textrefiner.protocols.identity import SettingsConflict
from textrefiner.protocols.steps import base2new_test, base2new_train, few_shot
from textrefiner.results.layout import RunKey, run_dir
from textrefiner.results.tables import protocol_summary

CFG = "vit_b16_ep10_ctxv1"
OTHER_LR = ("OPTIM.LR", "0.01")


def setups(tmp_path, **kwargs):
    same = Setup("CoOp", CFG, output=str(tmp_path), opts=tuple(LAUNCH_OPTS), **kwargs)
    other = Setup("CoOp", CFG, output=str(tmp_path), opts=(*LAUNCH_OPTS, *OTHER_LR), **kwargs)
    return same, other


def test_same_settings_skip_other_settings_are_refused(tmp_path):
    same, other = setups(tmp_path)
    finish_without_training(few_shot(same, "synthetic", 2, 1))
    log = io.StringIO()
    assert run_step(few_shot(same, "synthetic", 2, 1), log) == 0 and "Skip" in log.getvalue()

    step = few_shot(other, "synthetic", 2, 1)
    assert not step.done
    with pytest.raises(SettingsConflict) as refused:
        run_step(step, io.StringIO())
    message = str(refused.value)
    assert "OPTIM.LR: 0.002 there, 0.01 now" in message
    assert "TAG=lr0.01" in message and "--tag lr0.01" in message and "--overwrite" in message
    # seed 2 of the same experiment is a new folder, but its sibling says the settings differ
    with pytest.raises(SettingsConflict, match="seed1, a seed of the same experiment"):
        run_step(few_shot(other, "synthetic", 2, 2), io.StringIO())
    # a run tag gives the other settings their own folder, CoOp main.sh-style before seed<S>
    tagged = few_shot(Setup("CoOp", CFG, output=str(tmp_path), opts=other.opts, tag="lr0.01"), "synthetic", 2, 1)
    assert tagged.output_dir == os.path.join(str(tmp_path), "synthetic", "CoOp", f"{CFG}_2shots", "lr0.01", "seed1")
    assert tagged.conflict() is None


def test_an_evaluation_refuses_a_model_built_with_other_settings(tmp_path):
    """Only keys that change what is evaluated must agree (training-only ones come from the training:
    tests/test_evaluation_steps.py); a difference is refused, never evaluated silently."""
    same, other = setups(tmp_path)
    finish_without_training(base2new_train(same, "synthetic", 1, 2))
    assert base2new_test(same, "synthetic", 1, 2).command()
    assert base2new_test(other, "synthetic", 1, 2).command()  # OPTIM.LR only shapes training
    built_otherwise = Setup("CoOp", CFG, output=str(tmp_path), opts=(*LAUNCH_OPTS, "TRAINER.COOP.N_CTX", "8"))
    with pytest.raises(SettingsConflict, match="TRAINER.COOP.N_CTX 16 there, 8 here"):
        base2new_test(built_otherwise, "synthetic", 1, 2).command()


def test_records_from_other_tools_or_older_code_are_not_conflicts(tmp_path):
    same, _ = setups(tmp_path)
    step = few_shot(same, "synthetic", 2, 1)
    record = finish_without_training(step)
    record["settings"]["TRAINER.SOME_KEY_OF_OLDER_CODE"] = 3  # a key only one side has
    record["config_hash"] = "0123456789ab"
    with open(os.path.join(step.output_dir, "result.json"), "w") as f:
        json.dump(record, f)
    assert step.done
    with open(os.path.join(step.output_dir, "result.json"), "w") as f:
        json.dump({"final_model": "best_val", "max_epoch": 1, "accuracy": 1.0}, f)  # no hash: cannot tell
    assert step.done


def launch(script, *args, env, cwd, extra_env=()):
    return subprocess.run(["bash", str(REPO / "scripts" / "coop" / script), *map(str, args)], cwd=cwd,
                          env={**env, **dict(extra_env)}, capture_output=True, text=True)


def test_launchers_refuse_tag_and_overwrite_and_the_table_keeps_two_settings(data_root, tmp_path):
    out = tmp_path / "output"
    env = launcher_env(data_root, out)
    first = launch("few_shot.sh", "synthetic", 2, 1, *LAUNCH_OPTS, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    seed1 = out / "synthetic" / "CoOp_TextRefiner" / f"{CFG}_2shots" / "seed1"
    mtime = (seed1 / "result.json").stat().st_mtime_ns

    refused = launch("few_shot.sh", "synthetic", 2, 1, *LAUNCH_OPTS, *OTHER_LR, env=env, cwd=tmp_path)
    assert refused.returncode == 2 and "Skip" not in refused.stdout
    assert "OPTIM.LR" in refused.stderr and "TAG=" in refused.stderr and "OVERWRITE=1" in refused.stderr
    again = launch("few_shot.sh", "synthetic", 2, 1, *LAUNCH_OPTS, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "Skip" in again.stdout
    assert (seed1 / "result.json").stat().st_mtime_ns == mtime

    tagged = launch("few_shot.sh", "synthetic", 2, 1, *LAUNCH_OPTS, *OTHER_LR, env=env, cwd=tmp_path,
                    extra_env={"TAG": "lr0.01"})
    assert tagged.returncode == 0, tagged.stderr[-2000:]
    assert json.loads((seed1.parent / "lr0.01" / "seed1" / "result.json").read_text())["settings"]["OPTIM.LR"] == 0.01

    proc = subprocess.run([sys.executable, str(REPO / "parse_test_res.py"), str(out), "--table", "few_shot",
                           "--format", "csv"], capture_output=True, text=True, check=True)
    methods = [(r["Method"], r["Variant"]) for r in csv.DictReader(io.StringIO(proc.stdout))
               if r["Dataset"] == "synthetic"]
    assert methods == [("CoOp_TextRefiner", "-"), ("CoOp_TextRefiner", "lr0.01")]  # the tag: its Variant

    overwritten = launch("few_shot.sh", "synthetic", 2, 1, *LAUNCH_OPTS, *OTHER_LR, env=env, cwd=tmp_path,
                         extra_env={"OVERWRITE": "1"})
    assert overwritten.returncode == 0 and f"Overwrite: deleting {seed1}" in overwritten.stdout
    assert json.loads((seed1 / "result.json").read_text())["settings"]["OPTIM.LR"] == 0.01


def fake_run(root, kind, dataset, seed, accuracy, trainer="CoOp", tag="", settings=None, shots=16, cfg=CFG):
    folder = run_dir(str(root), RunKey(kind, dataset, shots, trainer, cfg, seed, tag))
    os.makedirs(folder, exist_ok=True)
    record = {"accuracy": accuracy}
    if settings is not None:
        record.update(config_hash=str(sorted(settings.items())), settings=settings)
    with open(os.path.join(folder, "result.json"), "w") as f:
        json.dump(record, f)


def test_tables_never_average_two_settings(tmp_path):
    fake_run(tmp_path, "few_shot", "dtd", 1, 50.0, settings={"OPTIM.MAX_EPOCH": 1})
    fake_run(tmp_path, "few_shot", "dtd", 2, 70.0, settings={"OPTIM.MAX_EPOCH": 4})
    with pytest.raises(ValueError, match="OPTIM.MAX_EPOCH: 1 vs 4.*never averages"):
        protocol_summary(str(tmp_path), "few_shot")
    os.rename(run_dir(str(tmp_path), RunKey("few_shot", "dtd", 16, "CoOp", CFG, 2)),
              os.path.join(str(tmp_path), "keep-aside"))
    fake_run(tmp_path, "few_shot", "dtd", 2, 70.0, tag="ep4", settings={"OPTIM.MAX_EPOCH": 4})
    summary = protocol_summary(str(tmp_path), "few_shot")
    assert summary.methods == [f"CoOp ({CFG})", f"CoOp ({CFG}/ep4)"]
    assert summary.get(f"CoOp ({CFG}/ep4)", "dtd", "16 shots").mean == 70.0


def test_where_a_run_reads_and_writes_is_not_part_of_its_settings(tmp_path):
    """Output root, data root and teacher file only say where things are: the same run elsewhere is
    the same run, and a table pools seeds whose records differ only there (older records list them)."""
    here = few_shot(Setup("CoOp", CFG, data="data", output=str(tmp_path / "a"), opts=tuple(LAUNCH_OPTS)), "dtd", 2, 1)
    there = few_shot(Setup("CoOp", CFG, data="/elsewhere", output=str(tmp_path / "b"), opts=tuple(LAUNCH_OPTS)),
                     "dtd", 2, 1)
    assert here.output_dir != there.output_dir and here.expected == there.expected
    assert not {"OUTPUT_DIR", "DATASET.ROOT", "SEED", "TRAINER.PROMPTSRC.TEACHER_FILE",
                "TRAINER.PROMPTSRC.TEACHER_OVERWRITE"} & set(here.expected[1])

    for seed, teacher_file in ((1, "/teachers/a.pth"), (2, "/teachers/b.pth")):
        fake_run(tmp_path / "table", "few_shot", "dtd", seed, 60.0 + seed,
                 settings={"OPTIM.MAX_EPOCH": 1, "TRAINER.PROMPTSRC.TEACHER_FILE": teacher_file})
    assert protocol_summary(str(tmp_path / "table"), "few_shot").get("CoOp", "dtd", "16 shots").mean == 61.5


def exit_and_output(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        parse_test_res([str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


def test_partial_averages_are_marked_and_fail_unless_accepted(tmp_path, capsys):
    for trainer in ("CoOp", "CoOp_TextRefiner"):
        fake_run(tmp_path, "base2new_train", "dtd", 1, 70.0, trainer)
        fake_run(tmp_path, "base2new_test", "dtd", 1, 60.0, trainer)
    fake_run(tmp_path, "base2new_train", "eurosat", 1, 90.0)  # CoOp only, and no Novel
    code, out = exit_and_output(capsys, tmp_path, "--table", "base2new")
    assert code == 1 and "--accept-partial" in out
    assert "PARTIAL" in out and "CoOp_TextRefiner: no results for eurosat" in out
    average = next(line for line in out.splitlines() if line.startswith("Average") and "CoOp_TextRefiner" in line)
    assert "(partial)" in average
    code, _ = exit_and_output(capsys, tmp_path, "--table", "base2new", "--accept-partial")
    assert code == 0

    runs = tmp_path / "runs"  # CoOp's layout for --multi-exp: one folder per dataset, seeds inside
    for dataset, log in (("dtd", "=> result\n* accuracy: 60.0%\n"), ("eurosat", "Traceback: crashed\n")):
        os.makedirs(runs / dataset / "seed1")
        (runs / dataset / "seed1" / "log.txt").write_text(log)
    code, out = exit_and_output(capsys, runs, "--multi-exp", "--test-log")
    assert code == 1 and "PARTIAL: 1 of 2 experiments" in out and "no result in eurosat" in out
    code, out = exit_and_output(capsys, runs, "--multi-exp", "--test-log", "--accept-partial")
    assert code == 0 and "* accuracy: 60.00%" in out


def test_xd_table_reports_target_coverage(tmp_path, capsys):
    fake_run(tmp_path, "xd_train", "imagenet", 1, 70.0)
    fake_run(tmp_path, "xd_test", "caltech101", 1, 90.0)
    fake_run(tmp_path, "xd_test", "imagenet_a", 1, 50.0)
    code, out = exit_and_output(capsys, tmp_path, "--table", "xd")
    assert code == 0  # nothing this tree ran is missing
    assert "Average (cross-dataset) covers 1 of the paper's 10 targets (not run: oxford_pets" in out
    assert "Average (domain generalisation) covers 1 of the paper's 4 targets" in out
