"""Every config key this project adds to Dassl's defaults, each with its meaning.

``extend_cfg(cfg)`` is what ``train.py`` calls (CoOp's ``extend_cfg`` under the same
name); host keys keep their upstream names (``TRAINER.COOP.*``) so upstream YAML
files work unchanged.
"""
from yacs.config import CfgNode as CN


def add_data_config(cfg: CN) -> None:
    # Base-to-novel protocol: "all" classes, the first half ("base") or the rest ("new");
    # labels are sorted, base = first ceil(C/2), each half relabelled from 0
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"


def add_backbone_config(cfg: CN) -> None:
    # Local CLIP weights file for an OpenAI MODEL.BACKBONE.NAME (default: ~/.cache/clip/<file>)
    cfg.MODEL.BACKBONE.PATH = ""


def add_coop_config(cfg: CN) -> None:
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16  # number of learnable context tokens M (ignored when CTX_INIT is set)
    cfg.TRAINER.COOP.CSC = False  # class-specific context: one context per class (random init only)
    cfg.TRAINER.COOP.CTX_INIT = ""  # words initialising the context, e.g. "a photo of a"
    cfg.TRAINER.COOP.PREC = "fp16"  # fp16 (CoOp default), fp32, amp or bf16; fp16/amp fall back to fp32 on CPU
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # where the class name goes: end, middle or front


def extend_cfg(cfg: CN) -> CN:
    """Add all project keys to a Dassl default config (in place); returns ``cfg``."""
    add_data_config(cfg)
    add_backbone_config(cfg)
    add_coop_config(cfg)
    return cfg


def get_cfg() -> CN:
    """Dassl's defaults (of the active framework) plus every key of this project."""
    from .framework import get_cfg_default

    return extend_cfg(get_cfg_default())
