"""The semantic loss (paper Eq. 10, release form) and the regularisation loss (Eq. 11)."""
from typing import Union

import torch
import torch.nn.functional as F

from ..precision import float32_under_autocast
from .targets import HardLabels, SoftTargets

Target = Union[HardLabels, SoftTargets]

SEMANTIC_SETS = ("release", "paper")


def semantic_token_set(
    aligned: torch.Tensor, cls_attention: torch.Tensor, topk: int = 5, semantic_set: str = "release"
) -> torch.Tensor:
    """Per image, the aligned tokens the semantic loss scores.

    ``release``: the aligned CLS token, the ``topk`` patch tokens with the highest
    CLS -> patch attention, and the mean of all aligned tokens (k + 2 vectors).
    ``paper``: the ``topk`` patch tokens and the mean (k + 1 vectors, as Eq. 10 states).

    Args:
        aligned: (B, 1 + P, d) aligned tokens, CLS first.
        cls_attention: (B, P) CLS -> patch attention of the last vision block.
    Returns:
        (B, K, d) with K = topk + 2 (release) or topk + 1 (paper); not normalised.
    """
    if semantic_set not in SEMANTIC_SETS:
        raise ValueError(f"semantic_set must be one of {SEMANTIC_SETS}, got {semantic_set!r}")
    index = cls_attention.topk(topk, dim=-1).indices + 1  # +1: patch p is token p + 1
    if semantic_set == "release":
        index = torch.cat([torch.zeros_like(index[:, :1]), index], dim=1)
    picked = aligned.gather(1, index.unsqueeze(-1).expand(-1, -1, aligned.shape[-1]))
    return torch.cat([picked, aligned.mean(dim=1, keepdim=True)], dim=1)


def as_target(target: Union[torch.Tensor, Target]) -> Target:
    """Class labels (B,) become ``HardLabels``; a target object is returned as it is."""
    return HardLabels(target) if isinstance(target, torch.Tensor) else target


@float32_under_autocast
def semantic_loss(token_set: torch.Tensor, text: torch.Tensor, target, logit_scale: torch.Tensor):
    """The host's loss form on ``s * S_i @ t^T`` for each of an image's K tokens: cross-entropy
    with the image's label (CoOp, MaPLe), or KL to the teacher's probabilities of the image
    (PromptKD), repeated K times.

    Args:
        token_set: (B, K, d) from ``semantic_token_set`` (not normalised, as in the release).
        text: (C, d) L2-normalised, unrefined text features, or (B, C, d): image i's own (CoCoOp).
        target: (B,) class indices, or a ``HardLabels`` / ``SoftTargets`` for the batch.
        logit_scale: CLIP's ``exp(logit_scale)``.
    """
    b, k, d = token_set.shape
    if text.dim() == 3:  # one set of class features per image (CoCoOp): image i's tokens score its own
        logits = logit_scale * torch.bmm(token_set, text.to(token_set.dtype).transpose(1, 2)).reshape(b * k, -1)
    else:
        logits = logit_scale * token_set.reshape(b * k, d) @ text.to(token_set.dtype).t()
    return as_target(target).loss(logits)


@float32_under_autocast
def regularization_loss(refined: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """``mean |normalize(t') - t|`` over all C * d elements (Eq. 11, L1)."""
    return F.l1_loss(F.normalize(refined, dim=-1), text.to(refined.dtype), reduction="mean")
