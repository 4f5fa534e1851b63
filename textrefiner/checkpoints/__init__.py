"""Checkpoints of the public releases, mapped onto our modules: TextRefiner's CoOp variant and MaPLe
(``upstream.py``, loaded by ``loading.py``), and the IVLP / PromptSRC teacher files PromptKD loads
(``ivlp.py``)."""
from .ivlp import TeacherCheckpointError, load_teacher_state_dict, teacher_checkpoint, teacher_state_dict
from .loading import init_from_file, init_from_release, load_release, load_release_model_dir
from .upstream import LAYOUTS, MAPLE_RELEASE, TEXTREFINER_RELEASE, UpstreamCheckpointError, find_release

__all__ = [
    "LAYOUTS", "MAPLE_RELEASE", "TEXTREFINER_RELEASE", "UpstreamCheckpointError", "find_release",
    "init_from_file", "init_from_release", "load_release", "load_release_model_dir",
    "TeacherCheckpointError", "load_teacher_state_dict", "teacher_checkpoint", "teacher_state_dict",
]
