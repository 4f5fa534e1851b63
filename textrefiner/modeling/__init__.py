"""TextRefiner's modules, and the neutral blocks a host may share with them (``mlp.py``): pure
nn.Modules and functions, no config, no framework."""
from .layers import FeatureAggregation, FeatureAlignment
from .local_cache import UPDATE_RULES, LocalCache
from .losses import SEMANTIC_SETS, regularization_loss, semantic_loss, semantic_token_set
from .mlp import TwoLayerMLP
from .targets import HardLabels, SoftTargets
from .textrefiner import RefinerOutput, TextRefiner

__all__ = [
    "LocalCache", "UPDATE_RULES", "FeatureAggregation", "FeatureAlignment", "semantic_token_set", "semantic_loss",
    "regularization_loss", "SEMANTIC_SETS", "TextRefiner", "RefinerOutput",
    "HardLabels", "SoftTargets", "TwoLayerMLP",
]
