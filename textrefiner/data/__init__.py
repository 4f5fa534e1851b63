"""Dataset readers (registered in the framework's DATASET_REGISTRY on import) and split helpers."""
from . import synthetic  # noqa: F401
from .base import FewShotCache, SplitDataset, read_split, subsample_classes  # noqa: F401
