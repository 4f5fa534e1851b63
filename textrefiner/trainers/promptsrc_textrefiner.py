"""``PromptSRC_TextRefiner``: PromptSRC prompts refined by TextRefiner (no public code has this row).

The mixin's step (CE on the refined logits + semantic + regularisation) plus PromptSRC's terms
through ``PromptSRC.host_losses``: the KL to zero-shot CLIP on the refined logits (the classifier
actually trained), the text L1 on the prompted, unrefined text features (what PromptSRC keeps
close to CLIP). GPA averages every trainable parameter, the TextRefiner head's included; the
local cache (a buffer) is never averaged.
"""
from textrefiner.framework import register_trainer

from .promptsrc import PromptSRC
from .textrefiner import TextRefinerMixin


@register_trainer
class PromptSRC_TextRefiner(TextRefinerMixin, PromptSRC):
    """PromptSRC + local cache, feature aggregation and alignment; keys under TRAINER.PROMPTSRC and TRAINER.TEXTREFINER."""
