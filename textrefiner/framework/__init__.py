"""The one import point for the training framework.

Trainers and datasets import ``TrainerX``, ``TRAINER_REGISTRY``, ``DatasetBase`` and
friends from here, never from ``dassl`` directly, so one trainer class runs on both:

* real Dassl when ``import dassl`` works (its torch >= 2.6 breakages patched);
* otherwise the built-in engine (``textrefiner.framework.builtin``), which offers
  the same names and behaviour for the subset CoOp-family trainers use.

``TEXTREFINER_FRAMEWORK=builtin|dassl`` forces the choice (default ``auto``).
``FRAMEWORK`` tells which one is active.
"""
import importlib.util
import os
import warnings

_choice = os.environ.get("TEXTREFINER_FRAMEWORK", "auto").strip().lower()
if _choice not in ("auto", "dassl", "builtin"):
    raise ValueError(f"TEXTREFINER_FRAMEWORK must be auto, dassl or builtin, got {_choice!r}")


def _load_dassl() -> bool:
    if _choice == "builtin":
        return False
    if _choice == "auto" and importlib.util.find_spec("dassl") is None:
        return False
    try:
        from . import _dassl  # noqa: F401
    except ImportError as e:
        hint = (
            f"Dassl is installed but cannot be imported ({e}). Dassl's data package also needs "
            "`pandas` and `wilds` (see README, 'Running on real Dassl')"
        )
        if _choice == "dassl":
            raise ImportError(hint + "; or unset TEXTREFINER_FRAMEWORK to use the built-in engine.") from e
        warnings.warn(hint + "; using the built-in engine instead.")
        return False
    return True


if _load_dassl():
    from . import _dassl as _impl

    FRAMEWORK = "dassl"
else:
    from . import builtin as _impl

    FRAMEWORK = "builtin"

__all__ = [
    "FRAMEWORK", "TrainerBase", "SimpleTrainer", "TrainerX", "TRAINER_REGISTRY", "DATASET_REGISTRY", "Registry",
    "DatasetBase", "Datum", "DatasetWrapper", "DataManager", "build_data_loader", "build_dataset",
    "build_transform", "get_cfg_default", "build_trainer", "build_optimizer", "build_lr_scheduler",
    "build_evaluator", "compute_accuracy", "setup_logger", "set_random_seed", "collect_env_info",
    "load_checkpoint", "save_checkpoint", "resume_from_checkpoint", "load_pretrained_weights",
    "mkdir_if_missing", "read_json", "write_json", "read_image", "listdir_nohidden", "check_isfile",
    "count_num_param", "AverageMeter", "MetricMeter",
]
globals().update({name: getattr(_impl, name) for name in __all__ if name != "FRAMEWORK"})
del _impl

from .registration import register_if_free  # noqa: E402
from .builtin.utils import log_only, logging_to_file, teardown_logger  # noqa: E402  (go with setup_logger, on both frameworks)


def register_trainer(cls):
    """Class decorator: add ``cls`` to TRAINER_REGISTRY unless a user's class holds the name."""
    return register_if_free(TRAINER_REGISTRY, cls)  # noqa: F821 (set by globals().update above)


def register_dataset(cls):
    """Class decorator: add ``cls`` to DATASET_REGISTRY unless a user's reader holds the name."""
    return register_if_free(DATASET_REGISTRY, cls)  # noqa: F821


__all__ += ["register_trainer", "register_dataset", "register_if_free", "log_only", "logging_to_file", "teardown_logger"]
