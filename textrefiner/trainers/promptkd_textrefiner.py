"""``PromptKD_TextRefiner``: PromptKD's student with TextRefiner on the teacher's text features
(the TextRefiner release's ``promptkd_textrefiner``, there a trainer named "TextRefiner").

The cache, the aggregation and the alignment live in the teacher's text space (768-d for a
ViT-L/14 teacher); the local tokens are the student's last-block CLS and patch tokens (prompt
positions left out), aligned from the student's width. The student's logits use the refined
teacher features t'; the teacher's logits do not. The semantic loss is KL to the teacher's
probabilities of the image (the host's loss form), the regulariser trains only the aggregation
(the teacher's features carry no gradient); both are weighted relative to KD_WEIGHT.
"""
from textrefiner.framework import register_trainer

from .promptkd import PromptKD
from .textrefiner import TextRefinerMixin


@register_trainer
class PromptKD_TextRefiner(TextRefinerMixin, PromptKD):
    """PromptKD + local cache, feature aggregation and alignment; keys under TRAINER.PROMPTKD and TRAINER.TEXTREFINER."""
