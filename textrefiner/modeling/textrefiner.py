"""The TextRefiner head: local cache + feature aggregation + feature alignment + losses."""
from typing import Dict, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import FeatureAggregation, FeatureAlignment
from .local_cache import LocalCache
from .losses import regularization_loss, semantic_loss, semantic_token_set


class RefinerOutput(NamedTuple):
    refined: torch.Tensor  # (C, d) refined text features t'
    losses: Dict[str, torch.Tensor]  # "semantic", "regularization" (training only)


class TextRefiner(nn.Module):
    """Refines class text features with visual attributes cached from local image tokens.

    Args:
        dim: d, text embedding width (cache entries, aggregation, alignment output).
        token_dim: width of the local image tokens (default ``dim``).
        cache_size: M, number of cache entries.
        momentum: gamma, cache update momentum (Eq. 4).
        alpha: weight of the aggregated detail (Eq. 7).
        topk: k, patch tokens in the semantic set (Eq. 10).
        update_rule: cache update, "release" or "paper".
        semantic_set: "release" (CLS + top-k + mean) or "paper" (top-k + mean).
        normalize_refined: L2-normalise t' (the paper's cosine in Eqs. 9, 13); the release does not.
    """

    def __init__(
        self,
        dim: int,
        token_dim: Optional[int] = None,
        cache_size: int = 25,
        momentum: float = 0.8,
        alpha: float = 0.2,
        topk: int = 5,
        update_rule: str = "release",
        semantic_set: str = "release",
        normalize_refined: bool = False,
    ):
        super().__init__()
        self.cache = LocalCache(cache_size, dim, momentum, update_rule)
        self.aggregation = FeatureAggregation(dim, alpha)
        self.alignment = FeatureAlignment(token_dim or dim, dim)
        self.topk = topk
        self.semantic_set = semantic_set
        self.normalize_refined = normalize_refined

    def refine(self, text: torch.Tensor) -> torch.Tensor:
        """t (C, d) -> t' (C, d) from the current cache (read-only); (B, C, d) per image likewise."""
        refined = self.aggregation(text, self.cache.read(text))
        return F.normalize(refined, dim=-1) if self.normalize_refined else refined

    def forward(
        self,
        text: torch.Tensor,
        tokens: Optional[torch.Tensor] = None,
        cls_attention: Optional[torch.Tensor] = None,
        target=None,
        logit_scale: Optional[torch.Tensor] = None,
    ) -> RefinerOutput:
        """Refine ``text``; in training also compute both losses and update the cache.

        Args:
            text: (C, d) L2-normalised text features t of the host's prompts ((B, C, d): one set per
                image, CoCoOp; the regularisation loss then averages over every image, class and dimension).
            tokens: (B, 1 + P, token_dim) last-block local tokens, CLS first (training).
            cls_attention: (B, P) last-block CLS -> patch attention (training).
            target: (B,) class indices, or the host's ``HardLabels`` / ``SoftTargets`` (training):
                the semantic loss takes the host's loss form.
            logit_scale: CLIP's exp(logit_scale) (training).
        """
        refined = self.refine(text)
        if not self.training:
            return RefinerOutput(refined, {})
        aligned = self.alignment(tokens)
        token_set = semantic_token_set(aligned, cls_attention, self.topk, self.semantic_set)
        losses = {
            "semantic": semantic_loss(token_set, text, target, logit_scale),
            "regularization": regularization_loss(refined, text),
        }
        self.cache.update(aligned)
        return RefinerOutput(refined, losses)
