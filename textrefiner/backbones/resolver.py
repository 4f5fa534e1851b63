"""Which backbone a name means, whether its weights are here, its width, and the CLIP itself.

``MODEL.BACKBONE.NAME`` (and ``TRAINER.PROMPTKD.TEACHER_NAME``) accepts, tried in this order:

* ``random:<arch>``: random initialisation of a known architecture (``random_init.py``);
* a registered name (``registry.py``), e.g. ``testbed``: the offline testbed's shipped CLIP;
* an OpenAI model name (``ViT-B/16``, ``ViT-L/14``, ...): read from ``MODEL.BACKBONE.PATH`` if set,
  else from CLIP's cache folder ``~/.cache/clip`` (downloaded there by ``clip.load`` when the
  machine is online);
* a path to a CLIP weights file: one of OpenAI's TorchScript archives (by their published
  SHA-256) or a state_dict, read as data (``files.py``).

``resolve(name, path)`` decides by the name alone (no file is read) and refuses other names with a
``ValueError`` naming every kind; train.py's input checks call it. ``missing()`` says what the
sweep's preflight reports, ``load()`` and ``embed_dim()`` what ``load_clip`` and ``embed_dim`` return.
The model comes back in fp32 on the CPU, in eval mode; precision and device are the caller's policy.
"""
import os
from dataclasses import dataclass

import torch

from ..errors import WeightsNotFoundError
from . import openai
from .files import load_clip_file
from .random_init import RANDOM_ARCHS, RANDOM_PREFIX, build_random_clip
from .registry import NamedBackbone, registered_backbones


class Backbone:
    """A backbone name, resolved: what ``load_clip(name, path)`` loads."""

    name: str

    def missing(self) -> str:
        """What keeps its weights from loading on this machine (a missing file and the fix), or ""."""
        return ""

    def load(self) -> torch.nn.Module:
        raise NotImplementedError

    def embed_dim(self) -> int:
        """The joint embedding width, without building the model where the name tells it."""
        return self.load().text_projection.shape[1]


@dataclass(frozen=True)
class RandomCLIP(Backbone):
    name: str
    arch: str

    def load(self) -> torch.nn.Module:
        return build_random_clip(self.arch)

    def embed_dim(self) -> int:
        return RANDOM_ARCHS[self.arch]["embed_dim"]


@dataclass(frozen=True)
class RegisteredCLIP(Backbone):
    name: str
    shipped: NamedBackbone

    def missing(self) -> str:
        file = self.shipped.weights_file()
        return "" if os.path.isfile(file) else f"{file} not found; {self.shipped.how_to_get.format(file=file)}"

    def load(self) -> torch.nn.Module:
        file = self.shipped.weights_file()
        if not os.path.isfile(file):
            raise WeightsNotFoundError(f"The {self.shipped.description} weights are not at {file}: "
                                       f"{self.shipped.how_to_get.format(file=file)}")
        # built as clip.load builds a state_dict file
        return openai.import_clip().model.build_model(self.shipped.read_state_dict(file)).float().eval()


@dataclass(frozen=True)
class OpenAICLIP(Backbone):
    name: str
    path: str = ""

    def missing(self) -> str:
        target = openai.expected_file(self.name, self.path)
        if os.path.isfile(target):
            return ""
        return (f"{target} not found; download {openai.download_url(self.name)} there "
                "or set MODEL.BACKBONE.PATH to the file")

    def load(self) -> torch.nn.Module:
        return load_clip_file(openai.weights_file(self.name, self.path), self.name)

    def embed_dim(self) -> int:
        return openai.OPENAI_EMBED_DIMS.get(self.name) or super().embed_dim()


@dataclass(frozen=True)
class CLIPFile(Backbone):
    name: str

    def missing(self) -> str:
        return "" if os.path.isfile(self.name) else "no such file"

    def load(self) -> torch.nn.Module:
        if not os.path.isfile(self.name):
            raise WeightsNotFoundError(
                f"MODEL.BACKBONE.NAME {self.name} is not a file: put the CLIP weights there, or give an OpenAI name "
                f"{openai.openai_names()} (then MODEL.BACKBONE.PATH can point at the file)"
            )
        return load_clip_file(self.name, self.name)


def _looks_like_path(name: str) -> bool:
    return name.endswith((".pt", ".pth")) or os.path.isabs(name) or name.startswith(("./", "../", "~"))


def resolve(name: str, path: str = "") -> Backbone:
    """The backbone ``name`` means (``path``: ``MODEL.BACKBONE.PATH``, for an OpenAI name); a
    ``ValueError`` naming every kind for any other name."""
    if name.startswith(RANDOM_PREFIX):
        arch = name[len(RANDOM_PREFIX):]
        if arch not in RANDOM_ARCHS:
            raise ValueError(f"MODEL.BACKBONE.NAME {name}: no random CLIP architecture {arch!r}; use one of "
                             f"{[RANDOM_PREFIX + a for a in sorted(RANDOM_ARCHS)]}")
        return RandomCLIP(name, arch)
    shipped = registered_backbones().get(name)
    if shipped is not None:
        return RegisteredCLIP(name, shipped)
    if name in openai.openai_names():
        return OpenAICLIP(name, path)
    if os.path.isfile(name) or _looks_like_path(name):
        return CLIPFile(name)
    registered = ", ".join(f"the {b.description} {b.name!r}" for b in registered_backbones().values())
    raise ValueError(
        f"MODEL.BACKBONE.NAME {name!r} is neither an OpenAI CLIP name {openai.openai_names()}, "
        f"{registered + ', ' if registered else ''}a weights file, nor '{RANDOM_PREFIX}<arch>' with arch in "
        f"{sorted(RANDOM_ARCHS)}"
    )


def load_clip(name: str, path: str = "") -> torch.nn.Module:
    """A CLIP model in fp32 on the CPU, in eval mode (see the module docstring for ``name``)."""
    return resolve(name, path).load()


def embed_dim(name: str, path: str = "") -> int:
    """The joint embedding width of the CLIP ``load_clip(name, path)`` would load, without building it
    where the name tells it (a weights file is loaded for its ``text_projection``)."""
    return resolve(name, path).embed_dim()
