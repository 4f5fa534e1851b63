"""``MaPLe_TextRefiner``: MaPLe prompts refined by TextRefiner (paper Table 2; no public release).

The local tokens are the last vision block's CLS and patch tokens; the appended vision
prompt tokens are left out of the tokens and of the CLS attention (see ``hosts/maple.py``).
"""
from textrefiner.framework import register_trainer

from .maple import MaPLe
from .textrefiner import TextRefinerMixin


@register_trainer
class MaPLe_TextRefiner(TextRefinerMixin, MaPLe):
    """MaPLe + local cache, feature aggregation and alignment; keys under TRAINER.MAPLE and TRAINER.TEXTREFINER."""
