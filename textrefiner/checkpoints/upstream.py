"""Checkpoints written by the public releases, mapped key by key onto this project's modules.

A release checkpoint is a folder with one sub-folder per Dassl model name, each holding
``model-best.pth.tar`` and/or ``model.pth.tar-<epoch>``. Two layouts are recognised:

* the TextRefiner release, CoOp variant (its trainer ``TextRefiner``): ``prompt_learner/``
  holds the WHOLE model's state_dict (the prompt learner under ``prompt_learner.``, the
  alignment MLP as 1x1 convolutions under ``mid_image_trans.``, the frozen CLIP under
  ``image_encoder.``/``text_encoder.``); ``Memory/`` holds the aggregation layer
  (``extractor.weight``) and, outside the state_dict, the cache (``memory_item``);
* the MaPLe release (its trainer ``MaPLe``): ``MultiModalPromptLearner/`` holds the whole
  model, the prompts and coupling functions under ``prompt_learner.``.

Every key is either mapped (``Rule``) or ignored for a stated reason; any other key refuses,
so a checkpoint of another architecture never loads half-way. The mapping is pure: it reads
files and returns tensors under our names; ``loading.py`` puts them into modules.
"""
import os
import os.path as osp
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from textrefiner.framework.checkpoint import load_checkpoint

BEST_FILE = "model-best.pth.tar"
_EPOCH_FILE = re.compile(r"model\.pth\.tar-(\d+)")


class UpstreamCheckpointError(ValueError):
    """A release checkpoint that cannot map onto the model; the message says why and what fits."""


class Mapped(NamedTuple):
    value: torch.Tensor
    source: str  # "<file>: <upstream key>", named in every refusal
    hint: str  # the likely cause when its shape differs from the model's


class Rule(NamedTuple):
    pattern: str  # full match over the upstream key
    module: str  # our registered model name
    key: Union[str, Callable[[re.Match], str]]  # our key; a str is formatted with the match's groups
    hint: str
    convert: Callable[[torch.Tensor], torch.Tensor] = lambda t: t


@dataclass(frozen=True)
class Layout:
    name: str
    folders: Tuple[str, ...]  # its Dassl model folders; the first must exist
    fits: str  # the trainer(s) of this project it fits
    rules: Tuple[Rule, ...]
    ignored: Tuple[Tuple[str, str], ...]  # (pattern, why it is not needed)
    finish: Callable[[Dict[str, Dict[str, Mapped]]], None] = lambda modules: None


