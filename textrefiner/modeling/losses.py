"""The semantic loss (paper Eq. 10, release form) and the regularisation loss (Eq. 11)."""
import torch
import torch.nn.functional as F

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


def semantic_loss(token_set: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor):
    """Cross-entropy of ``s * S_i @ t^T`` with each image's label for each of its K tokens.

    Args:
        token_set: (B, K, d) from ``semantic_token_set`` (not normalised, as in the release).
        text: (C, d) L2-normalised, unrefined text features.
        labels: (B,) class indices.
        logit_scale: CLIP's ``exp(logit_scale)``.
    """
    b, k, d = token_set.shape
    logits = logit_scale * token_set.reshape(b * k, d) @ text.to(token_set.dtype).t()
    return F.cross_entropy(logits, labels.repeat_interleave(k))


def regularization_loss(refined: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """``mean |normalize(t') - t|`` over all C * d elements (Eq. 11, L1)."""
    return F.l1_loss(F.normalize(refined, dim=-1), text.to(refined.dtype), reduction="mean")
