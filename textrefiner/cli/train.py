"""CoOp's ``train.py`` command line: train, evaluate, or resume one run.

    python train.py --root DATA --seed 1 --trainer CoOp_TextRefiner \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/CoOp_TextRefiner/vit_b16_ep10_ctxv1.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base

Config precedence (as CoOp): Dassl defaults + project keys < dataset YAML < trainer
YAML < command-line flags < trailing ``KEY VALUE`` pairs.
"""
import argparse
import importlib
import os
import platform
import sys
import warnings
from typing import List, Optional

import torch

from textrefiner import __version__
from textrefiner.checkpoints import UpstreamCheckpointError
from textrefiner.clip_backbone import WeightsNotFoundError
from textrefiner.config import ConfigError, get_cfg
from textrefiner.data.errors import DatasetError
from textrefiner.framework import FRAMEWORK, build_trainer, set_random_seed, setup_logger



class ConfigKeyError(ValueError):
    """A config file or override names a key this project does not define."""


# Errors whose message already says what to do: printed as one line, no traceback.
USER_ERRORS = (WeightsNotFoundError, DatasetError, ConfigError, ConfigKeyError, UpstreamCheckpointError)


def register_plugins() -> None:
    """Import the trainers and dataset readers so they register (names already taken are kept)."""
    importlib.import_module("textrefiner.trainers")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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


def _unknown_key(source: str, error: KeyError) -> ConfigKeyError:
    hosts = ", ".join(f"TRAINER.{k}" for k in sorted(get_cfg().TRAINER) if k != "NAME")
    return ConfigKeyError(
        f"{source}: {error.args[0]}. This project defines Dassl's keys and its own (textrefiner/config.py; "
        f"trainer sections: {hosts}); a YAML written for another method (e.g. CoCoOp's TRAINER.COCOOP) needs its "
        f"trainer: use a config of configs/trainers/<Trainer>/ for a trainer this project has"
    )


def setup_cfg(args):
    cfg = get_cfg()
    for path in (args.dataset_config_file, args.config_file):
        if path:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Config file {path} not found (configs/ has the shipped ones)")
            try:
                cfg.merge_from_file(path)
            except KeyError as e:
                raise _unknown_key(path, e) from None
    reset_cfg(cfg, args)
    try:
        cfg.merge_from_list(args.opts)
    except KeyError as e:
        raise _unknown_key("KEY VALUE overrides", e) from None
    cfg.freeze()
    return cfg


def print_args(args, cfg) -> None:
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def env_info() -> str:
    """A short environment summary (torch's full collect_env takes seconds)."""
    import numpy
    import PIL
    import torchvision

    lines = [
        f"textrefiner: {__version__} (framework: {FRAMEWORK})",
        f"Python: {sys.version.split()[0]} ({platform.platform()})",
        f"PyTorch: {torch.__version__}, torchvision: {torchvision.__version__}, "
        f"numpy: {numpy.__version__}, Pillow: {PIL.__version__}",
        f"CUDA available: {torch.cuda.is_available()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"CUDA: {torch.version.cuda}, GPUs: {[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}")
    lines.append(f"CPU threads: {torch.get_num_threads()}")
    return "\n".join(lines)


def _show_warning_on_stdout(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings go to stdout, which the logger copies into log.txt (precision fallbacks, fp16 traps)."""
    print(f"Warning: {category.__name__}: {message}", flush=True)


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except USER_ERRORS as e:
        print(f"Error: {e}", flush=True)  # into log.txt too, once the logger is set up
        raise SystemExit(1) from None


def run(args: argparse.Namespace) -> None:
    register_plugins()
    cfg = setup_cfg(args)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    warnings.showwarning = _show_warning_on_stdout
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{env_info()}\n")
    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


if __name__ == "__main__":
    main()
