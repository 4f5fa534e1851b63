"""Checkpoints of the public releases mapped onto our modules: TextRefiner's CoOp variant, MaPLe, IVLP/PromptSRC.

``upstream.py`` maps the TextRefiner and MaPLe release folders (``loading.py`` puts them into
modules); ``ivlp.py`` is the IVLP / PromptSRC key layout of the teacher files PromptSRC writes and
PromptKD loads. This package maps files onto the hosts' modules: it imports ``hosts``, never the reverse.
"""
from .ivlp import TeacherCheckpointError, load_teacher_state_dict, teacher_checkpoint, teacher_state_dict
from .loading import init_from_file, init_from_release, load_release, load_release_model_dir
from .upstream import LAYOUTS, MAPLE_RELEASE, TEXTREFINER_RELEASE, UpstreamCheckpointError, find_release

__all__ = [
    "LAYOUTS", "MAPLE_RELEASE", "TEXTREFINER_RELEASE", "UpstreamCheckpointError", "find_release",
    "init_from_file", "init_from_release", "load_release", "load_release_model_dir",
    "TeacherCheckpointError", "load_teacher_state_dict", "teacher_checkpoint", "teacher_state_dict",
]
