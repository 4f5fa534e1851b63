"""The IVLP / PromptSRC releases' key layout: the teacher file a PromptSRC run writes and PromptKD
loads (ours or a released one), mapped onto ``hosts.ivlp.IVLPCLIP``.

The releases save their whole ``CustomCLIP`` in a Dassl checkpoint ``{"state_dict", "epoch", ...}``::

    release key                                          shape       ours
    prompt_learner.ctx                                   (n_t, W_t)  prompt_learner.ctx
    text_encoder.transformer.resblocks.<i>.VPT_shallow   (n_t, W_t)  prompt_learner.deep_text_ctx[i - 1], i < J_t
    image_encoder.VPT                                    (n_v, W_v)  prompt_learner.vision_ctx[0] (if J_v >= 1)
    image_encoder.transformer.resblocks.<i>.VPT_shallow  (n_v, W_v)  prompt_learner.vision_ctx[i], i < J_v
    image_encoder.<k>                                    CLIP's visual tower: image_encoder.visual.<k>
    text_encoder.<k>, logit_scale                        CLIP's text tower (transformer, positional_embedding,
                                                         ln_final, text_projection): text_encoder.<k>; logit_scale
    prompt_learner.token_prefix/token_suffix(2), tokenized_prompts   rebuilt from the class names
    prompt_learner.ZS_image_encoder.*                    PromptSRC's frozen second copy: never written, ignored

One map (``prompt_tensors``) names the prompts for the writer and the loader alike, so every prompt
design a run can write (vision depth 0, more context tokens than CTX_INIT has words, ...) loads back.
The loader is strict: the prompts are required; CLIP's weights are taken from the file when it holds
them (all of them: PromptSRC's averaging rounds fp16 weights, so only the file's reproduce the
teacher), otherwise the backbone's stay; anything else, a missing key, a shape that differs or a
non-finite value is an error naming the keys.
"""
import re
from collections import OrderedDict
from typing import Dict, List

import torch

from ..errors import SettingError
from ..hosts.ivlp import IVLPCLIP

VISION_PROMPT_KEY = "image_encoder.VPT"
DEEP_PROMPT_KEY = "{tower}.transformer.resblocks.{layer}.VPT_shallow"
#: release keys derived from the class names (rebuilt by a loader) or unused (PromptSRC's frozen copy)
_IGNORED = re.compile(r"prompt_learner\.(token_prefix2?|token_suffix2?|tokenized_prompts|ZS_image_encoder\..*)$")
_DEEP = re.compile(r"(text|image)_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$")
#: what to do when a file does not fit, unless the caller names its own keys
FIT_HINT = "Build the model with the backbone and prompt design (N_CTX_*, PROMPT_DEPTH_*) the file was trained with"


class TeacherCheckpointError(SettingError):
    """A teacher file does not fit the configured teacher."""


def prompt_tensors(model: IVLPCLIP) -> Dict[str, torch.Tensor]:
    """Release key -> the prompt tensor (a view into ``model``'s parameters) it holds, tower by tower."""
    pl = model.prompt_learner
    prompts = {"prompt_learner.ctx": pl.ctx}
    for layer, tokens in enumerate(pl.vision_ctx):
        key = VISION_PROMPT_KEY if layer == 0 else DEEP_PROMPT_KEY.format(tower="image_encoder", layer=layer)
        prompts[key] = tokens
    for layer, tokens in enumerate(pl.deep_text_ctx, start=1):
        prompts[DEEP_PROMPT_KEY.format(tower="text_encoder", layer=layer)] = tokens
    return prompts


def _clip_keys(model: IVLPCLIP) -> Dict[str, str]:
    """Release key -> our key, for every frozen CLIP weight the releases save."""
    keys = {f"image_encoder.{k}": f"image_encoder.visual.{k}" for k in model.image_encoder.visual.state_dict()}
    keys.update({f"text_encoder.{k}": f"text_encoder.{k}" for k in model.text_encoder.state_dict()})
    keys["logit_scale"] = "logit_scale"
    return keys


