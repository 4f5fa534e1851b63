"""``CoOp_TextRefiner``: CoOp prompts refined by TextRefiner (the authors' released setting)."""
from textrefiner.framework import register_trainer

from .coop import CoOp
from .textrefiner import TextRefinerMixin


@register_trainer
class CoOp_TextRefiner(TextRefinerMixin, CoOp):
    """CoOp + local cache, feature aggregation and alignment; keys under TRAINER.COOP and TRAINER.TEXTREFINER."""
