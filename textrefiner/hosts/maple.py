"""The MaPLe host (Khattak et al., CVPR 2023): deep text prompts coupled into deep vision prompts.

With prompt depth J, layer j (1 <= j <= J) of each tower receives its own prompts:

* text: ``n_ctx`` learnable tokens sit at the context positions of
  ``[SOS] <ctx_init words> <class>. [EOS]``; layer 1 gets the context tokens (after the
  positional embedding), each later layer j <= J overwrites those positions with
  its own learnable tokens before the block runs;
* vision: layer j's text tokens, mapped by layer j's coupling function
  (``Linear(text width, vision width)``), are appended after the patch tokens; for
  layer 1 they go through ``ln_pre`` with the image tokens, for later layers they
  overwrite the previous block's outputs at those positions.

After layer J the prompt positions stay in both sequences and evolve like any other
token. Everything of CLIP stays frozen; the forwards below replay CLIP's towers block
by block with the modules of ``encoders.py``.
"""
import copy
from typing import Optional, Sequence

import torch
import torch.nn as nn

from .coop import CoOpCLIP, PromptLearner
from .encoders import TextEncoder, VisualOutput, encode_prompted_image


def encode_text(
    encoder: TextEncoder,
    prompts: torch.Tensor,
    tokenized_prompts: torch.Tensor,
    deep_prompts: torch.Tensor,
    truncate: bool = True,
    eot_positions: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Text features (C, d) at the EOT token with MaPLe's deeper text prompts.

    Args:
        prompts: (C, L, W) layer-1 token embeddings, context at positions 1 .. n_ctx; L may
            stop after the last EOT position: the context comes before every EOT token and
            the mask is causal, so the features are those of all 77 positions.
        tokenized_prompts: (C, 77) token ids (the EOT token has the largest id).
        deep_prompts: (J - 1, n_ctx, W) prompts of layers 2 .. J.
        truncate, eot_positions: as for ``TextEncoder`` (each prompt up to its own EOT, in
            length groups or the encoder's checkpointed chunks).
    """
    return encoder(prompts, tokenized_prompts, truncate=truncate, eot_positions=eot_positions,
                   deep_prompts=deep_prompts)


class MultiModalPromptLearner(PromptLearner):
    """MaPLe's prompts: CoOp's text context (class name at the end), deeper text prompts
    and the coupling functions.

    Args:
        classnames: C class names ("_" is read as a space).
        clip_model: CLIP whose token embedding initialises the context (its dtype is used).
        n_ctx: learnable context tokens per layer. With ``ctx_init`` they take the embeddings
            of its first ``n_ctx`` tokens and the remaining words stay fixed in the prompt
            ("a photo of a", 2: context "a photo", fixed "of a"); without it, N(0, 0.02) init.
        ctx_init: words of the prompt before the class name.
        depth: J, number of layers (from the first) receiving prompts in both towers.

    Parameters ``ctx`` (n_ctx, W_t) in CLIP's dtype, ``deep_ctx`` (J - 1, n_ctx, W_t) and
    ``couplings`` (J Linear W_t -> W_v; the first in CLIP's dtype, the deeper ones starting
    as copies of one initialisation); the deeper ones are float32 under fp16 too, as in
    MaPLe's release, so fp16 runs train like it.
    """

    def __init__(
        self,
        classnames: Sequence[str],
        clip_model: nn.Module,
        n_ctx: int = 2,
        ctx_init: str = "a photo of a",
        depth: int = 9,
    ):
        layers = min(len(clip_model.transformer.resblocks), len(clip_model.visual.transformer.resblocks))
        if not 1 <= depth <= layers:
            raise ValueError(
                f"MaPLe prompt depth (TRAINER.MAPLE.PROMPT_DEPTH) must be between 1 and {layers}, the number of "
                f"transformer layers of this CLIP; got {depth}"
            )
        # CoOp's layout with all of ctx_init as context, then only its first n_ctx tokens stay learnable.
        super().__init__(classnames, clip_model, n_ctx=n_ctx, ctx_init=ctx_init)
        if ctx_init:
            if n_ctx > self.n_ctx:
                raise ValueError(
                    f"N_CTX {n_ctx} is larger than the {self.n_ctx} words of CTX_INIT {ctx_init!r}: "
                    'lower N_CTX, lengthen CTX_INIT, or set CTX_INIT to "" for random initialisation'
                )
            self.learn_only_first(n_ctx)
        print(f"MaPLe design: Multi-modal Prompt Learning; learnable context tokens: {n_ctx}, prompt depth: {depth}")
        text_width, vision_width = self.ctx.shape[-1], clip_model.visual.conv1.weight.shape[0]
        # Created in the release's order, so the same RNG state draws the same initial values.
        first_coupling = nn.Linear(text_width, vision_width).to(self.ctx.dtype)
        deep_ctx = torch.empty(depth - 1, n_ctx, text_width)
        for layer_ctx in deep_ctx:
            nn.init.normal_(layer_ctx, std=0.02)
        self.deep_ctx = nn.Parameter(deep_ctx)
        deep_coupling = nn.Linear(text_width, vision_width)
        self.couplings = nn.ModuleList([first_coupling] + [copy.deepcopy(deep_coupling) for _ in range(depth - 1)])
        self.depth = depth

    def deep_text_prompts(self) -> torch.Tensor:
        """Text prompts of layers 2 .. J: (J - 1, n_ctx, W_t) in CLIP's dtype."""
        return self.deep_ctx.to(self.ctx.dtype)

    def vision_prompts(self) -> torch.Tensor:
        """Coupled vision prompts of layers 1 .. J: (J, n_ctx, W_v) in CLIP's dtype."""
        text = [self.ctx] + list(self.deep_ctx)
        return torch.stack([coupling(t).to(self.ctx.dtype) for coupling, t in zip(self.couplings, text)])


class MaPLeCLIP(CoOpCLIP):
    """CLIP with MaPLe prompts; the same interface as ``CoOpCLIP`` (``logits``/``forward`` shared)."""

    def text_features(self, truncate: bool = True) -> torch.Tensor:
        """L2-normalised class text features t (C, d) of the current prompts; ``truncate``: encode
        positions up to the last EOT token only (same features, less work)."""
        pl = self.prompt_learner
        prompts = pl(pl.text_length if truncate else None)
        features = encode_text(self.text_encoder, prompts, pl.tokenized_prompts, pl.deep_text_prompts(),
                               truncate=truncate, eot_positions=pl.eot_positions)
        return features / features.norm(dim=-1, keepdim=True)

    def encode_image(self, image: torch.Tensor, with_local: bool = False) -> VisualOutput:
        """Image features with the current vision prompts; local tokens exclude the prompt positions."""
        return encode_prompted_image(self.image_encoder, image, self.prompt_learner.vision_prompts(), with_local)
