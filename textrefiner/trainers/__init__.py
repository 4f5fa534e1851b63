"""The trainers of this project, as a plug-in for any Dassl setup.

``import textrefiner.trainers`` registers every trainer (and, through
``textrefiner.data``, every dataset reader) whose name is still free in the
framework's registries; a name a user's checkout already registered (its own
``CoOp``, ``MaPLe``, ``OxfordPets``, ...) is left to the user's class. So inside a
CoOp-family checkout ``CoOp_TextRefiner``, ``MaPLe_TextRefiner`` and ``PromptKD_TextRefiner`` appear next to
the checkout's own trainers; add our config keys with
``textrefiner.config.add_textrefiner_config(cfg)`` in that checkout's ``extend_cfg``.
"""
import textrefiner.data  # noqa: F401  (registers the dataset readers whose names are free)
import textrefiner.testbed.datasets  # noqa: F401  (and the offline testbed's)

from .coop import CoOp
from .coop_textrefiner import CoOp_TextRefiner
from .maple import MaPLe
from .maple_textrefiner import MaPLe_TextRefiner
from .ivlp import IVLP
from .promptkd import PromptKD
from .promptkd_textrefiner import PromptKD_TextRefiner
from .promptsrc import PromptSRC
from .promptsrc_textrefiner import PromptSRC_TextRefiner
from .zsclip import ZeroshotCLIP

from textrefiner.framework.registration import report_kept  # noqa: E402

report_kept()

__all__ = [
    "CoOp", "CoOp_TextRefiner", "MaPLe", "MaPLe_TextRefiner", "PromptKD", "PromptKD_TextRefiner", "IVLP", "PromptSRC",
    "PromptSRC_TextRefiner", "ZeroshotCLIP",
]
