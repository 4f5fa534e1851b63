"""Strict loading of IVLP / PromptSRC checkpoints in the releases' key layout (PromptKD's teachers).

The releases save their whole ``CustomCLIP`` in a Dassl checkpoint ``{"state_dict", ...}``:

    prompt_learner.ctx                                    (n, W_t)    text context
    text_encoder.transformer.resblocks.<i>.VPT_shallow    (n, W_t)    i = 1 .. J_t - 1
    image_encoder.VPT                                     (n_v, W_v)  layer-1 vision prompts
    image_encoder.transformer.resblocks.<i>.VPT_shallow   (n_v, W_v)  i = 1 .. J_v - 1
    image_encoder.*, text_encoder.*, logit_scale                      CLIP's frozen weights
    prompt_learner.token_prefix / token_suffix (and ...2)             rebuilt from the class names
    prompt_learner.ZS_image_encoder.*                                 PromptSRC's frozen copy

The prompts are required; CLIP's weights are taken from the file when it holds them (all of
them: PromptSRC's averaging rounds fp16 weights, so only the file's reproduce the teacher),
otherwise the backbone's stay. Anything else in the file, a missing prompt or CLIP weight,
and a shape that differs is an error naming the file and the keys.
"""
import re
from typing import Dict, List

import torch

from ..errors import SettingError
from .teacher_ivlp import IVLPCLIP

#: keys the releases save that are derived (token embeddings of the class names) or unused
_IGNORED = re.compile(r"prompt_learner\.(token_prefix2?|token_suffix2?|tokenized_prompts|ZS_image_encoder\..*)$")
_DEEP = re.compile(r"(text|image)_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$")


class TeacherCheckpointError(SettingError):
    """A teacher file does not fit the configured teacher."""


def _clip_keys(model: IVLPCLIP) -> Dict[str, str]:
    """Release key -> our key, for every frozen CLIP weight the releases save."""
    keys = {f"image_encoder.{k}": f"image_encoder.visual.{k}" for k in model.image_encoder.visual.state_dict()}
    keys.update({f"text_encoder.{k}": f"text_encoder.{k}" for k in model.text_encoder.state_dict()})
    keys["logit_scale"] = "logit_scale"
    return keys


def _prompt_tensors(model: IVLPCLIP) -> Dict[str, torch.Tensor]:
    """Release key -> the prompt tensor (a view into our parameters) it fills."""
    pl, vision = model.prompt_learner, model.vision_prompts.prompts
    prompts = {"prompt_learner.ctx": pl.ctx, "image_encoder.VPT": vision[0]}
    prompts.update({f"text_encoder.transformer.resblocks.{i + 1}.VPT_shallow": t for i, t in enumerate(pl.deep_ctx)})
    prompts.update({f"image_encoder.transformer.resblocks.{i}.VPT_shallow": vision[i] for i in range(1, len(vision))})
    return prompts


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


def load_release_checkpoint(model: IVLPCLIP, path: str, state_dict: Dict[str, torch.Tensor]) -> List[str]:
    """Copy ``state_dict`` (from the file ``path``) into ``model``; returns the keys loaded."""
    bad = [k for k, v in state_dict.items()
           if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise TeacherCheckpointError(f"Teacher file {path} holds NaN or inf in {', '.join(bad[:4])}: the run that "
                                     "trained it diverged; train the teacher again or use the release's")
    prompts = _prompt_tensors(model)
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
            f"Teacher file {path} does not fit the configured teacher: {'; '.join(problems)}{_depth_hint(wanted)}. "
            "Set TRAINER.PROMPTKD.TEACHER_NAME to the backbone it was trained on and TRAINER.PROMPTKD.N_CTX_TEXT, "
            "TEACHER_N_CTX_VISION, TEACHER_PROMPT_DEPTH_TEXT and TEACHER_PROMPT_DEPTH_VISION to its prompt design "
            "(the releases' teachers: ViT-L/14, 4, 4, 9, 9)"
        )
    with torch.no_grad():
        for key, target in prompts.items():
            target.copy_(state_dict[key])
        if clip_in_file:
            full = dict(ours)
            full.update({clip_keys[k]: state_dict[k] for k in clip_in_file})
            model.load_state_dict(full, strict=True)
    return sorted(wanted)
