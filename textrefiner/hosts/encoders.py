"""CLIP's image and text towers, run by our own forward over CLIP's modules.

Nothing in CLIP is modified: the forwards below replay ``VisionTransformer.forward``
and ``CLIP.encode_text`` block by block, which lets us

* read the last vision block's tokens (after ``ln_post`` and ``proj``) and its
  CLS -> patch attention (averaged over heads), which TextRefiner needs;
* run the causal text transformer only up to the last end-of-text position
  (``truncate=True``): features at the EOT token depend on earlier positions only,
  so the result is the same as with all 77 positions, for a fraction of the cost;
* insert deep prompts between blocks (MaPLe, PromptKD) in the host modules.
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn as nn


def residual_block(
    block: nn.Module,
    x: torch.Tensor,
    attn_mask: Optional[torch.Tensor] = None,
    need_weights: bool = False,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """One CLIP ``ResidualAttentionBlock`` on ``x`` (L, N, W).

    Returns the block output and, if ``need_weights``, the attention weights
    (N, L, L) averaged over heads (what ``nn.MultiheadAttention`` returns).
    """
    y = block.ln_1(x)
    if attn_mask is not None:
        attn_mask = attn_mask.to(dtype=y.dtype, device=y.device)
    attn_out, weights = block.attn(y, y, y, need_weights=need_weights, attn_mask=attn_mask)
    x = x + attn_out
    x = x + block.mlp(block.ln_2(x))
    return x, weights


class VisualOutput(NamedTuple):
    """Image features before normalisation."""

    global_feature: torch.Tensor  # (B, d): CLIP's image embedding (the projected CLS token)
    tokens: Optional[torch.Tensor]  # (B, 1 + P, d): last-block tokens after ln_post and proj
    cls_attention: Optional[torch.Tensor]  # (B, P): last-block CLS -> patch attention, mean over heads


class ImageEncoder(nn.Module):
    """CLIP's ViT image tower; optionally returns the last block's local tokens."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """Patch + class embeddings with positions and ln_pre: (B, 3, H, W) -> (1 + P, B, W)."""
        v = self.visual
        x = v.conv1(image.type(self.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        return v.ln_pre(x).permute(1, 0, 2)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """ln_post and proj on (B, N, W) or (B, W) tokens."""
        return self.visual.ln_post(x) @ self.visual.proj

    def forward(self, image: torch.Tensor, with_local: bool = False) -> VisualOutput:
        blocks = self.visual.transformer.resblocks
        x = self.embed(image)
        for block in blocks[:-1]:
            x, _ = residual_block(block, x)
        x, attn = residual_block(blocks[-1], x, need_weights=with_local)
        x = x.permute(1, 0, 2)  # (B, 1 + P, W)
        if not with_local:
            return VisualOutput(self.project(x[:, 0, :]), None, None)
        tokens = self.project(x)
        return VisualOutput(tokens[:, 0, :], tokens, attn[:, 0, 1:])


def causal_mask(length: int, device=None) -> torch.Tensor:
    """CLIP's additive causal mask: -inf above the diagonal."""
    return torch.full((length, length), float("-inf"), device=device).triu_(1)


class TextEncoder(nn.Module):
    """CLIP's text tower over prompt embeddings (C, L, W) -> (C, d) at the EOT token."""

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection

    @property
    def dtype(self) -> torch.dtype:
        return self.text_projection.dtype

    def forward(
        self,
        prompts: torch.Tensor,
        tokenized_prompts: torch.Tensor,
        truncate: bool = True,
    ) -> torch.Tensor:
        """``prompts`` (C, L, W) token embeddings, ``tokenized_prompts`` (C, L) ids -> (C, d)."""
        eot = tokenized_prompts.argmax(dim=-1)
        if truncate:
            prompts = prompts[:, : int(eot.max()) + 1]
        length = prompts.shape[1]
        x = prompts + self.positional_embedding[:length].type(self.dtype)
        x = x.permute(1, 0, 2)
        mask = causal_mask(length, x.device)
        for block in self.transformer.resblocks:
            x, _ = residual_block(block, x, attn_mask=mask)
        x = self.ln_final(x.permute(1, 0, 2)).type(self.dtype)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection
