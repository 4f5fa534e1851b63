"""``TextRefinerMixin``: adds TextRefiner to any host trainer of this project.

The host's model must offer ``text_features()`` (C, d, L2-normalised),
``encode_image(image, with_local=True)`` (a ``VisualOutput`` with the last block's
tokens and CLS attention), ``logits(image_features, text_features)`` and
``logit_scale``. The mixin adds the TextRefiner head as a second trainable module
("textrefiner": aggregation, alignment and the cache buffer) and trains with

    loss = CE(s f t'^T, y) + LAMBDA_SEM * semantic + LAMBDA_REG * regularization

reading the cache before updating it at every training step. At evaluation the
refined features t' are computed once per evaluation from the frozen cache and no
local tokens are computed. ``TRAINER.TEXTREFINER.ENABLED False`` builds no head:
the trainer is then exactly its host.
"""
import torch.nn as nn
import torch.nn.functional as F

from textrefiner.errors import UserError
from textrefiner.framework import compute_accuracy
from textrefiner.modeling import TextRefiner


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

    def build_plugins(self, clip_model: nn.Module) -> dict:
        plugins = super().build_plugins(clip_model)
        tr = self.cfg.TRAINER.TEXTREFINER
        if not tr.ENABLED:
            print("TRAINER.TEXTREFINER.ENABLED is False: training the plain host")
            return plugins
        dim = clip_model.text_projection.shape[1]
        token_dim = clip_model.visual.proj.shape[1]
        check_topk(tr.TOPK, clip_model.visual)
        print(
            f"Building TextRefiner (M={tr.CACHE_SIZE}, momentum={tr.MOMENTUM}, alpha={tr.ALPHA}, k={tr.TOPK}, "
            f"lambda_sem={tr.LAMBDA_SEM}, lambda_reg={tr.LAMBDA_REG}, update={tr.UPDATE_RULE}, "
            f"semantic set={tr.SEMANTIC_SET})"
        )
        self.refiner = self.precision.cast(build_textrefiner(tr, dim, token_dim))
        plugins["textrefiner"] = self.refiner
        return plugins

    def classifier_text_features(self):
        text = super().classifier_text_features()
        return text if self.refiner is None else self.refiner.refine(text)

    def forward_backward(self, batch) -> dict:
        if self.refiner is None:
            return super().forward_backward(batch)
        tr = self.cfg.TRAINER.TEXTREFINER
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            visual = self.model.encode_image(image, with_local=True)
            text = self.model.text_features()
            out = self.refiner(text, visual.tokens, visual.cls_attention, label, self.model.logit_scale.exp())
            output = self.model.logits(visual.global_feature, out.refined)
            ce = F.cross_entropy(output, label)
            semantic = tr.LAMBDA_SEM * out.losses["semantic"]
            regularization = tr.LAMBDA_REG * out.losses["regularization"]
            loss = ce + semantic + regularization
        self.model_backward_and_update(loss)
        self.step_lr_at_epoch_end()
        return {
            "loss": loss.item(),
            "ce": ce.item(),
            "semantic": semantic.item(),
            "regularization": regularization.item(),
            "acc": compute_accuracy(output, label)[0].item(),
        }
