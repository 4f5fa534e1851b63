"""The PromptSRC host (Khattak et al., ICCV 2023): IVLP prompts regularised towards frozen CLIP.

Self-regularising terms (the release's ``trainers/promptsrc.py``), with t, f the prompted and
t~, f~ the frozen features, all L2-normalised, s = exp(logit_scale):

* ``scl_logits``: KL(softmax(s f~ t~^T) || softmax(s f t^T)), summed and divided by B x C;
* ``scl_text``:  TEXT_LOSS_WEIGHT  x mean |t - t~|, t~ = the frozen CLIP's text features averaged
  (unnormalised) over CoOp's 60 ImageNet templates (``TRAINER.PROMPTSRC.TEMPLATES``: or the testbed's
  caption templates), computed once at build;
* ``scl_image``: IMAGE_LOSS_WEIGHT x mean |f - f~|, f~ = the same CLIP image tower run without
  prompts on the same batch (no second copy of the weights, unlike the release).

Gaussian prompt aggregation is in ``prompt_averaging.py``.
"""
from typing import Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..precision import float32_under_autocast
from .coop import tokenize
from .encoders import TextEncoder
from .ivlp import IVLPCLIP, IVLPPromptLearner
from .templates import IMAGENET_TEMPLATES


@torch.no_grad()
def template_text_features(
    clip_model: nn.Module, classnames: Sequence[str], templates: Sequence[str] = IMAGENET_TEMPLATES
) -> torch.Tensor:
    """Frozen CLIP text features (C, d) averaged over ``templates`` ("{}" -> class name), not normalised.

    Runs on the device CLIP's weights are on, one template (C prompts) at a time.
    """
    encoder = TextEncoder(clip_model)
    embed = clip_model.token_embedding
    names = [name.replace("_", " ") for name in classnames]
    total = None
    for template in templates:
        tokens = tokenize([template.replace("{}", name) for name in names]).to(embed.weight.device)
        features = encoder(embed(tokens).type(encoder.dtype), tokens).float()
        total = features if total is None else total + features
    return total / len(templates)


def zero_shot_kl(logits: torch.Tensor, zero_shot_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(zero_shot_logits) || softmax(logits)) summed over (B, C) and divided by B x C."""
    return F.kl_div(
        F.log_softmax(logits, dim=1), F.log_softmax(zero_shot_logits, dim=1), reduction="sum", log_target=True
    ) / logits.numel()


@float32_under_autocast
def self_regularizing_losses(
    logits: torch.Tensor,
    text: torch.Tensor,
    image: torch.Tensor,
    frozen_text: torch.Tensor,
    frozen_image: torch.Tensor,
    logit_scale: torch.Tensor,
    text_weight: float,
    image_weight: float,
) -> Dict[str, torch.Tensor]:
    """PromptSRC's three terms, weighted (float32 under autocast).

    Args:
        logits: (B, C) the prompted classifier's logits.
        text: (C, d) prompted text features, L2-normalised.
        image: (B, d) prompted image features, L2-normalised.
        frozen_text, frozen_image: the frozen model's (C, d) and (B, d), L2-normalised.
        logit_scale: exp(CLIP's logit_scale).
    """
    zero_shot_logits = logit_scale * frozen_image @ frozen_text.to(frozen_image.dtype).t()
    return {
        "scl_logits": zero_shot_kl(logits, zero_shot_logits),
        "scl_text": text_weight * F.l1_loss(text, frozen_text.to(text.dtype)),
        "scl_image": image_weight * F.l1_loss(image, frozen_image.to(image.dtype)),
    }


class PromptSRCCLIP(IVLPCLIP):
    """IVLP CLIP plus the frozen targets PromptSRC regularises towards.

    ``frozen_text`` (C, d): ``template_text_features`` of the same CLIP, a buffer (not saved:
    it depends on the class names and is recomputed at build).
    """

    def __init__(self, prompt_learner: IVLPPromptLearner, clip_model: nn.Module, frozen_text: torch.Tensor,
                 text_chunk_size: int = 0):
        super().__init__(prompt_learner, clip_model, text_chunk_size=text_chunk_size)
        self.register_buffer("frozen_text", frozen_text, persistent=False)

    def frozen_text_features(self) -> torch.Tensor:
        return self.frozen_text / self.frozen_text.norm(dim=-1, keepdim=True)

    @torch.no_grad()
    def frozen_image_features(self, image: torch.Tensor) -> torch.Tensor:
        """(B, d) L2-normalised features of the image tower without any prompt."""
        features = self.image_encoder(image).global_feature
        return features / features.norm(dim=-1, keepdim=True)
