"""The teacher step: train PromptSRC as a PromptKD teacher and write it where PromptKD looks.

    bash scripts/promptkd/train_teacher.sh DATASET SEED   base-to-novel teacher: DATASET's base classes
    bash scripts/promptkd/train_teacher.sh xd SEED        cross-dataset teacher: ImageNet, all classes

The training is an ordinary ``base2new_train`` (or ``xd_train``) run of ``PromptSRC`` with the
teacher config (its folder and ``result.json`` as for any run, so its base accuracy shows in the
tables); when it ends, the trainer writes the teacher file (``TRAINER.PROMPTSRC.TEACHER_FILE``)
atomically, where PromptKD looks for it under the teacher root (``textrefiner/teacher_layout.py``).

An existing teacher file is never replaced unless asked (``TEACHER_OVERWRITE=1``): the step then
stops before training. The step is done when its run holds ``result.json`` and the file exists.
Where the file goes (``TEACHER_FILE``, so ``TEACHER_DIR``) and ``TEACHER_OVERWRITE`` are not part
of the run's settings (``results.record.PATH_KEYS``): the same teacher asked for under another
``TEACHER_DIR`` reuses its finished run (train.py resumes it at its last epoch, trains nothing
more, and writes the file there) instead of being refused as a run with other settings.
"""
import os.path as osp
from dataclasses import dataclass
from typing import List

import yaml

from ..results.benchmarks import SHOTS
from ..teacher_layout import CROSS, DEFAULT_TEACHER_DIR, modal, teacher_path
from .steps import Setup, Step, base2new_train, dataset_config, xd_train

#: the teacher PromptKD's release uses (its teacher config); TRAINER and CFG override them
TEACHER_TRAINER = "PromptSRC"
TEACHER_CFG = "vit_l14_c2_ep20_batch8_4+4ctx"
#: the offline testbed's: PromptSRC on the testbed CLIP with the testbed's caption templates, and the
#: PromptKD config (student and teacher both the testbed CLIP) that distils from it
TESTBED_TEACHER_CFG = "testbed_c2_ep10_batch4_4+4ctx"
TESTBED_PROMPTKD_CFG = "testbed_c2_ep5_batch8_4+4ctx"
#: where the testbed keeps its teachers, under its output root: one per seed (teacher_layout.SEED_FIELD)
TESTBED_TEACHER_DIR = "teachers/seed{seed}"


class TeacherExists(FileExistsError):
    """The teacher file exists and replacing it was not asked for."""


def dataset_name(dataset: str) -> str:
    """DATASET.NAME of ``configs/datasets/<dataset>.yaml`` (e.g. oxford_pets -> OxfordPets)."""
    with open(dataset_config(dataset)) as f:
        return yaml.safe_load(f)["DATASET"]["NAME"]


@dataclass(frozen=True)
class TeacherStep(Step):
    teacher_file: str = ""
    #: replace an existing teacher file (TEACHER_OVERWRITE); the run folder follows Step's rules
    replace_teacher: bool = False

    @property
    def done(self) -> bool:
        return not self.replace_teacher and super().done and osp.isfile(self.teacher_file)

    def command(self) -> List[str]:
        if osp.exists(self.teacher_file) and not self.replace_teacher:
            raise TeacherExists(
                f"A teacher already exists at {self.teacher_file}: remove it, or run with TEACHER_OVERWRITE=1 "
                "to replace it"
            )
        return super().command()


def train_teacher(
    setup: Setup, dataset: str, seed: int, shots: int = SHOTS, teacher_dir: str = DEFAULT_TEACHER_DIR,
    overwrite: bool = False,
) -> TeacherStep:
    """Train ``setup.trainer`` (PromptSRC) on DATASET's base classes, or on ImageNet for ``dataset == "xd"``
    (the cross-dataset teacher), and write the teacher file under ``teacher_dir`` (``{seed}`` in it: ``seed``)."""
    cross = modal(dataset) == CROSS
    step = xd_train(setup, seed, shots) if cross else base2new_train(setup, dataset, seed, shots)
    path = osp.abspath(teacher_path(teacher_dir, modal(dataset), "" if cross else dataset_name(dataset), seed))
    opts = ("TRAINER.PROMPTSRC.TEACHER_FILE", path, "TRAINER.PROMPTSRC.TEACHER_OVERWRITE", str(overwrite))
    return TeacherStep(step.key, step.output_dir, step.flags, opts + step.opts, evaluates=None,
                       overwrite=step.overwrite, teacher_file=path, replace_teacher=overwrite)
