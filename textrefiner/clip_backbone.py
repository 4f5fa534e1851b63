"""Moved to ``textrefiner.backbones`` (one resolver for every backbone name): ``load_clip`` and
``embed_dim`` are in ``backbones/resolver.py``, ``import_clip`` in ``backbones/openai.py``,
``WeightsNotFoundError`` in ``textrefiner/errors.py``. This module keeps the old imports working."""
from .backbones.files import read_clip_state_dict
from .backbones.openai import default_cache_dir, import_clip, openai_sha256s
from .backbones.random_init import RANDOM_ARCHS, RANDOM_PREFIX, build_random_clip
from .backbones.resolver import embed_dim, load_clip
from .errors import WeightsNotFoundError

__all__ = [
    "RANDOM_ARCHS", "RANDOM_PREFIX", "WeightsNotFoundError", "build_random_clip", "default_cache_dir", "embed_dim",
    "import_clip", "load_clip", "openai_sha256s", "read_clip_state_dict",
]
