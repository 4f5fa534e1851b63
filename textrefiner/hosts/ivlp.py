"""The IVLP host: independent deep prompts in both towers (no coupling), as IVLP, PromptSRC and
PromptKD's teachers use them (PromptSRC/PromptKD releases, ``trainers/independentVL.py``), and the
deep vision prompts of PromptKD's student.

MaPLe's insertion rules without MaPLe's coupling functions:

* text: ``n_ctx_text`` learnable tokens at positions 1 .. n of ``[SOS] <ctx_init words>
  <class>. [EOS]`` (layer 1, before the positional embedding is added); before each
  block 2 .. J_t those positions are overwritten by that layer's own learnable tokens;
* vision: ``n_ctx_vision`` learnable tokens appended after the CLS and patch tokens (after
  the positional embedding, through ``ln_pre`` with them); before each block 2 .. J_v the
  last n positions are overwritten by that layer's tokens.

After layer J the prompt positions stay in the sequence as ordinary tokens. The forwards are
the shared ones of ``encoders.py`` (``TextEncoder(deep_prompts=...)``, ``encode_prompted_image``).
The release keeps these tensors inside its edited CLIP (``VPT``, ``VPT_shallow``); here they live
in the prompt learner, and ``checkpoints/ivlp.py`` maps them onto the release's key names.

One set of rules for every caller, so a teacher PromptSRC writes is the teacher PromptKD rebuilds:
IVLP and PromptSRC train ``IVLPPromptLearner`` in ``IVLPCLIP``; PromptKD's teacher is the same model
(``build_ivlp``: seeded prompts, then those of its file); PromptKD's student uses ``VisionPrompts``
alone (its own depth check: at least one prompted block).
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn

from ..errors import SettingError
from .coop import CoOpCLIP, PromptLearner
from .encoders import VisualOutput, encode_prompted_image


def check_depth(depth: int, layers: int, key: str, minimum: int = 1, hint: str = "") -> None:
    """Refuse a prompt depth outside ``minimum .. layers`` (the tower's blocks), naming ``key``."""
    if not minimum <= depth <= layers:
        raise SettingError(
            f"{key} must be between {minimum} and {layers} (this CLIP tower's layers), got {depth}{hint}"
        )


def deep_prompts(depth: int, n_ctx: int, width: int) -> nn.Parameter:
    """(depth, n_ctx, width) float32 prompts, N(0, 0.02) each, as the release's ``VPT``/``VPT_shallow``
    (its fp16 cast skips them); used cast to the tower's dtype."""
    prompts = torch.empty(depth, n_ctx, width)
    nn.init.normal_(prompts, std=0.02)
    return nn.Parameter(prompts)


def context_words(ctx_init: str) -> int:
    """Number of words of ``ctx_init`` ("_" is read as a space), as the prompt learner splits them."""
    return len(ctx_init.replace("_", " ").split()) if ctx_init else 0


class VisionPrompts(nn.Module):
    """Deep vision prompts on their own (PromptKD's student, which has no text prompts): ``prompts``
    (J, n, W_v); layer 1's are appended after the image tokens, layer j's (2 <= j <= J) overwrite
    those positions before block j.

    Args:
        depth: J, the number of blocks (from the first) that receive prompts.
        n_ctx: prompt tokens per block.
        width: W_v, the vision transformer's width.
    """

    def __init__(self, depth: int, n_ctx: int, width: int):
        super().__init__()
        self.prompts = deep_prompts(depth, n_ctx, width)

    def forward(self) -> torch.Tensor:
        """(J, n, W_v) float32; ``encode_prompted_image`` casts them to the image tower's dtype."""
        return self.prompts


class IVLPPromptLearner(PromptLearner):
    """Independent text and vision deep prompts.

    Args:
        classnames: C class names ("_" is read as a space).
        clip_model: CLIP whose token embedding initialises the text context.
        n_ctx_text: learnable text tokens per layer. With ``ctx_init`` of at least that many
            words they start as its first ``n_ctx_text`` token embeddings and the remaining words
            stay fixed in the prompt; otherwise N(0, 0.02) with "X" placeholders (the release's rule).
        n_ctx_vision: learnable vision tokens per layer.
        ctx_init: words of the prompt before the class name.
        depth_text: J_t >= 1, text layers with prompts (1: the input context only).
        depth_vision: J_v >= 0, vision layers with prompts (0: no vision prompts).

    Parameters: ``ctx`` (n_t, W_t) in CLIP's dtype; ``deep_text_ctx`` (J_t - 1, n_t, W_t) and
    ``vision_ctx`` (J_v, n_v, W_v) in float32 (``deep_prompts``), cast to CLIP's dtype in the forward.
    Drawn in this order (text context, deep text, vision), so a seed gives every caller the same prompts.
    """

    def __init__(
        self,
        classnames: Sequence[str],
        clip_model: nn.Module,
        n_ctx_text: int = 2,
        n_ctx_vision: int = 2,
        ctx_init: str = "a photo of a",
        depth_text: int = 9,
        depth_vision: int = 9,
    ):
        check_depth(depth_text, len(clip_model.transformer.resblocks), "PROMPT_DEPTH_TEXT",
                    hint="; for vision-only prompts use 1 (the input context only)")
        check_depth(depth_vision, len(clip_model.visual.transformer.resblocks), "PROMPT_DEPTH_VISION", minimum=0)
        words = context_words(ctx_init)
        use_words = 0 < n_ctx_text <= words
        if ctx_init and not use_words:
            print(f"N_CTX_TEXT {n_ctx_text} exceeds the {words} words of CTX_INIT {ctx_init!r}: random context")
        super().__init__(classnames, clip_model, n_ctx=n_ctx_text, ctx_init=ctx_init if use_words else "")
        if use_words:
            self.learn_only_first(n_ctx_text)
        print(
            f"Independent V-L design; text context {n_ctx_text} x depth {depth_text}, "
            f"vision context {n_ctx_vision} x depth {depth_vision}"
        )
        text_width, vision_width = self.ctx.shape[-1], clip_model.visual.conv1.weight.shape[0]
        self.deep_text_ctx = deep_prompts(depth_text - 1, n_ctx_text, text_width)
        self.vision_ctx = deep_prompts(depth_vision, n_ctx_vision, vision_width)

    def deep_text_prompts(self) -> torch.Tensor:
        """Text prompts of layers 2 .. J_t: (J_t - 1, n_t, W_t) in CLIP's dtype."""
        return self.deep_text_ctx.to(self.ctx.dtype)

    def vision_prompts(self) -> torch.Tensor:
        """Vision prompts of layers 1 .. J_v: (J_v, n_v, W_v) in CLIP's dtype."""
        return self.vision_ctx.to(self.ctx.dtype)


class IVLPCLIP(CoOpCLIP):
    """CLIP with IVLP prompts; the same interface as ``CoOpCLIP`` (``logits``/``forward`` shared)."""

    def text_features(self) -> torch.Tensor:
        """L2-normalised class text features t (C, d) of the current prompts."""
        pl = self.prompt_learner
        features = self.text_encoder(
            pl(pl.text_length), pl.tokenized_prompts, eot_positions=pl.eot_positions,
            deep_prompts=pl.deep_text_prompts(),
        )
        return features / features.norm(dim=-1, keepdim=True)

    def encode_image(self, image: torch.Tensor, with_local: bool = False) -> VisualOutput:
        """Image features with the vision prompts; local tokens exclude the prompt positions."""
        prompts = self.prompt_learner.vision_prompts()
        if prompts.shape[0] == 0:
            return self.image_encoder(image, with_local=with_local)
        return encode_prompted_image(self.image_encoder, image, prompts, with_local)


def build_ivlp(classnames: Sequence[str], clip_model: nn.Module, n_ctx_text: int, ctx_init: str, depth_text: int,
               n_ctx_vision: int, depth_vision: int, generator_seed: Optional[int] = None) -> IVLPCLIP:
    """An IVLP model on ``clip_model``; with ``generator_seed`` the prompts are drawn from that seed
    whatever the global random state (a teacher every run sees alike)."""
    with torch.random.fork_rng(devices=[], enabled=generator_seed is not None):
        if generator_seed is not None:
            torch.manual_seed(generator_seed)
        prompt_learner = IVLPPromptLearner(classnames, clip_model, n_ctx_text, n_ctx_vision, ctx_init, depth_text,
                                           depth_vision)
    return IVLPCLIP(prompt_learner, clip_model)
