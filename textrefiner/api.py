"""TextRefiner in a trainer you wrote: a small public API for any Dassl ``TrainerX`` that owns its
own model (KgCoOp, ProGrad, your new method), with no change to how that model is built.

    from textrefiner.api import TextRefinerPlugin

    tr = TextRefinerPlugin(cfg, clip_model)     # the head from TRAINER.TEXTREFINER (add_textrefiner_config)
    tr.register(trainer)                        # checkpointed by Dassl as "textrefiner", cache included
    visual = tr.encode_image(image)             # CLIP's image features (+ last-block tokens in training)
    refined, losses = tr.training_losses(text, visual, label, logit_scale)   # a training step
    refined = tr.refine(text)                   # evaluation

``text`` is your method's L2-normalised class text features (C, d) (or (B, C, d), one set per
image); ``refined`` goes where ``text`` went in your logits; ``losses`` are the semantic and
regularisation terms already weighted by ``LAMBDA_SEM``/``LAMBDA_REG`` (and by the loss form's
weight), to add to your loss. With ``TRAINER.TEXTREFINER.ENABLED False`` nothing is built and
every call passes your method's features through unchanged: the trainer is exactly yours.
The loss form is cross-entropy with the labels (a label tensor or ``HardLabels``) or a
teacher's soft targets (``SoftTargets(teacher_logits, temperature, weight)``, PromptKD's KL).
"""
from typing import Dict, Tuple, Union

import torch
import torch.nn as nn

from .config import check_values
from .hosts.encoders import ImageEncoder, VisualOutput
from .modeling import TextRefiner
from .modeling.losses import as_target
from .modeling.targets import HardLabels, SoftTargets
from .trainers.textrefiner import TEXTREFINER_CONFIG, build_textrefiner, check_topk

__all__ = ["TextRefinerPlugin", "HardLabels", "SoftTargets", "VisualOutput"]


class TextRefinerPlugin:
    """TextRefiner's head for a trainer's own CLIP model.

    Args:
        cfg: the run's config, with ``TRAINER.TEXTREFINER`` (``textrefiner.add_textrefiner_config``).
        clip_model: the stock CLIP your trainer built (OpenAI's ``clip.model.CLIP``); its image
            tower is run by our forward over its own modules (no copy), which also returns the
            last block's local tokens and CLS attention; the head takes CLIP's dtype.
        name: the name the head is registered (and saved) under.
    """

    def __init__(self, cfg, clip_model: nn.Module, name: str = "textrefiner"):
        check_values(cfg, [TEXTREFINER_CONFIG])
        self.cfg = cfg.TRAINER.TEXTREFINER
        self.name = name
        self.image_encoder = ImageEncoder(clip_model.visual)
        self.head: Union[TextRefiner, None] = None
        if self.cfg.ENABLED:
            check_topk(self.cfg.TOPK, clip_model.visual)
            dim, token_dim = clip_model.text_projection.shape[1], clip_model.visual.proj.shape[1]
            self.head = build_textrefiner(self.cfg, dim, token_dim)
            if clip_model.text_projection.dtype == torch.float16:  # CLIP's fp16 (PREC fp16): as CLIP's weights
                from .backbones.openai import import_clip

                import_clip().model.convert_weights(self.head)

    @property
    def enabled(self) -> bool:
        return self.head is not None

    def register(self, trainer) -> None:
        """Move the head to ``trainer.device`` and register it with ``trainer`` (its own optimizer and
        scheduler from ``cfg.OPTIM``), so Dassl's ``save_model``, ``load_model``, resume,
        ``model_backward_and_update`` and ``update_lr`` handle it like your prompt learner; the
        local cache is a buffer of the head, saved and loaded with it. Nothing when disabled."""
        if self.head is None:
            return
        from .framework import build_lr_scheduler, build_optimizer

        self.head.to(trainer.device)
        optim = build_optimizer(self.head, trainer.cfg.OPTIM)
        trainer.register_model(self.name, self.head, optim, build_lr_scheduler(optim, trainer.cfg.OPTIM))

    def encode_image(self, image: torch.Tensor) -> VisualOutput:
        """CLIP's image features ``global_feature`` (B, d), unnormalised, as ``clip_model.encode_image``;
        while the head trains, also the last block's ``tokens`` (B, 1 + P, d) and ``cls_attention`` (B, P)."""
        return self.image_encoder(image, with_local=self.head is not None and self.head.training)

    def refine(self, text: torch.Tensor) -> torch.Tensor:
        """Refined class text features t' for evaluation (the cache is read, never written)."""
        return text if self.head is None else self.head.refine(text)

    def training_losses(self, text: torch.Tensor, visual: VisualOutput, target, logit_scale: torch.Tensor
                        ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """One training step's refined features t' and weighted auxiliary losses; updates the cache
        with the batch's aligned tokens (call once per step, with ``visual`` from ``encode_image``).

        ``target``: the batch's labels (B,) (cross-entropy), or a ``SoftTargets`` / ``HardLabels``;
        ``logit_scale``: CLIP's ``logit_scale.exp()``."""
        if self.head is None:
            return text, {}
        if visual.tokens is None:
            raise ValueError("visual has no local tokens: take it from TextRefinerPlugin.encode_image while the head "
                             "trains (trainer.set_model_mode('train') before the step)")
        target = as_target(target)
        out = self.head(text, visual.tokens, visual.cls_attention, target, logit_scale)
        weight = target.weight
        return out.refined, {
            "semantic": self.cfg.LAMBDA_SEM * weight * out.losses["semantic"],
            "regularization": self.cfg.LAMBDA_REG * weight * out.losses["regularization"],
        }
