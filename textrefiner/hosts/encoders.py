"""CLIP's image and text towers, run by our own forward over CLIP's modules.

Nothing in CLIP is modified: the forwards below replay ``VisionTransformer.forward``
and ``CLIP.encode_text`` block by block, which lets us

* read the last vision block's tokens (after ``ln_post`` and ``proj``) and its
  CLS -> patch attention (averaged over heads), which TextRefiner needs;
* run the causal text transformer on each prompt only up to its own end-of-text
  token (``truncate=True``; prompts of similar length are encoded together): the
  feature at the EOT token depends on earlier positions only, so the result is the
  same as with all 77 positions, for a fraction of the cost;
* run a prefix that many prompts share once (``encode_shared_prefix``: CoCoOp's
  ``[SOS] ctx + pi(x)``, the same for every class of an image): the causal prefix
  never sees what follows, so its keys and values serve every prompt that starts with it;
* encode many class prompts in chunks (``chunk_size``), with activation
  checkpointing per chunk when gradients are on, so that training at 1000 classes
  keeps one chunk's activations at a time instead of all of them;
* insert deep prompts between blocks (MaPLe, IVLP, PromptKD): ``prompted_blocks`` and
  ``encode_prompted_image``.
"""
from itertools import groupby
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


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
        return self.forward_modes(image, (with_local,))[with_local]

    def forward_modes(self, image: torch.Tensor, modes=(False, True)) -> Dict[bool, VisualOutput]:
        """``forward`` for each ``with_local`` in ``modes``, the blocks before the last run once: the last
        block computes its attention weights only for local tokens (another kernel, other low bits), so
        each mode's output is exactly what ``forward`` gives for it."""
        blocks = self.visual.transformer.resblocks
        x = self.embed(image)
        for block in blocks[:-1]:
            x, _ = residual_block(block, x)
        outputs = {}
        for with_local in dict.fromkeys(modes):
            y, attn = residual_block(blocks[-1], x, need_weights=with_local)
            y = y.permute(1, 0, 2)  # (B, 1 + P, W)
            if not with_local:
                outputs[with_local] = VisualOutput(self.project(y[:, 0, :]), None, None)
            else:
                tokens = self.project(y)
                outputs[with_local] = VisualOutput(tokens[:, 0, :], tokens, attn[:, 0, 1:])
        return outputs


def causal_mask(length: int, device=None) -> torch.Tensor:
    """CLIP's additive causal mask: -inf above the diagonal."""
    return torch.full((length, length), float("-inf"), device=device).triu_(1)


def _replace_rows(x: torch.Tensor, start: int, prompts: torch.Tensor) -> torch.Tensor:
    """``x`` (L, N, W) with rows ``start .. start + n - 1`` replaced by ``prompts`` (n, W) for every N."""
    rows = prompts.to(x.dtype).unsqueeze(1).expand(-1, x.shape[1], -1)
    return torch.cat([x[:start], rows, x[start + prompts.shape[0]:]], dim=0)


