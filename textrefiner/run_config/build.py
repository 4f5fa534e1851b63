"""The config of one run, built from ``train.py``'s command line exactly as ``train.py`` builds it.

Precedence (as CoOp): Dassl defaults + project keys < dataset YAML < trainer YAML < command-line
flags < trailing ``KEY VALUE`` pairs. ``train.py``, the run identity (``protocols/identity.py``)
and the sweep's preflight (``sweep/preflight.py``) all build configs here, so the same arguments
give them the same config.
"""
import argparse
import os
from typing import Sequence

from textrefiner.config import get_cfg
from textrefiner.errors import UserError

from .merge import merge_config


def register_plugins() -> None:
    """Import the trainers and dataset readers so they register (names already taken are kept)."""
    import textrefiner.trainers  # noqa: F401  (here: the trainers import torch and the framework)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="CoOp's ``train.py`` command line: train, evaluate, or resume one run.")
    p.add_argument("--root", type=str, default="", help="path to dataset")
    p.add_argument("--output-dir", type=str, default="", help="output directory")
    p.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    p.add_argument("--seed", type=int, default=-1, help="only positive value enables a fixed seed")
    p.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    p.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    p.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    p.add_argument("--config-file", type=str, default="", help="path to config file")
    p.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    p.add_argument("--trainer", type=str, default="", help="name of trainer")
    p.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    p.add_argument("--head", type=str, default="", help="name of head")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    p.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    p.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    p.add_argument("--debug", action="store_true", help="show the traceback of an input error (or TEXTREFINER_DEBUG=1)")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line")
    return p


def reset_cfg(cfg, args) -> None:
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed >= 0:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def setup_cfg(args):
    cfg = get_cfg()
    for path in (args.dataset_config_file, args.config_file):
        if path:
            if not os.path.isfile(path):
                raise UserError(f"Config file {path} not found (configs/ has the shipped ones)")
            merge_config(cfg, path=path)
    reset_cfg(cfg, args)
    merge_config(cfg, opts=args.opts)
    cfg.freeze()
    return cfg


def build_run_config(arguments: Sequence[str]):
    """The config ``train.py ARGUMENTS`` builds, without running anything."""
    register_plugins()
    return setup_cfg(build_parser().parse_args(list(arguments)))
