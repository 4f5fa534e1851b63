"""The checks a run's config passes before anything is written: each failure is one ``UserError``
line. Every value with a fixed set of choices or a range is checked, so a typo stops the run at
once instead of as an internal error deep in torch (or not at all): the framework's own keys here
(``DASSL_CHECKS``), each host's and TextRefiner's keys by the config part that adds them
(``textrefiner.config.ConfigPart``); the backbone name is checked by the backbone resolver.
"""
import math
from typing import List

from textrefiner.backbones.resolver import resolve
from textrefiner.config import ConfigPart, check_values, config_part
from textrefiner.errors import UserError
from textrefiner.framework import DATASET_REGISTRY, FRAMEWORK, TRAINER_REGISTRY

from .merge import closest

#: the framework's own keys (Dassl's names): checked for every run; each host's and TextRefiner's
#: keys are checked by the config part that adds them (``textrefiner.config.ConfigPart``)
DASSL_CHECKS = ConfigPart(
    "Dassl", lambda cfg: None,
    choices={
        # Dassl tests the best-val model for "best_val" and the last epoch's for anything else; these
        # are the names Dassl (last_step) and the MaPLe release (last_epoch) use
        "TEST.FINAL_MODEL": ("best_val", "last_step", "last_epoch"),
        "TEST.SPLIT": ("val", "test"),
        # Dassl also has radam; the built-in engine refuses it when building the optimizer
        "OPTIM.NAME": ("adam", "amsgrad", "sgd", "rmsprop", "adamw") + (("radam",) if FRAMEWORK == "dassl" else ()),
        "OPTIM.LR_SCHEDULER": ("single_step", "multi_step", "cosine"),
        "OPTIM.WARMUP_TYPE": ("constant", "linear"),
        "INPUT.INTERPOLATION": ("bilinear", "bicubic", "nearest"),
    },
    minimums={
        "OPTIM.MAX_EPOCH": (1, "epochs"),
        "OPTIM.WARMUP_EPOCH": (-1, "warm-up epochs; 0 or Dassl's default -1 for none"),
        "DATALOADER.TRAIN_X.BATCH_SIZE": (1, "training images per batch"),
        "DATALOADER.TEST.BATCH_SIZE": (1, "evaluation images per batch"),
        "DATALOADER.NUM_WORKERS": (0, "data-loading processes"),
        "TRAIN.PRINT_FREQ": (1, "batches between progress lines"),
        # Dassl's -1 (its default) and 0 (PromptKD's shots_0) mean every training image
        "DATASET.NUM_SHOTS": (-1, "images per class; -1 or 0 for every training image"),
    },
    ranges={"OPTIM.LR": (1e-12, math.inf), "OPTIM.WEIGHT_DECAY": (0.0, math.inf), "OPTIM.MOMENTUM": (0.0, 1.0)},
)


def check_cfg_values(cfg) -> None:
    """Every value with a fixed set of choices or a range, before anything runs."""
    if cfg.TRAINER.NAME not in TRAINER_REGISTRY.registered_names():
        names = sorted(TRAINER_REGISTRY.registered_names())
        raise UserError(f"Unknown trainer {cfg.TRAINER.NAME!r}{closest(cfg.TRAINER.NAME, names)}; "
                        f"pass --trainer with one of {names}")
    if cfg.DATASET.NAME not in DATASET_REGISTRY.registered_names():
        names = sorted(DATASET_REGISTRY.registered_names())
        raise UserError(f"Unknown dataset {cfg.DATASET.NAME!r}{closest(cfg.DATASET.NAME, names)}; pass a file from "
                        f"configs/datasets/ with --dataset-config-file (registered: {names}); for your own images "
                        "(one folder per class, or a CSV), copy configs/datasets/image_folder.yaml (DATASET.NAME "
                        "ImageFolder) and set its DATASET.IMAGE_FOLDER.DIR")
    trainer = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    names = trainer.config_part_names() if hasattr(trainer, "config_part_names") else ()
    parts = [part for part in (config_part(name) for name in names) if part is not None]
    try:
        check_values(cfg, [DASSL_CHECKS, *parts])
    except ValueError as e:  # ConfigError, and the SettingErrors a part's own check raises
        raise UserError(str(e)) from None
    if FRAMEWORK == "builtin":
        from textrefiner.framework.builtin.transforms import AVAI_CHOICES
    else:  # Dassl asserts on an unknown name deep inside build_transform
        from dassl.data.transforms.transforms import AVAI_CHOICES
    unknown = [t for t in cfg.INPUT.TRANSFORMS if t not in AVAI_CHOICES]
    if unknown:
        where = "without Dassl" if FRAMEWORK == "builtin" else "in Dassl"
        raise UserError(f"INPUT.TRANSFORMS {unknown} are not available {where}; choose from {list(AVAI_CHOICES)}")
    if not cfg.OUTPUT_DIR:
        raise UserError("No output folder: pass --output-dir")
    _check_backbone(cfg.MODEL.BACKBONE.NAME)


def config_warnings(cfg) -> List[str]:
    """Settings that run but likely not as meant (printed as ``Warning:`` lines into the log)."""
    warned = []
    optim = cfg.OPTIM
    if 0 < optim.MAX_EPOCH <= optim.WARMUP_EPOCH:
        warned.append(f"OPTIM.WARMUP_EPOCH {optim.WARMUP_EPOCH} >= OPTIM.MAX_EPOCH {optim.MAX_EPOCH}: every epoch is "
                      f"a warm-up epoch, so the run never trains at OPTIM.LR {optim.LR:g}; lower OPTIM.WARMUP_EPOCH "
                      "(0: no warm-up) if that is not what you meant")
    return warned


def _check_backbone(name: str) -> None:
    """Names the resolver refuses (missing files are load_clip's own clear error, in the log)."""
    try:
        resolve(name)
    except ValueError as e:
        raise UserError(str(e)) from None
