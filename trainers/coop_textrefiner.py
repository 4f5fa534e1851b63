"""``CoOp_TextRefiner``: CoOp prompts refined by TextRefiner (the authors' released setting)."""
from textrefiner.framework import TRAINER_REGISTRY

from .coop import CoOp
from .textrefiner import TextRefinerMixin


@TRAINER_REGISTRY.register()
class CoOp_TextRefiner(TextRefinerMixin, CoOp):
    """CoOp + local cache, feature aggregation and alignment; keys under TRAINER.COOP and TRAINER.TEXTREFINER."""
