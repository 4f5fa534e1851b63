"""The built-in engine: Dassl's API subset used by CoOp-family trainers, on plain PyTorch."""
from ..checkpoint import load_checkpoint, load_pretrained_weights, resume_from_checkpoint, save_checkpoint
from .config import get_cfg_default
from .data import DataManager, DatasetBase, DatasetWrapper, Datum, build_data_loader, build_dataset
from .evaluator import build_evaluator, compute_accuracy
from .optim import build_lr_scheduler, build_optimizer
from .registry import DATASET_REGISTRY, TRAINER_REGISTRY, Registry
from .trainer import SimpleTrainer, TrainerBase, TrainerX, build_trainer
from .transforms import build_transform
from .utils import (
    AverageMeter, MetricMeter, check_isfile, collect_env_info, count_num_param, listdir_nohidden,
    mkdir_if_missing, read_image, read_json, set_random_seed, setup_logger, write_json,
)