def prompted_blocks(
    blocks: Sequence[nn.Module],
    x: torch.Tensor,
    deep_prompts: torch.Tensor,
    start: int,
    attn_mask: Optional[torch.Tensor] = None,
    need_last_weights: bool = False,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Run CLIP blocks on ``x`` (L, N, W); before block i (1 <= i <= len(deep_prompts))
    rows ``start ..`` are overwritten by ``deep_prompts[i - 1]`` (n, W).

    Returns the last block's output and, if ``need_last_weights``, its attention (N, L, L).
    """
    weights = None
    last = len(blocks) - 1
    for i, block in enumerate(blocks):
        if 1 <= i <= deep_prompts.shape[0]:
            x = _replace_rows(x, start, deep_prompts[i - 1])
        x, weights = residual_block(block, x, attn_mask=attn_mask, need_weights=need_last_weights and i == last)
    return x, weights


# Prompts of one length are batched with longer ones until a batch has this many: smaller
# batches make matmuls too skinny to be worth the positions they save (measured on a CPU).
MIN_GROUP_SIZE = 32


def length_groups(eot_positions: Sequence[int], chunk_size: int = 0) -> List[Tuple[List[int], int]]:
    """How to batch prompts for the text transformer: ``(prompt indices, length)`` pairs.

    Prompts are ordered by EOT position and each group runs up to its longest EOT. Without
    ``chunk_size``, a group holds the prompts of one length, joined by the next lengths
    while it has fewer than ``MIN_GROUP_SIZE``; with it, consecutive groups of ``chunk_size``.
    """
    order = sorted(range(len(eot_positions)), key=eot_positions.__getitem__)
    if chunk_size:
        groups = [order[i : i + chunk_size] for i in range(0, len(order), chunk_size)]
    else:
        groups = []
        for _, same_length in groupby(order, key=eot_positions.__getitem__):
            if groups and len(groups[-1]) < MIN_GROUP_SIZE:
                groups[-1] += same_length
            else:
                groups.append(list(same_length))
        if len(groups) > 1 and len(groups[-1]) < MIN_GROUP_SIZE:
            last = groups.pop()
            groups[-1] += last
    return [(group, eot_positions[group[-1]] + 1) for group in groups]


class TextEncoder(nn.Module):
    """CLIP's text tower over prompt embeddings (C, L, W) -> (C, d) at the EOT token.

    Args:
        clip_model: CLIP whose text transformer, positions, ``ln_final`` and projection are used.
        chunk_size: encode at most this many prompts at once (0: all at once). With
            gradients on, each chunk is checkpointed: backward keeps only the chunks'
            inputs and outputs and recomputes one chunk's activations at a time. Results
            equal the unchunked computation to float rounding; the price is a second
            forward pass of the text transformer during backward.
    """

    def __init__(self, clip_model: nn.Module, chunk_size: int = 0):
        super().__init__()
        if chunk_size < 0:
            raise ValueError(f"chunk_size must be >= 0 (0 = no chunking), got {chunk_size}")
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.chunk_size = chunk_size

    @property
    def dtype(self) -> torch.dtype:
        return self.text_projection.dtype

    def forward(
        self,
        prompts: torch.Tensor,
        tokenized_prompts: torch.Tensor,
        truncate: bool = True,
        eot_positions: Optional[Sequence[int]] = None,
        deep_prompts: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``prompts`` (C, L, W) token embeddings, ``tokenized_prompts`` (C, L) ids -> (C, d).

        ``truncate``: run each prompt up to its own EOT token (False: every given position).
        ``eot_positions``: the prompts' EOT positions when the caller has them on the host;
        otherwise they are read back from the device (one synchronisation).
        ``deep_prompts``: (J - 1, n, W) prompts overwriting positions 1 .. n before blocks
        2 .. J (MaPLe's deep text prompts); None: plain CLIP blocks.
        """
        eot = tokenized_prompts.argmax(dim=-1)
        if not truncate:
            eot_positions = [prompts.shape[1] - 1] * prompts.shape[0]
        elif eot_positions is None:
            eot_positions = eot.tolist()
        groups = length_groups(eot_positions, self.chunk_size)
        if len(groups) == 1:
            return self.encode(prompts[:, : groups[0][1]], eot, deep_prompts)
        checkpointed = self.chunk_size > 0 and torch.is_grad_enabled()
        outputs, order = [], []
        for indices, length in groups:
            index = torch.tensor(indices, device=prompts.device)
            group = (prompts[:, :length].index_select(0, index), eot.index_select(0, index))
            # Checkpointed, a chunk keeps only its inputs and output for backward.
            if checkpointed:
                encoded = checkpoint(self.encode, *group, deep_prompts, use_reentrant=False)
            else:
                encoded = self.encode(*group, deep_prompts)
            outputs.append(encoded)
            order += indices
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[order] = torch.arange(len(order))
        return torch.cat(outputs).index_select(0, inverse.to(prompts.device))

    def encode(
        self, prompts: torch.Tensor, eot: torch.Tensor, deep_prompts: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """All positions of ``prompts`` (C, L, W) through the transformer; features at ``eot`` (C,) -> (C, d)."""
        length = prompts.shape[1]
        x = prompts + self.positional_embedding[:length].type(self.dtype)
        x = x.permute(1, 0, 2)
        mask = causal_mask(length, x.device)
        if deep_prompts is None:
            for block in self.transformer.resblocks:
                x, _ = residual_block(block, x, attn_mask=mask)
        else:
            x, _ = prompted_blocks(self.transformer.resblocks, x, deep_prompts, 1, attn_mask=mask)
        x = self.ln_final(x.permute(1, 0, 2)).type(self.dtype)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection

    def encode_shared_prefix(
        self, prefix: torch.Tensor, suffixes: torch.Tensor, eot_positions: Sequence[int]
    ) -> torch.Tensor:
        """Every prompt ``[prefix_b, suffix_c]`` of B prefixes (B, P, W) and C suffixes (C, S, W),
        EOT of suffix c at ``eot_positions[c]`` (counted from the prompt's start, >= P) -> (B, C, d).

        The same features as encoding all B x C prompts (``forward``), to float rounding: in the
        causal transformer the prefix positions never see a suffix, so they are run once per prefix
        and each block's keys and values of the prefix are handed to the suffix positions. CoCoOp's
        prompts share ``[SOS] ctx + pi(x)`` across the classes of an image: its text tower runs
        about half the positions.
        """
        blocks = self.transformer.resblocks
        n_prefix, length = prefix.shape[1], max(eot_positions) + 1
        position = self.positional_embedding[:length].type(self.dtype)
        x = (prefix + position[:n_prefix]).permute(1, 0, 2)  # (P, B, W)
        mask = causal_mask(n_prefix, x.device)
        keys_values = []
        for block in blocks:
            q, k, v = _in_projection(block, block.ln_1(x))
            keys_values.append((k, v))
            x = x + _attention(block, q, k, v, mask)
            x = x + block.mlp(block.ln_2(x))
        b = prefix.shape[0]
        outputs, order = [], []
        for indices, end in length_groups([e - n_prefix for e in eot_positions]):
            index = torch.tensor(indices, device=suffixes.device)
            group = suffixes[:, : end].index_select(0, index) + position[n_prefix : n_prefix + end]  # (G, S, W)
            g = group.shape[0]
            x = group.permute(1, 0, 2).unsqueeze(1).expand(-1, b, -1, -1).reshape(end, b * g, -1)  # image-major
            # the suffix sees every prefix position and the suffix positions up to its own
            mask = torch.cat([torch.zeros(end, n_prefix, device=x.device), causal_mask(end, x.device)], dim=1)
            for block, (k_prefix, v_prefix) in zip(blocks, keys_values):
                q, k, v = _in_projection(block, block.ln_1(x))
                k = torch.cat([_per_prompt(k_prefix, g), k])
                v = torch.cat([_per_prompt(v_prefix, g), v])
                x = x + _attention(block, q, k, v, mask)
                x = x + block.mlp(block.ln_2(x))
            x = self.ln_final(x.permute(1, 0, 2)).type(self.dtype)  # (B * G, S, W)
            eot = torch.tensor([eot_positions[i] - n_prefix for i in indices], device=x.device).repeat(b)
            outputs.append((x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection).view(b, g, -1))
            order += indices
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[order] = torch.arange(len(order))
        return torch.cat(outputs, dim=1).index_select(1, inverse.to(prefix.device))


def _per_prompt(x: torch.Tensor, n_suffixes: int) -> torch.Tensor:
    """A prefix's (P, B, W) keys or values for each of its B x G prompts (P, B * G, W), image-major."""
    return x.unsqueeze(2).expand(-1, -1, n_suffixes, -1).reshape(x.shape[0], -1, x.shape[2])


def _in_projection(block: nn.Module, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values (L, N, W) of ``block``'s self-attention on ``y`` (L, N, W), with
    ``nn.MultiheadAttention``'s packed in-projection."""
    attn = block.attn
    return F.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)


def _attention(block: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
    """``block``'s multi-head attention of queries (L, N, W) over keys and values (S, N, W), as
    ``nn.MultiheadAttention`` computes it after its in-projection (additive ``attn_mask`` (L, S))."""
    attn = block.attn
    heads, (length, n, width) = attn.num_heads, q.shape
    q, k, v = (t.reshape(t.shape[0], n * heads, -1).transpose(0, 1).view(n, heads, t.shape[0], -1) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask.to(q.dtype))
    out = out.permute(2, 0, 1, 3).reshape(length * n, width)
    return F.linear(out, attn.out_proj.weight, attn.out_proj.bias).view(length, n, width)


def encode_prompted_image(
    encoder: ImageEncoder, image: torch.Tensor, vision_prompts: torch.Tensor, with_local: bool = False
) -> VisualOutput:
    """CLIP's image features with deep vision prompts appended after the patch tokens (MaPLe, IVLP, PromptKD).

    Args:
        image: (B, 3, H, W).
        vision_prompts: (J, n_ctx, W_v) prompts of layers 1 .. J (MaPLe: coupled from its text prompts).
        with_local: also return the last block's CLS and patch tokens (B, 1 + P, d) and the
            CLS -> patch attention (B, P); the prompt positions are left out of both.
    """
    x = encoder.embed(image)  # (1 + P, B, W_v), ln_pre applied per token
    n_image_tokens = x.shape[0]
    # ln_pre normalises each token on its own, so normalising the layer-1 prompts apart is the same
    # as MaPLe's ln_pre over the concatenated sequence.
    first = encoder.visual.ln_pre(vision_prompts[0].to(x.dtype))
    x = torch.cat([x, first.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=0)
    x, attn = prompted_blocks(
        encoder.visual.transformer.resblocks, x, vision_prompts[1:], n_image_tokens, need_last_weights=with_local
    )
    x = x.permute(1, 0, 2)[:, :n_image_tokens]  # (B, 1 + P, W_v), prompt outputs dropped
    if not with_local:
        return VisualOutput(encoder.project(x[:, 0, :]), None, None)
    tokens = encoder.project(x)
    return VisualOutput(tokens[:, 0, :], tokens, attn[:, 0, 1:n_image_tokens])
