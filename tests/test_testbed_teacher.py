"""PromptKD on the offline testbed: PromptSRC's template key (TRAINER.PROMPTSRC.TEMPLATES), the testbed teacher
config written by the teacher step under a teacher root with ``{seed}``, and the testbed PromptKD config reading
it, planned by the sweep (whose preflight names a missing teacher file)."""
import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import REPO, build, make_cfg
from test_bad_inputs import args, assert_refused
from test_promptsrc import PROMPTSRC_YAML, TINY_OPTS
from textrefiner.hosts.coop import tokenize
from textrefiner.hosts.templates import IMAGENET_TEMPLATES
from textrefiner.protocols import Setup
from textrefiner.protocols.steps import base2new_train, run_step
from textrefiner.protocols.teacher import (
    TESTBED_PROMPTKD_CFG, TESTBED_TEACHER_CFG, TESTBED_TEACHER_DIR, TEACHER_TRAINER, train_teacher,
)
from textrefiner.sweep.preflight import preflight
from textrefiner.sweep.settings import SweepSettings
from textrefiner.testbed.world import CLASS_TEMPLATES
from textrefiner.trainers.promptsrc import TEMPLATE_SETS

#: sha256 of CoOp's 60 ImageNet templates joined by newlines, as the PromptSRC release averages them
IMAGENET_TEMPLATES_SHA256 = "dc3398ed3ffc7c259342582bc0f36d7ac66c4dee17981a37b77b0fc9c23d4f72"


def test_default_templates_are_the_release_ones_and_testbed_names_the_caption_forms():
    assert TEMPLATE_SETS["imagenet"] is IMAGENET_TEMPLATES and len(IMAGENET_TEMPLATES) == 60
    assert hashlib.sha256("\n".join(IMAGENET_TEMPLATES).encode()).hexdigest() == IMAGENET_TEMPLATES_SHA256
    assert TEMPLATE_SETS["testbed"] == CLASS_TEMPLATES == ("a photo of a {}.", "a {}.", "a sketch of a {}.")


def test_testbed_templates_are_the_text_targets_when_asked(data_root, tmp_path, tiny_clip):
    default = build(make_cfg(data_root, "PromptSRC", str(tmp_path / "a"), PROMPTSRC_YAML, TINY_OPTS))
    assert default.cfg.TRAINER.PROMPTSRC.TEMPLATES == "imagenet"
    trainer = build(make_cfg(data_root, "PromptSRC", str(tmp_path / "b"), PROMPTSRC_YAML,
                             [*TINY_OPTS, "TRAINER.PROMPTSRC.TEMPLATES", "testbed"]))
    names = [n.replace("_", " ") for n in trainer.dm.dataset.classnames]
    with torch.no_grad():
        per_template = [tiny_clip.encode_text(tokenize([t.format(n) for n in names])) for t in CLASS_TEMPLATES]
    torch.testing.assert_close(trainer.model.frozen_text, torch.stack(per_template).mean(0))
    assert not torch.allclose(trainer.model.frozen_text, default.model.frozen_text)


def test_an_unknown_template_set_stops_with_one_line_naming_the_choices(data_root, tmp_path, capsys):
    argv = args(data_root, tmp_path / "out", "PromptSRC", PROMPTSRC_YAML,
                opts=[*TINY_OPTS, "TRAINER.PROMPTSRC.TEMPLATES", "cifar"])
    error = assert_refused(argv, Path(data_root), capsys, "TRAINER.PROMPTSRC.TEMPLATES")
    assert "imagenet" in error and "testbed" in error


def test_where_a_student_reads_its_teacher_is_not_part_of_its_settings(tmp_path):
    """A teacher root per seed ({seed}), relative or absolute, from $TEACHER_DIR or a key: one setting, so
    the seeds of a table pool and a rerun elsewhere finds its finished runs."""
    def settings(teacher_dir):
        setup = Setup("PromptKD", TESTBED_PROMPTKD_CFG, output=str(tmp_path),
                      opts=("TRAINER.PROMPTKD.TEACHER_DIR", teacher_dir))
        return base2new_train(setup, "testbed_shapes", 1).expected
    here, there = settings(TESTBED_TEACHER_DIR), settings(str(tmp_path / "elsewhere" / "seed1"))
    assert here == there and "TRAINER.PROMPTKD.TEACHER_DIR" not in here[1]
    assert here[1]["TRAINER.PROMPTKD.TEACHER_NAME"] == "testbed" and here[1]["MODEL.BACKBONE.NAME"] == "testbed"


