"""The CoCoOp host (Conditional Prompt Learning, Zhou et al., CVPR 2022): CoOp's context plus an
image-conditioned bias from a small meta-network, so each image gets its own class prompts.

``CoCoOpPromptLearner`` adds the meta-net (``linear1`` d -> d/16, ReLU, ``linear2`` d/16 -> W, the
release's names) to CoOp's ``PromptLearner``; ``CoCoOpCLIP`` encodes the B x C prompts of a batch of B
images in one text-tower call, each prompt only up to its own end-of-text token, and each image's
``[SOS] ctx + pi(x)``, which all its classes share, only once (``TextEncoder.encode_shared_prefix``).
The release loops over the images and runs every prompt over all 77 positions; the numbers are
the same to float rounding (the positions after EOT never reach the EOT feature, and the causal
prefix never sees the class tokens).
"""
from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn

from ..precision import float32_under_autocast
from .coop import CoOpCLIP, PromptLearner

#: at evaluation, images are encoded in groups of at most this many prompts (images x classes):
#: the text tower's activations of a test batch of 100 images at 1000 classes would not fit otherwise
EVAL_PROMPTS_PER_GROUP = 2048


class CoCoOpPromptLearner(PromptLearner):
    """CoOp's shared context ``ctx`` (M, W) and the meta-net; ``forward(image_features)`` gives
    every image's prompts ``[SOS] ctx_1 + pi(x) .. ctx_M + pi(x) [CLASS] . [EOS]`` (B, C, L, W).

    Built in the release's order (context, then meta-net), so one seed gives the release's
    initial weights. The meta-net is in CLIP's dtype (float16 only under ``PREC fp16``)."""

    def __init__(self, classnames: Sequence[str], clip_model: nn.Module, n_ctx: int = 16, ctx_init: str = ""):
        super().__init__(classnames, clip_model, n_ctx=n_ctx, ctx_init=ctx_init)
        vis_dim = clip_model.visual.output_dim
        width = clip_model.ln_final.weight.shape[0]
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, width)),
        ])).to(self.ctx.dtype)

    def shared_prefix(self, image_features: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features (B, d) -> each image's ``[SOS] ctx + pi(x)`` (B, 1 + M, W),
        the part of its prompts that every class shares (``forward`` appends the class tokens)."""
        ctx = self.ctx.unsqueeze(0) + self.meta_net(image_features).unsqueeze(1)  # (B, M, W)
        return torch.cat([self.token_prefix[:1].expand(ctx.shape[0], -1, -1), ctx], dim=1)

    def forward(self, image_features: torch.Tensor, length: Optional[int] = None) -> torch.Tensor:
        """L2-normalised image features (B, d) -> prompt token embeddings (B, C, L, W); only the
        first ``length`` positions if given (any ``length >= text_length`` keeps every EOT)."""
        bias = self.meta_net(image_features)  # (B, W)
        ctx = self.ctx.unsqueeze(0) + bias.unsqueeze(1)  # (B, M, W)
        b = ctx.shape[0]
        suffix = self.token_suffix if length is None else self.token_suffix[:, : length - 1 - self.n_ctx]
        return torch.cat([
            self.token_prefix.unsqueeze(0).expand(b, -1, -1, -1),
            ctx.unsqueeze(1).expand(-1, self.n_cls, -1, -1),
            suffix.unsqueeze(0).expand(b, -1, -1, -1),
        ], dim=2)


class CoCoOpCLIP(CoOpCLIP):
    """CLIP with CoCoOp prompts: ``logits_i = s * normalize(f_i) @ normalize(t_i)^T`` with image
    i's own class text features ``t_i`` (C, d).

    ``text_chunk_size``: encode the B x C prompts this many at a time (0: all at once),
    checkpointed when training (see ``TextEncoder``).
    """

    def text_features(self, image_features: torch.Tensor) -> torch.Tensor:
        """Unnormalised image features (B, d) -> each image's L2-normalised class text features (B, C, d)."""
        pl = self.prompt_learner
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        if not self.text_encoder.chunk_size:
            # [SOS] ctx + pi(x) is the same for every class of an image: encoded once per image
            prefix = pl.shared_prefix(image_features)
            suffixes = pl.token_suffix[:, : pl.text_length - prefix.shape[1]]
            features = self.text_encoder.encode_shared_prefix(prefix, suffixes, pl.eot_positions)
            return features / features.norm(dim=-1, keepdim=True)
        prompts = pl(image_features, pl.text_length)  # (B, C, L, W), up to the last EOT
        b, c = prompts.shape[:2]
        features = self.text_encoder(
            prompts.reshape(b * c, *prompts.shape[2:]), pl.tokenized_prompts.repeat(b, 1),
            eot_positions=pl.eot_positions * b,
        ).reshape(b, c, -1)
        return features / features.norm(dim=-1, keepdim=True)

    @float32_under_autocast
    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """``image_features`` (B, d) unnormalised, ``text_features`` (B, C, d) per image (or (C, d)
        shared) -> (B, C); float32 under autocast."""
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        if text_features.dim() == 2:
            return self.logit_scale.exp() * image_features @ text_features.t()
        return self.logit_scale.exp() * torch.bmm(text_features, image_features.unsqueeze(-1)).squeeze(-1)

    def forward(self, image: torch.Tensor, text_features: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits (B, C); the text side depends on the images, so ``text_features`` must be None."""
        if text_features is not None:
            raise ValueError("CoCoOp's text features depend on the image: they cannot be computed once")
        image_features = self.encode_image(image).global_feature
        return self.logits(image_features, self.text_features(image_features))
