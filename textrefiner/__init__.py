"""TextRefiner for Dassl: the installable library.

Layers (imports point downwards only): ``framework`` (real Dassl or the built-in
engine), ``modeling`` (pure nn.Modules of the method), ``hosts`` (CoOp, MaPLe,
PromptKD prompt learners and encoders over CLIP's modules), ``backbones`` (one
resolver for every backbone name), ``testbed``, ``data``, ``results`` and ``trainers``
(the Dassl trainers; importing it registers them).
"""

__version__ = "0.1.0"

from .config import add_textrefiner_config  # noqa: E402,F401  (the one call a foreign train.py needs)
from . import testbed  # noqa: E402,F401  (registers MODEL.BACKBONE.NAME testbed with textrefiner.backbones)
