"""``TextRefinerMixin``: adds TextRefiner to any host trainer of this project.

The host's model offers ``text_features()`` (C, d) in its text space,
``encode_image(image, with_local=True)`` (a ``VisualOutput`` with the last block's
tokens and CLS attention), ``logits(image_features, text_features)``, ``logit_scale``,
and the widths ``text_dim`` (d: cache, aggregation, alignment output) and ``token_dim``
(the local tokens: alignment input). The host trainer gives the loss form
(``training_target``: labels for CoOp/MaPLe, the teacher's probabilities for PromptKD)
and its named loss terms (``host_losses``). The mixin adds the TextRefiner head as a
second trainable module ("textrefiner": aggregation, alignment and the cache buffer)
and trains with

    loss = host terms on s f t'^T + w LAMBDA_SEM semantic + w LAMBDA_REG regularization

where the semantic loss takes the host's loss form and ``w`` is the host's loss weight
(1 for cross-entropy, KD_WEIGHT for PromptKD), plus the host's own terms that need the
image tower's output (``extra_losses``: PromptSRC's self-regularisation), reading the cache
before updating it at every training step. The step itself is the base trainer's
(``PromptTrainer.training_losses``); the mixin fills its hooks: local tokens from the image tower,
t' and the two losses (``training_text_features``), their weights (``plugin_losses``). At evaluation the refined features t' are
computed once per evaluation from the frozen cache and no local tokens are computed.
``TRAINER.TEXTREFINER.ENABLED False`` builds no head: the trainer is then exactly its host.
"""
import math

import torch.nn as nn
from yacs.config import CfgNode as CN

from textrefiner.config import ConfigPart, register_config_part
from textrefiner.errors import UserError
from textrefiner.modeling import SEMANTIC_SETS, UPDATE_RULES, TextRefiner


def add_refiner_config(cfg: CN) -> None:
    """``TRAINER.TEXTREFINER.*``: defaults are the authors' release (REFERENCE.md section 2)."""
    cfg.TRAINER.TEXTREFINER = CN()
    cfg.TRAINER.TEXTREFINER.ENABLED = True  # False: the trainer is exactly its host (CoOp, MaPLe, ...)
    cfg.TRAINER.TEXTREFINER.CACHE_SIZE = 25  # M, number of local-cache entries (Eqs. 2-6)
    cfg.TRAINER.TEXTREFINER.MOMENTUM = 0.8  # gamma in Eq. 4 ("momentum alpha" in the paper's details)
    cfg.TRAINER.TEXTREFINER.ALPHA = 0.2  # alpha in Eq. 7, weight of the aggregated detail ("fusion factor beta")
    # lambda_1 in Eq. 12, weight of the semantic loss (1/50), relative to the host's loss weight
    # (1 for CoOp/MaPLe; TRAINER.PROMPTKD.KD_WEIGHT for PromptKD, whose configs use 1/100)
    cfg.TRAINER.TEXTREFINER.LAMBDA_SEM = 0.02
    # lambda_2 in Eq. 12, weight of the regularisation loss, relative as LAMBDA_SEM (PromptKD configs: 1/50)
    cfg.TRAINER.TEXTREFINER.LAMBDA_REG = 20.0
    cfg.TRAINER.TEXTREFINER.TOPK = 5  # k in Eq. 10, patch tokens with the highest CLS attention
    # Cache update: "release" (authors' code: token-softmax weights, sum, re-normalised entries)
    # or "paper" (Eq. 4 as printed: entry-softmax weights D_ij on raw tokens, no re-normalisation)
    cfg.TRAINER.TEXTREFINER.UPDATE_RULE = "release"
    # Semantic set S in Eq. 10: "release" (CLS + top-k + mean, k + 2 tokens) or "paper" (top-k + mean)
    cfg.TRAINER.TEXTREFINER.SEMANTIC_SET = "release"
    # L2-normalise the refined features E_hat before the logits (the paper's cosine); the release does not
    cfg.TRAINER.TEXTREFINER.NORMALIZE_REFINED = False


