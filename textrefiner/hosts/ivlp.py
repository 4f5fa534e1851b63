"""The IVLP host: independent deep prompts in both towers (no coupling), as PromptSRC and
PromptKD's teachers use them (PromptSRC/PromptKD releases, ``trainers/independentVL.py``).

MaPLe's insertion rules without MaPLe's coupling functions:

* text: ``n_ctx_text`` learnable tokens at positions 1 .. n of ``[SOS] <ctx_init words>
  <class>. [EOS]`` (layer 1, before the positional embedding is added); before each
  block 2 .. J_t those positions are overwritten by that layer's own learnable tokens;
* vision: ``n_ctx_vision`` learnable tokens appended after the CLS and patch tokens (after
  the positional embedding, through ``ln_pre`` with them); before each block 2 .. J_v the
  last n positions are overwritten by that layer's tokens.

After layer J the prompt positions stay in the sequence as ordinary tokens. The release
keeps these tensors inside its edited CLIP (``VPT``, ``VPT_shallow``); here they live in the
prompt learner, and ``teacher_state_dict`` writes them under the release's key names.
"""
from collections import OrderedDict
from typing import Dict, Sequence

import torch
import torch.nn as nn

from ..errors import SettingError
from .coop import CoOpCLIP, PromptLearner
from .encoders import VisualOutput, encode_prompted_image


def _normal(*shape: int) -> torch.Tensor:
    tensor = torch.empty(*shape)
    nn.init.normal_(tensor, std=0.02)
    return tensor


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
    ``vision_ctx`` (J_v, n_v, W_v) in float32, as the release keeps ``VPT``/``VPT_shallow``
    (its fp16 cast skips them), cast to CLIP's dtype in the forward.
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
        text_layers, vision_layers = len(clip_model.transformer.resblocks), len(clip_model.visual.transformer.resblocks)
        if not 1 <= depth_text <= text_layers:
            raise SettingError(
                f"PROMPT_DEPTH_TEXT must be between 1 and {text_layers} (this CLIP's text layers), got {depth_text}; "
                "for vision-only prompts use 1 (the input context only)"
            )
        if not 0 <= depth_vision <= vision_layers:
            raise SettingError(
                f"PROMPT_DEPTH_VISION must be between 0 and {vision_layers} (this CLIP's vision layers), "
                f"got {depth_vision}"
            )
        words = len(ctx_init.replace("_", " ").split()) if ctx_init else 0
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
        self.deep_text_ctx = nn.Parameter(_normal(depth_text - 1, n_ctx_text, text_width))
        self.vision_ctx = nn.Parameter(_normal(depth_vision, n_ctx_vision, vision_width))

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


# ----------------------------------------------------------------------------------- teacher file
# The release's CustomCLIP holds CLIP's visual as ``image_encoder`` and a TextEncoder with
# ``transformer``, ``positional_embedding``, ``ln_final``, ``text_projection``; its prompts sit in
# CLIP's blocks. These are the names a PromptKD teacher file uses.
VISION_PROMPT_KEY = "image_encoder.VPT"
DEEP_PROMPT_KEY = "{tower}.transformer.resblocks.{layer}.VPT_shallow"
#: release keys that depend on the class names; rebuilt by a loader, never read back
CLASS_NAME_KEYS = ("prompt_learner.token_prefix", "prompt_learner.token_suffix")


def teacher_state_dict(model: IVLPCLIP) -> "OrderedDict[str, torch.Tensor]":
    """The whole model under the PromptSRC / IVLP release's key names (what PromptKD loads as its teacher).

    Keys: ``prompt_learner.ctx`` (n_t, W_t); ``prompt_learner.token_prefix`` / ``token_suffix``
    (C, 1, W_t) / (C, 77 - 1 - n_t, W_t); ``image_encoder.<k>`` for every tensor of CLIP's visual
    plus ``image_encoder.VPT`` (n_v, W_v) and ``image_encoder.transformer.resblocks.{1..J_v-1}.VPT_shallow``
    (n_v, W_v); ``text_encoder.<k>`` for CLIP's text transformer, ``positional_embedding``,
    ``ln_final``, ``text_projection`` plus ``text_encoder.transformer.resblocks.{1..J_t-1}.VPT_shallow``
    (n_t, W_t); ``logit_scale``. The release's second copy of the visual tower
    (``prompt_learner.ZS_image_encoder.*``, which its loaders ignore) is not written.
    """
    pl = model.prompt_learner
    state: Dict[str, torch.Tensor] = OrderedDict()
    state["prompt_learner.ctx"] = pl.ctx
    state["prompt_learner.token_prefix"] = pl.token_prefix
    state["prompt_learner.token_suffix"] = pl.token_suffix
    state.update((f"image_encoder.{k}", v) for k, v in model.image_encoder.visual.state_dict().items())
    if pl.vision_ctx.shape[0]:
        state[VISION_PROMPT_KEY] = pl.vision_ctx[0]
    for layer, prompts in enumerate(pl.vision_ctx[1:], start=1):
        state[DEEP_PROMPT_KEY.format(tower="image_encoder", layer=layer)] = prompts
    state.update((f"text_encoder.{k}", v) for k, v in model.text_encoder.state_dict().items())
    for layer, prompts in enumerate(pl.deep_text_ctx, start=1):
        state[DEEP_PROMPT_KEY.format(tower="text_encoder", layer=layer)] = prompts
    state["logit_scale"] = model.logit_scale
    return OrderedDict((k, v.detach().cpu().clone()) for k, v in state.items())


def _first(keys, n: int = 6) -> str:
    return str(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def load_teacher_state_dict(model: IVLPCLIP, state: Dict[str, torch.Tensor]) -> None:
    """Load a release-layout state_dict (``teacher_state_dict``'s, or a released PromptSRC/IVLP
    checkpoint's) into ``model``, strictly: the CLIP weights too, the class-name buffers and the
    release's ``ZS_image_encoder`` copy skipped. Missing or unexpected keys and shape mismatches
    raise ``KeyError``/``ValueError`` naming them."""
    expected = teacher_state_dict(model)
    state = {k: v for k, v in state.items() if k not in CLASS_NAME_KEYS and ".ZS_image_encoder." not in f".{k}"}
    missing = sorted(set(expected) - set(CLASS_NAME_KEYS) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise KeyError(
            f"The teacher state_dict does not fit this model: missing {_first(missing)}, unexpected "
            f"{_first(unexpected)} (check N_CTX_*, PROMPT_DEPTH_* and the backbone)"
        )
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}"
             for k, v in state.items() if v.shape != expected[k].shape]
    if wrong:
        raise ValueError(f"Teacher tensors with other shapes than this model's: {wrong[:6]}")
    pl = model.prompt_learner
    with torch.no_grad():
        pl.ctx.copy_(state["prompt_learner.ctx"])
        for layer in range(pl.vision_ctx.shape[0]):
            key = VISION_PROMPT_KEY if layer == 0 else DEEP_PROMPT_KEY.format(tower="image_encoder", layer=layer)
            pl.vision_ctx[layer].copy_(state[key])
        for layer in range(1, pl.deep_text_ctx.shape[0] + 1):
            pl.deep_text_ctx[layer - 1].copy_(state[DEEP_PROMPT_KEY.format(tower="text_encoder", layer=layer)])
        model.logit_scale.copy_(state["logit_scale"])
    for prefix, module in (("image_encoder.", model.image_encoder.visual), ("text_encoder.", model.text_encoder)):
        module.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                if k.startswith(prefix) and not k.endswith("VPT_shallow") and k != VISION_PROMPT_KEY})
