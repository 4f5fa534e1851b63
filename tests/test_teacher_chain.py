"""The whole PromptKD chain from the launchers: train a teacher (PromptSRC), distil a student from
that file, evaluate base and novel, aggregate with the parser. No file is made by hand."""
import csv
import io
import subprocess
import sys

import pytest

from conftest import REPO
from launch_helpers import LAUNCH_OPTS, launcher_env

TEACHER_BACKBONE = "random:tiny-wide"  # PromptKD's teacher is wider than its student (random:tiny)
TEACHER_OPTS = ["MODEL.BACKBONE.NAME", TEACHER_BACKBONE, "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2",
                "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2", "TRAINER.PROMPTSRC.PREC", "fp32",
                "TRAINER.PROMPTSRC.GPA_MEAN", "1", "OPTIM.MAX_EPOCH", "1"]
# the student reads the teacher file (TEACHER_PROMPTS file) written in the release's layout under TEACHER_DIR
STUDENT_OPTS = ["TRAINER.PROMPTKD.PREC", "fp32", "TRAINER.PROMPTKD.TEACHER_NAME", TEACHER_BACKBONE,
                "TRAINER.PROMPTKD.TEACHER_PROMPTS", "file", "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", "2",
                "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_VISION", "2",
                "OPTIM.MAX_EPOCH", "1"]


def launch(script, args, opts, env, cwd):
    base = [x for x in LAUNCH_OPTS]
    i = base.index("MODEL.BACKBONE.NAME") if "MODEL.BACKBONE.NAME" in opts else None
    if i is not None:  # the teacher runs on its own backbone
        del base[i:i + 2]
    proc = subprocess.run(["bash", str(REPO / "scripts" / "promptkd" / f"{script}.sh"), *args, *base, *opts],
                          cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_teacher_step_then_promptkd_student_then_base_novel_table(data_root, tmp_path):
    out, teachers = tmp_path / "output", tmp_path / "teachers"
    env = {**launcher_env(data_root, out), "TEACHER_DIR": str(teachers)}
    launch("train_teacher", ["synthetic", "1"], TEACHER_OPTS, env, tmp_path)
    assert (teachers / "Synthetic" / "VLPromptLearner" / "model-best.pth.tar").is_file()
    env["TRAINER"] = "PromptKD"
    train = launch("base2new_train", ["synthetic", "1"], STUDENT_OPTS, env, tmp_path)
    launch("base2new_test", ["synthetic", "1"], STUDENT_OPTS, env, tmp_path)
    logs = list(out.joinpath("base2new", "train_base").rglob("PromptKD/*/seed1/log.txt"))
    assert len(logs) == 1 and str(teachers / "Synthetic") in logs[0].read_text()  # the student read that teacher
    table = subprocess.run([sys.executable, str(REPO / "parse_test_res.py"), str(out), "--table", "base2new",
                            "--format", "csv", "--trainers", "PromptKD"], capture_output=True, text=True)
    assert table.returncode == 0, table.stdout + table.stderr
    row = {r["Dataset"]: r for r in csv.DictReader(io.StringIO(table.stdout))}["synthetic"]
    assert row["Method"].startswith("PromptKD") and float(row["Base"]) >= 0 and float(row["Novel"]) >= 0
    assert train.returncode == 0