@pytest.mark.slow
def test_testbed_teacher_step_writes_per_seed_and_the_swept_promptkd_student_reads_it(tmp_path):
    """The testbed teacher config trains (1 shot, 1 epoch) through the teacher step into <root>/seed1; a sweep
    of PromptKD_TextRefiner with the testbed config and that root first reports the missing teacher, then
    distils from it."""
    data, out = str(tmp_path / "data"), str(tmp_path / "output")
    teachers = str(tmp_path / "teachers" / "seed{seed}")
    sweep = SweepSettings(protocol="base2new", host="promptkd", trainers=["PromptKD_TextRefiner"],
                          cfg=TESTBED_PROMPTKD_CFG, datasets=["testbed_shapes"], seeds=[1], shots=[1], data=data,
                          output=out, opts=["OPTIM.MAX_EPOCH", "1", "TRAINER.PROMPTKD.VAL_SPLIT", "val",
                                                  "TRAINER.PROMPTKD.TEACHER_DIR", teachers]).resolve()
    jobs = sweep.jobs()
    teacher_file = tmp_path / "teachers" / "seed1" / "TestbedShapes" / "VLPromptLearner" / "model-best.pth.tar"
    assert any(f"PromptKD teacher {teacher_file} (for testbed_shapes seed 1): no such file" in p
               for p in preflight(jobs, data))

    teacher_setup = Setup(TEACHER_TRAINER, TESTBED_TEACHER_CFG, data, out,
                          opts=("OPTIM.MAX_EPOCH", "1", "TRAINER.PROMPTSRC.GPA_MEAN", "1"))
    step = train_teacher(teacher_setup, "testbed_shapes", 1, shots=1, teacher_dir=teachers)
    assert step.teacher_file == str(teacher_file)
    with open(tmp_path / "teacher.log", "w") as log:
        assert run_step(step, log=log) == 0
    assert teacher_file.is_file() and step.done
    assert "3 testbed templates" in (tmp_path / "teacher.log").read_text()

    assert not any("PromptKD teacher" in p for p in preflight(jobs, data))
    train = jobs[0].steps[0]
    with open(tmp_path / "student.log", "w") as log:
        assert run_step(train, log=log) == 0
    text = (tmp_path / "student.log").read_text()
    assert f"teacher tensors from {teacher_file}" in text
    assert train.record["trainer"] == "PromptKD_TextRefiner" and 0 <= train.record["accuracy"] <= 100


def test_every_default_trainer_of_the_testbed_table_has_its_testbed_config_and_launchers():
    """scripts/testbed/base2new.sh's default TRAINERS, PromptSRC and PromptKD's included, map (common.sh's
    launch) to a host with launchers and a shipped testbed config; PromptSRC's is the testbed teacher."""
    scripts = REPO / "scripts" / "testbed"
    default = re.search(r'TRAINERS:-([^}"]+)', (scripts / "base2new.sh").read_text()).group(1).split()
    assert {"ZeroshotCLIP", "CoOp", "MaPLe", "PromptSRC", "PromptKD", "PromptKD_TextRefiner"} <= set(default)
    for trainer in default:
        out = subprocess.run(["bash", "-c", f'source "{scripts / "common.sh"}"; launch {trainer}'],
                             capture_output=True, text=True, check=True).stdout
        host, cfg = out.split()
        assert (REPO / "configs" / "trainers" / trainer / f"{cfg}.yaml").is_file(), (trainer, cfg)
        assert (REPO / "scripts" / host / "base2new_test.sh").is_file()
        assert trainer != "PromptSRC" or cfg == TESTBED_TEACHER_CFG
        assert not trainer.startswith("PromptKD") or cfg == TESTBED_PROMPTKD_CFG
