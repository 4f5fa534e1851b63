"""PromptKD's teacher (and its student's vision prompts): IVLP's independent deep prompts in both
of CLIP's towers, as PromptKD's release builds its frozen teacher. (The trainable IVLP / PromptSRC
host is ``ivlp.py``; both read and write the same release key layout.)

* text: ``[SOS] ctx_1..ctx_n <rest of ctx_init> <class>. [EOS]`` with the first ``n`` words
  of ``ctx_init`` learnable; blocks 2 .. J_t overwrite positions 1 .. n with their own prompts;
* vision: ``n_v`` prompts appended after the patch tokens (through ``ln_pre``), blocks
  2 .. J_v overwrite those positions with their own prompts.

MaPLe's insertion rules without its coupling functions; the forwards are the shared ones of
``encoders.py`` (``TextEncoder(deep_prompts=...)`` and ``encode_prompted_image``).
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn

from ..errors import SettingError
from .coop import CoOpCLIP, PromptLearner
from .encoders import VisualOutput, encode_prompted_image


def check_depth(depth: int, layers: int, key: str) -> None:
    if not 1 <= depth <= layers:
        raise SettingError(f"{key} must be between 1 and {layers}, the number of layers of this CLIP tower; got {depth}")


class VisionPrompts(nn.Module):
    """Deep vision prompts ``prompts`` (J, n, W_v): layer 1's are appended after the image tokens,
    layer j's (2 <= j <= J) overwrite those positions before block j. Float32, N(0, 0.02) each,
    as IVLP's ``VPT`` and ``VPT_shallow`` (cast to the image tower's dtype when used).

    Args:
        depth: J, the number of blocks (from the first) that receive prompts.
        n_ctx: prompt tokens per block (0: no prompts; the tower is then plain CLIP).
        width: W_v, the vision transformer's width.
    """

    def __init__(self, depth: int, n_ctx: int, width: int):
        super().__init__()
        prompts = torch.empty(depth, n_ctx, width)
        nn.init.normal_(prompts, std=0.02)
        self.prompts = nn.Parameter(prompts)

    def forward(self) -> torch.Tensor:
        return self.prompts


class IVLPPromptLearner(PromptLearner):
    """Text context of IVLP: CoOp's prompt with the first ``n_ctx`` words of ``ctx_init`` learnable
    (all ``n_ctx`` random without ``ctx_init``) and ``deep_ctx`` (J_t - 1, n_ctx, W_t) for blocks 2 .. J_t."""

    def __init__(self, classnames: Sequence[str], clip_model: nn.Module, n_ctx: int = 4,
                 ctx_init: str = "a photo of a", depth: int = 9):
        check_depth(depth, len(clip_model.transformer.resblocks), "The text prompt depth")
        super().__init__(classnames, clip_model, n_ctx=n_ctx, ctx_init=ctx_init)
        if ctx_init:
            self.learn_only_first(n_ctx)
        deep_ctx = torch.empty(depth - 1, n_ctx, self.ctx.shape[-1])
        nn.init.normal_(deep_ctx, std=0.02)
        self.deep_ctx = nn.Parameter(deep_ctx)

    def deep_text_prompts(self) -> torch.Tensor:
        return self.deep_ctx.to(self.ctx.dtype)


class IVLPCLIP(CoOpCLIP):
    """CLIP with IVLP prompts in both towers; the interface of ``CoOpCLIP``."""

    def __init__(self, prompt_learner: IVLPPromptLearner, vision_prompts: VisionPrompts, clip_model: nn.Module,
                 text_chunk_size: int = 0):
        super().__init__(prompt_learner, clip_model, text_chunk_size=text_chunk_size)
        check_depth(vision_prompts.prompts.shape[0], len(clip_model.visual.transformer.resblocks),
                    "The vision prompt depth")
        self.vision_prompts = vision_prompts

    def text_features(self) -> torch.Tensor:
        pl = self.prompt_learner
        features = self.text_encoder(pl(pl.text_length), pl.tokenized_prompts, eot_positions=pl.eot_positions,
                                     deep_prompts=pl.deep_text_prompts())
        return features / features.norm(dim=-1, keepdim=True)

    def encode_image(self, image: torch.Tensor, with_local: bool = False) -> VisualOutput:
        return encode_prompted_image(self.image_encoder, image, self.vision_prompts(), with_local)


def build_ivlp(classnames: Sequence[str], clip_model: nn.Module, n_ctx_text: int, ctx_init: str, depth_text: int,
               n_ctx_vision: int, depth_vision: int, generator_seed: Optional[int] = None) -> IVLPCLIP:
    """An IVLP model on ``clip_model``; with ``generator_seed`` the prompts are drawn from that seed
    whatever the global random state (a teacher every run sees alike)."""
    width = clip_model.visual.conv1.weight.shape[0]
    with torch.random.fork_rng(devices=[], enabled=generator_seed is not None):
        if generator_seed is not None:
            torch.manual_seed(generator_seed)
        prompt_learner = IVLPPromptLearner(classnames, clip_model, n_ctx_text, ctx_init, depth_text)
        vision_prompts = VisionPrompts(depth_vision, n_ctx_vision, width)
    return IVLPCLIP(prompt_learner, vision_prompts, clip_model)
