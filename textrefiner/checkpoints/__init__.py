"""Checkpoints of the public releases (TextRefiner's CoOp variant, MaPLe): mapped onto our modules."""
from .loading import init_from_file, init_from_release, load_release, load_release_model_dir
from .upstream import LAYOUTS, MAPLE_RELEASE, TEXTREFINER_RELEASE, UpstreamCheckpointError, find_release

__all__ = [
    "LAYOUTS", "MAPLE_RELEASE", "TEXTREFINER_RELEASE", "UpstreamCheckpointError", "find_release",
    "init_from_file", "init_from_release", "load_release", "load_release_model_dir",
]