TEXTREFINER_CONFIG = register_config_part(ConfigPart(
    "TRAINER.TEXTREFINER", add_refiner_config,
    choices={"TRAINER.TEXTREFINER.UPDATE_RULE": UPDATE_RULES, "TRAINER.TEXTREFINER.SEMANTIC_SET": SEMANTIC_SETS},
    minimums={"TRAINER.TEXTREFINER.CACHE_SIZE": (1, "local-cache entries M"),
              # at most the image encoder's patch count, checked when the encoder is built (check_topk)
              "TRAINER.TEXTREFINER.TOPK": (1, "patch tokens k in the semantic loss")},
    ranges={"TRAINER.TEXTREFINER.MOMENTUM": (0.0, 1.0), "TRAINER.TEXTREFINER.ALPHA": (0.0, math.inf),
            "TRAINER.TEXTREFINER.LAMBDA_SEM": (0.0, math.inf), "TRAINER.TEXTREFINER.LAMBDA_REG": (0.0, math.inf)},
))


def build_textrefiner(tr_cfg, dim: int, token_dim: int) -> TextRefiner:
    """Map ``TRAINER.TEXTREFINER`` keys to the head's constructor arguments."""
    return TextRefiner(
        dim=dim,
        token_dim=token_dim,
        cache_size=tr_cfg.CACHE_SIZE,
        momentum=tr_cfg.MOMENTUM,
        alpha=tr_cfg.ALPHA,
        topk=tr_cfg.TOPK,
        update_rule=tr_cfg.UPDATE_RULE,
        semantic_set=tr_cfg.SEMANTIC_SET,
        normalize_refined=tr_cfg.NORMALIZE_REFINED,
    )


def check_topk(topk: int, visual: nn.Module) -> None:
    """k patch tokens are picked per image: at most the encoder's patch count."""
    patches = (visual.input_resolution // visual.conv1.kernel_size[0]) ** 2
    if topk > patches:
        raise UserError(f"TRAINER.TEXTREFINER.TOPK is {topk} but this CLIP's image encoder has {patches} patch "
                        f"tokens: set TOPK to at most {patches} (the release uses 5)")


class TextRefinerMixin:
    """Put before the host trainer in the bases: ``class X_TextRefiner(TextRefinerMixin, X)``."""

    refiner = None

    @classmethod
    def config_part_names(cls):
        return (*super().config_part_names(), TEXTREFINER_CONFIG.name)

    def build_plugins(self, clip_model: nn.Module) -> dict:
        plugins = super().build_plugins(clip_model)
        tr = self.cfg.TRAINER.TEXTREFINER
        if not tr.ENABLED:
            print("TRAINER.TEXTREFINER.ENABLED is False: training the plain host")
            return plugins
        dim, token_dim = self.model.text_dim, self.model.token_dim
        check_topk(tr.TOPK, clip_model.visual)
        print(
            f"Building TextRefiner (M={tr.CACHE_SIZE}, momentum={tr.MOMENTUM}, alpha={tr.ALPHA}, k={tr.TOPK}, "
            f"lambda_sem={tr.LAMBDA_SEM}, lambda_reg={tr.LAMBDA_REG}, update={tr.UPDATE_RULE}, "
            f"semantic set={tr.SEMANTIC_SET}; text space {dim}-d, local tokens {token_dim}-d)"
        )
        self.refiner = self.precision.cast(build_textrefiner(tr, dim, token_dim))
        plugins["textrefiner"] = self.refiner
        return plugins

    def classifier_text_features(self):
        text = super().classifier_text_features()
        return text if text is None else self.evaluation_text_features(text)

    def evaluation_text_features(self, text):
        """t' from the frozen cache ((C, d), or (B, C, d) per image)."""
        return text if self.refiner is None else self.refiner.refine(text)

    # ------------------------------------------------------------------ the training step's hooks
    @property
    def needs_local_tokens(self) -> bool:
        return self.refiner is not None

    def training_text_features(self, text, visual, target):
        """t' from the cache as it was before this batch, the unweighted semantic and regularisation
        losses, and the cache updated with the batch's aligned tokens."""
        if self.refiner is None:
            return super().training_text_features(text, visual, target)
        out = self.refiner(text, visual.tokens, visual.cls_attention, target, self.model.logit_scale.exp())
        return out.refined, out.losses

    def plugin_losses(self, terms, target):
        if self.refiner is None:
            return super().plugin_losses(terms, target)
        tr = self.cfg.TRAINER.TEXTREFINER
        return {
            "semantic": tr.LAMBDA_SEM * target.weight * terms["semantic"],
            "regularization": tr.LAMBDA_REG * target.weight * terms["regularization"],
        }
