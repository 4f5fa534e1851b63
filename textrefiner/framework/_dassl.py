"""Real Dassl, re-exported, with its torch >= 2.6 breakages patched at import.

1. Dassl's warm-up schedulers pass ``verbose`` to ``LRScheduler.__init__``, an
   argument recent torch removed: constructing one raises TypeError.
2. Dassl's ``load_checkpoint`` calls ``torch.load`` with the new
   ``weights_only=True`` default, which refuses the scheduler objects Dassl pickles
   into every checkpoint that has a warm-up scheduler.
3. (any torch) A warm-up scheduler's ``state_dict`` pickles its successor scheduler,
   optimizer included; after a resume the successor steps that unpickled copy, so
   the real learning rate stays frozen at its saved value. We save the successor's
   own state_dict instead (and still read checkpoints written the old way).
4. Dassl's ``setup_logger`` buffers ``log.txt`` (a killed run loses its last lines) and
   names rotated logs by the second (two runs started together overwrite one log);
   the built-in engine's line-buffered logger is used instead.
"""
import inspect

import dassl  # noqa: F401  (ImportError here means: use the built-in engine)
import dassl.engine.trainer as _dassl_trainer
import dassl.optim.lr_scheduler as _dassl_sched
import dassl.utils as _dassl_utils
import dassl.utils.torchtools as _dassl_torchtools
from dassl.config import get_cfg_default
from dassl.data import DataManager
from dassl.data.data_manager import DatasetWrapper, build_data_loader
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
from dassl.data.transforms import build_transform
from dassl.engine import TRAINER_REGISTRY, SimpleTrainer, TrainerBase, TrainerX, build_trainer
from dassl.evaluation import build_evaluator
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import (
    AverageMeter, MetricMeter, Registry, check_isfile, collect_env_info, count_num_param, listdir_nohidden,
    mkdir_if_missing, read_image, read_json, set_random_seed, write_json,
)
from torch.optim.lr_scheduler import _LRScheduler

from .builtin.utils import setup_logger  # noqa: F401  (see 4. above)
from .checkpoint import load_checkpoint, save_checkpoint

resume_from_checkpoint = _dassl_torchtools.resume_from_checkpoint
load_pretrained_weights = _dassl_torchtools.load_pretrained_weights


def _patch_warmup_schedulers() -> None:
    if "verbose" in inspect.signature(_LRScheduler.__init__).parameters:
        return

    def __init__(self, optimizer, successor, warmup_epoch, last_epoch=-1, verbose=False):
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        _LRScheduler.__init__(self, optimizer, last_epoch)

    _dassl_sched._BaseWarmupScheduler.__init__ = __init__


def _patch_warmup_scheduler_state() -> None:
    cls = _dassl_sched._BaseWarmupScheduler

    def state_dict(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor_state"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict):
        state = dict(state_dict)
        successor_state = state.pop("successor_state", None)
        pickled_successor = state.pop("successor", None)  # written by unpatched Dassl
        if successor_state is None and pickled_successor is not None:
            successor_state = pickled_successor.state_dict()
        self.__dict__.update(state)
        if successor_state is not None:
            self.successor.load_state_dict(successor_state)

    cls.state_dict = state_dict
    cls.load_state_dict = load_state_dict


def _patch_checkpoint_loading() -> None:
    # resume_from_checkpoint and load_pretrained_weights look the name up in their module
    for module in (_dassl_torchtools, _dassl_utils, _dassl_trainer):
        module.load_checkpoint = load_checkpoint


_patch_warmup_schedulers()
_patch_warmup_scheduler_state()
_patch_checkpoint_loading()
