"""Dataset readers (registered in the framework's DATASET_REGISTRY on import) and split helpers.

``COOP_DATASETS`` lists the 15 CoOp-layout readers; the doctor and ``download_splits``
walk it. ``ImageFolder`` reads a user's own images (one folder per class, or a CSV).
"""
from . import synthetic  # noqa: F401
from .base import SplitDataset  # noqa: F401
from .catalog import COOP_DATASETS, coop_dataset  # noqa: F401  (importing it registers the readers)
from .errors import DatasetError  # noqa: F401
from .fewshot import FewShotCache  # noqa: F401
from .image_folder import ImageFolder  # noqa: F401  (your own images: DATASET.NAME ImageFolder)
from .records import read_split_file, subsample_classes  # noqa: F401

from ..framework.registration import report_kept  # noqa: E402

report_kept()
