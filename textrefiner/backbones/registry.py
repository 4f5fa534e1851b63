"""Backbones that parts of the project ship under a name (``MODEL.BACKBONE.NAME testbed``).

A part that ships its own CLIP registers it here when it is imported
(``textrefiner/testbed/backbone.py``); the resolver reads this registry and never imports the
part. No torch here, so registering costs nothing at ``import textrefiner``.
"""
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Dict, Mapping


@dataclass(frozen=True)
class NamedBackbone:
    """A CLIP shipped under ``name``, loaded as ``clip.load`` loads a state_dict file."""

    name: str
    #: what it is, for messages ("the offline testbed CLIP")
    description: str
    #: where its weights file is (asked at each use, so the owner may move it)
    weights_file: Callable[[], str]
    #: its full CLIP state_dict, read from its weights file after checking the file (format, checksum)
    read_state_dict: Callable[[str], Mapping[str, Any]]
    #: what to do when the file is missing; ``{file}`` stands for the file
    how_to_get: str
    #: where the configs made for it are, named when a config does not fit it ("" = none)
    configs: str = ""


_REGISTRY: Dict[str, NamedBackbone] = {}


def register_backbone(backbone: NamedBackbone) -> NamedBackbone:
    """Make ``backbone.name`` a backbone name (registering a name again replaces it)."""
    _REGISTRY[backbone.name] = backbone
    return backbone


def registered_backbones() -> Mapping[str, NamedBackbone]:
    """name -> the backbone registered under it (read-only)."""
    return MappingProxyType(_REGISTRY)
