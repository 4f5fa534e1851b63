"""Where a PromptKD teacher file lives: the PromptKD release's folders under one root, so downloaded
teacher archives work unchanged. Read by the teacher step (which writes there), PromptKD (which loads
from there) and the protocols (which pass the root and the modal on)::

    <TEACHER_DIR>/<DATASET.NAME>/VLPromptLearner/model-best.pth.tar     base2novel: one per dataset
    <TEACHER_DIR>/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20    cross: the ImageNet teacher

A teacher root may hold ``{seed}``: it stands for the run's seed, so each seed has a teacher of its own
(``output/teachers/seed{seed}``: the testbed trains a teacher per seed) while the setting stays the same
value for every seed of an experiment.

One switch has two names: the cross-dataset protocol is ``xd`` (the step kinds ``xd_train``/``xd_test``,
and the teacher step's DATASET argument ``xd``), and PromptKD's config calls its teacher ``cross``
(``TRAINER.PROMPTKD.MODAL``, the release's ``TRAINER.MODAL``, which users' YAML files set). ``modal``
is the one mapping between them.
"""
import os
import os.path as osp

#: the teacher root PromptKD's release reads (relative to where it runs): TRAINER.PROMPTKD.TEACHER_DIR's default
DEFAULT_TEACHER_DIR = "teacher_model"
#: the environment variable the launchers take the teacher root from
TEACHER_DIR_VARIABLE = "TEACHER_DIR"
#: TRAINER.PROMPTKD.MODAL values: which teacher of the layout
BASE2NOVEL, CROSS = "base2novel", "cross"
#: the cross-dataset protocol's name (and the teacher step's DATASET for the ImageNet teacher)
XD = "xd"
#: in a teacher root (or file), the run's seed
SEED_FIELD = "{seed}"
#: MODAL -> the teacher file's path under the root ("{dataset}": the config's DATASET.NAME)
LAYOUT = {
    BASE2NOVEL: ("{dataset}", "VLPromptLearner", "model-best.pth.tar"),
    CROSS: ("ImageNet-xd", "VLPromptLearner_large", "model.pth.tar-20"),
}


def modal(protocol: str) -> str:
    """The MODAL of a protocol, step kind (``xd_train``) or teacher-step DATASET: cross-dataset (``xd``)
    distils from the ImageNet teacher, every other protocol from its own dataset's."""
    return CROSS if protocol.split("_")[0] == XD else BASE2NOVEL


def with_seed(path: str, seed) -> str:
    """``path`` with ``{seed}`` replaced by ``seed`` (None: left as it is)."""
    return path if seed is None else path.replace(SEED_FIELD, str(seed))


def teacher_path(teacher_dir: str, modal_name: str, dataset_name: str = "", seed=None) -> str:
    """The teacher file of ``modal_name`` under ``teacher_dir`` (``dataset_name``: DATASET.NAME, base2novel;
    ``seed``: what ``{seed}`` in ``teacher_dir`` stands for)."""
    if modal_name not in LAYOUT:
        raise ValueError(f"TRAINER.PROMPTKD.MODAL must be one of {sorted(LAYOUT)}, got {modal_name!r}")
    return osp.join(with_seed(teacher_dir, seed), *(part.format(dataset=dataset_name) for part in LAYOUT[modal_name]))


def teacher_dir_from_environment() -> str:
    """``$TEACHER_DIR``, or "" when it is unset or empty (the config's TEACHER_DIR then holds)."""
    return os.environ.get(TEACHER_DIR_VARIABLE, "")