def teacher_state_dict(model: IVLPCLIP) -> "OrderedDict[str, torch.Tensor]":
    """The whole model under the release's key names (what PromptKD loads as its teacher), on the CPU.

    Also ``prompt_learner.token_prefix`` / ``token_suffix`` (C, 1, W_t) / (C, 77 - 1 - n_t, W_t), which
    the release saves; the second copy of the visual tower is not written.
    """
    pl = model.prompt_learner
    prompts = prompt_tensors(model)
    state: Dict[str, torch.Tensor] = OrderedDict()
    state["prompt_learner.ctx"] = pl.ctx
    state["prompt_learner.token_prefix"] = pl.token_prefix
    state["prompt_learner.token_suffix"] = pl.token_suffix
    for tower, module in (("image_encoder", model.image_encoder.visual), ("text_encoder", model.text_encoder)):
        state.update((f"{tower}.{k}", v) for k, v in module.state_dict().items())
        state.update((k, v) for k, v in prompts.items() if k.startswith(f"{tower}."))
    state["logit_scale"] = model.logit_scale
    return OrderedDict((k, v.detach().cpu().clone()) for k, v in state.items())


def teacher_checkpoint(model: IVLPCLIP, epoch: int) -> dict:
    """A teacher file's content: a Dassl checkpoint holding ``teacher_state_dict`` (no optimizer)."""
    return {"state_dict": teacher_state_dict(model), "epoch": epoch, "optimizer": None, "scheduler": None,
            "val_result": None}


def _listing(keys: List[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _depth_hint(state_dict: Dict[str, torch.Tensor]) -> str:
    deep = {}
    for key in state_dict:
        match = _DEEP.match(key)
        if match:
            deep.setdefault(match.group(1), []).append(int(match.group(2)))
    if not deep:
        return ""
    depths = ", ".join(f"{tower} depth {max(blocks) + 1}" for tower, blocks in sorted(deep.items()))
    return f"; the file's prompts have {depths}"


def load_teacher_state_dict(model: IVLPCLIP, state_dict: Dict[str, torch.Tensor], source: str = "The teacher",
                            fix: str = FIT_HINT) -> List[str]:
    """Copy a release-layout ``state_dict`` into ``model``; returns the keys loaded.

    ``source`` names it in errors ("Teacher file <path>"); ``fix`` says which settings make it fit.
    """
    bad = [k for k, v in state_dict.items()
           if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise TeacherCheckpointError(f"{source} holds NaN or inf in {', '.join(bad[:4])}: the run that trained it "
                                     "diverged; train the teacher again or use the release's")
    prompts = prompt_tensors(model)
    clip_keys = _clip_keys(model)
    wanted = {k: v for k, v in state_dict.items() if not _IGNORED.match(k)}
    unexpected = sorted(k for k in wanted if k not in prompts and k not in clip_keys)
    missing = sorted(k for k in prompts if k not in wanted)
    clip_in_file = [k for k in clip_keys if k in wanted]
    if clip_in_file:
        missing += sorted(k for k in clip_keys if k not in wanted)
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    ours = model.state_dict()
    shapes = [(k, tuple(v.shape), tuple(prompts[k].shape if k in prompts else ours[clip_keys[k]].shape))
              for k, v in wanted.items() if k in prompts or k in clip_keys]
    wrong = [f"{k} {got} (expected {want})" for k, got, want in shapes if got != want]
    if wrong:
        problems.append(f"shape mismatches: {_listing(wrong, 4)}")
    if problems:
        raise TeacherCheckpointError(
            f"{source} does not fit the configured teacher: {'; '.join(problems)}{_depth_hint(wanted)}. {fix}"
        )
    with torch.no_grad():
        for key, target in prompts.items():
            target.copy_(state_dict[key])
        if clip_in_file:
            full = dict(ours)
            full.update({clip_keys[k]: state_dict[k] for k in clip_in_file})
            model.load_state_dict(full, strict=True)
    return sorted(wanted)