def _conv1x1_to_linear(weight: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution's (out, in, 1, 1) weight is a Linear's (out, in) weight."""
    return weight.reshape(weight.shape[0], -1) if weight.dim() == 4 else weight


_BACKBONE = "the checkpoint is from another CLIP backbone (MODEL.BACKBONE.NAME)"
_FROZEN_CLIP = (
    (r"(image_encoder|text_encoder)\..*", "frozen CLIP, loaded from MODEL.BACKBONE"),
    (r"logit_scale", "frozen CLIP, loaded from MODEL.BACKBONE"),
    (r"prompt_learner\.(token_prefix|token_suffix|tokenized_prompts)", "rebuilt from the class names"),
)

# The release's Sequential Conv2d(in, d, 1) -> BatchNorm2d(d) -> ReLU -> Conv2d(d, d, 1): indices 0, 1, 3.
_ALIGNMENT = {"0": "fc1", "1": "norm", "3": "fc2"}

TEXTREFINER_RELEASE = Layout(
    name="TextRefiner release (CoOp variant)",
    folders=("prompt_learner", "Memory"),
    fits="CoOp_TextRefiner",
    rules=(
        Rule(r"prompt_learner\.ctx", "prompt_learner", "ctx",
             "set TRAINER.COOP.N_CTX / CTX_INIT / CSC as the checkpoint was trained (the release uses "
             f"CTX_INIT 'a photo of a', 4 tokens), or {_BACKBONE}"),
        Rule(r"mid_image_trans\.conv1\.([013])\.(weight|bias|running_mean|running_var|num_batches_tracked)",
             "textrefiner", lambda m: f"alignment.{_ALIGNMENT[m[1]]}.{m[2]}", _BACKBONE, _conv1x1_to_linear),
        Rule(r"extractor\.weight", "textrefiner", "aggregation.linear.weight", _BACKBONE),
        Rule(r"memory_item", "textrefiner", "cache.entries",
             f"set TRAINER.TEXTREFINER.CACHE_SIZE to the checkpoint's number of entries, or {_BACKBONE}",
             lambda t: t.float()),
    ),
    ignored=_FROZEN_CLIP + ((r"frozen_text_embedding", "not part of the CoOp variant's model"),),
)


def _stack_deep_prompts(modules: Dict[str, Dict[str, Mapped]]) -> None:
    """``compound_prompts_text.{i}`` (one tensor per deeper layer) -> our ``deep_ctx`` (J - 1, n_ctx, W)."""
    learner = modules.get("prompt_learner", {})
    parts = {int(k.split(".")[1]): learner.pop(k) for k in list(learner) if k.startswith("deep_ctx.")}
    if sorted(parts) != list(range(len(parts))):
        raise UpstreamCheckpointError(
            f"MaPLe release checkpoint has compound_prompts_text.{sorted(parts)}: the deeper prompts must be "
            "numbered 0 .. depth-2 without gaps (a damaged or edited checkpoint)"
        )
    if "ctx" not in learner:
        return
    ctx = learner["ctx"]
    depth, n_ctx = len(parts) + 1, ctx.value.shape[0]
    hint = (f"the checkpoint has prompt depth {depth} and {n_ctx} context tokens: set TRAINER.MAPLE.PROMPT_DEPTH "
            f"{depth} and TRAINER.MAPLE.N_CTX {n_ctx} (a model of another depth cannot load it), or {_BACKBONE}")
    empty = ctx.value.new_zeros(0, *ctx.value.shape)  # depth 1: no deeper prompts
    value = torch.stack([parts[i].value for i in range(len(parts))]) if parts else empty
    file = ctx.source.rsplit(": ", 1)[0]
    learner["deep_ctx"] = Mapped(value, f"{file}: prompt_learner.compound_prompts_text.*", hint)
    learner["ctx"] = ctx._replace(hint=hint)


MAPLE_RELEASE = Layout(
    name="MaPLe release",
    folders=("MultiModalPromptLearner",),
    fits="MaPLe (or MaPLe_TextRefiner through MODEL.INIT_WEIGHTS, which starts its head fresh)",
    rules=(
        Rule(r"prompt_learner\.ctx", "prompt_learner", "ctx", ""),  # hint set by _stack_deep_prompts
        Rule(r"prompt_learner\.compound_prompts_text\.(\d+)", "prompt_learner", "deep_ctx.{0}", ""),
        Rule(r"prompt_learner\.proj\.(weight|bias)", "prompt_learner", "couplings.0.{0}", _BACKBONE),
        Rule(r"prompt_learner\.compound_prompt_projections\.(\d+)\.(weight|bias)", "prompt_learner",
             lambda m: f"couplings.{int(m[1]) + 1}.{m[2]}", _BACKBONE),
    ),
    ignored=_FROZEN_CLIP,
    finish=_stack_deep_prompts,
)

LAYOUTS = (TEXTREFINER_RELEASE, MAPLE_RELEASE)


@dataclass
class ReleaseCheckpoint:
    """One epoch of a release checkpoint folder, under our model names and keys."""

    layout: Layout
    directory: str
    file_name: str
    epoch: Optional[int]
    val_result: Any
    modules: Dict[str, Dict[str, Mapped]]

    def describe(self) -> str:
        return f'"{self.directory}" is a {self.layout.name} checkpoint, which fits --trainer {self.layout.fits}'

    def state_dicts(self) -> Dict[str, Dict[str, torch.Tensor]]:
        return {name: {k: m.value for k, m in keys.items()} for name, keys in self.modules.items()}


def _flat_keys(checkpoint: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """The state_dict, without DataParallel's ``module.``, plus the cache the release keeps beside it."""
    state = checkpoint.get("state_dict", checkpoint)
    flat = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    if "memory_item" in checkpoint:
        flat["memory_item"] = checkpoint["memory_item"]
    return flat


def _map_file(layout: Layout, path: str, checkpoint: Dict[str, Any], modules: Dict[str, Dict[str, Mapped]]) -> None:
    for key, value in _flat_keys(checkpoint).items():
        if any(re.fullmatch(pattern, key) for pattern, _ in layout.ignored):
            continue
        for rule in layout.rules:
            match = re.fullmatch(rule.pattern, key)
            if match:
                ours = rule.key(match) if callable(rule.key) else rule.key.format(*match.groups())
                modules.setdefault(rule.module, {})[ours] = Mapped(rule.convert(value), f"{path}: {key}", rule.hint)
                break
        else:
            raise UpstreamCheckpointError(
                f'{path}: key "{key}" has no counterpart in this project (a {layout.name} checkpoint holds none): '
                f"the checkpoint is of another architecture; only {', '.join(l.name for l in LAYOUTS)} "
                "checkpoints and this project's own load"
            )


def release_layout(directory: str, file_name: str = BEST_FILE) -> Optional[Layout]:
    """The release layout of ``directory``: from its distinctive folder (``Memory/``,
    ``MultiModalPromptLearner/``) or, without one, from the keys of ``prompt_learner/<file_name>``
    (a TextRefiner release copied without ``Memory/`` must not pass for this project's own layout)."""
    if osp.isdir(osp.join(directory, "Memory")):
        return TEXTREFINER_RELEASE
    if osp.isdir(osp.join(directory, "MultiModalPromptLearner")):
        return MAPLE_RELEASE
    shared = osp.join(directory, "prompt_learner", file_name)
    return _layout_of_file(load_checkpoint(shared)) if osp.isfile(shared) else None


def head_folder(directory: str) -> str:
    """The folder of ``directory`` whose files name the epochs: the first folder of its layout."""
    maple = osp.join(directory, MAPLE_RELEASE.folders[0])
    return maple if osp.isdir(maple) else osp.join(directory, TEXTREFINER_RELEASE.folders[0])


def checkpoint_files(folder: str) -> Sequence[str]:
    """Checkpoint file names in ``folder``: ``model-best.pth.tar`` first, then epochs ascending."""
    names = os.listdir(folder) if osp.isdir(folder) else []
    epochs = sorted((int(m[1]), n) for n in names for m in [_EPOCH_FILE.fullmatch(n)] if m)
    return ([BEST_FILE] if BEST_FILE in names else []) + [n for _, n in epochs]


def _read(layout: Layout, label: str, file_name: str, paths: Sequence[str],
          loaded: Optional[Dict[str, dict]] = None) -> ReleaseCheckpoint:
    modules: Dict[str, Dict[str, Mapped]] = {}
    head = None
    for path in paths:
        checkpoint = (loaded or {}).get(path) or load_checkpoint(path)
        head = head or checkpoint  # epoch and val_result from the first folder's file
        _map_file(layout, path, checkpoint, modules)
    layout.finish(modules)
    return ReleaseCheckpoint(layout, label, file_name, head.get("epoch"), head.get("val_result"), modules)


def read_release(directory: str, layout: Layout, file_name: str) -> ReleaseCheckpoint:
    """Map ``<directory>/<folder>/<file_name>`` of every folder of ``layout`` that has it."""
    first = osp.join(directory, layout.folders[0], file_name)
    if not osp.exists(first):
        found = list(checkpoint_files(osp.dirname(first)))
        raise FileNotFoundError(
            f'Model not found at "{first}". Found: {found or "nothing"}. Pass an epoch that was saved as '
            f"--load-epoch (the MaPLe release saves model.pth.tar-5 only), or none for {BEST_FILE}."
        )
    paths = [p for folder in layout.folders for p in [osp.join(directory, folder, file_name)] if osp.exists(p)]
    return _read(layout, directory, file_name, paths)


def _layout_of_file(checkpoint: Dict[str, Any]) -> Optional[Layout]:
    """Which release wrote this file, from its keys (a file may sit in a renamed folder)."""
    keys = _flat_keys(checkpoint)
    if any(k.startswith(("prompt_learner.compound_prompt", "prompt_learner.proj.")) for k in keys):
        return MAPLE_RELEASE
    if any(k.startswith(("prompt_learner.", "mid_image_trans.")) or k in ("memory_item", "extractor.weight")
           for k in keys):
        return TEXTREFINER_RELEASE
    return None


def find_release(path: str, epoch: Optional[int] = None, latest: bool = False) -> Optional[ReleaseCheckpoint]:
    """The release checkpoint at ``path`` (a release folder or one file in it), or None if ``path`` is not one.

    For a folder, the file is ``model.pth.tar-<epoch>``, else ``model-best.pth.tar``, or with ``latest``
    the best model if saved and the last epoch otherwise. A file stands for its whole folder at that
    file name: the TextRefiner release splits one model over ``prompt_learner/`` and ``Memory/``.
    """
    if osp.isdir(path):
        files = checkpoint_files(head_folder(path))
        if epoch is not None:
            file_name = f"model.pth.tar-{epoch}"
        else:
            file_name = files[-1] if latest and files and files[0] != BEST_FILE else BEST_FILE
        layout = release_layout(path, file_name)
        return None if layout is None else read_release(path, layout, file_name)
    if not osp.isfile(path):
        return None
    path = osp.abspath(path)
    checkpoint = load_checkpoint(path)
    layout = _layout_of_file(checkpoint)
    if layout is None:
        return None
    folder, file_name = osp.split(path)
    if osp.basename(folder) not in layout.folders:
        return _read(layout, path, file_name, [path], loaded={path: checkpoint})  # a lone file, mapped alone
    directory = osp.dirname(folder)
    paths = [p for f in layout.folders for p in [osp.join(directory, f, file_name)] if osp.exists(p)]
    return _read(layout, directory, file_name, paths, loaded={path: checkpoint})
