"""The training loop of Dassl's ``TrainerX``, for machines without Dassl.

Method names, call order and printed lines are Dassl's: ``train()`` runs
``before_train`` (resume from OUTPUT_DIR or RESUME), then per epoch
``before_epoch``/``run_epoch``/``after_epoch`` (validation and best-model selection
when ``TEST.FINAL_MODEL best_val``, checkpoints: an epoch's ``model-best`` and
``model.pth.tar-<epoch>`` are committed together, see ``checkpoint.py``), then ``after_train``
("Finish training", final test). Subclasses implement ``build_model`` and
``forward_backward``, exactly as for Dassl.
"""
import datetime
import os
import os.path as osp
import time
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ..checkpoint import commit_pending_save, load_checkpoint, resume_from_checkpoint, save_registered_models
from .data import DataManager
from .evaluator import build_evaluator
from .registry import TRAINER_REGISTRY
from .utils import AverageMeter, MetricMeter, tolist_if_not

__all__ = ["TrainerBase", "SimpleTrainer", "TrainerX", "build_trainer"]


class TrainerBase:
    """Model registry, checkpointing and the generic epoch loop."""

    def __init__(self):
        self._models: "OrderedDict[str, nn.Module]" = OrderedDict()
        self._optims: "OrderedDict[str, Optional[torch.optim.Optimizer]]" = OrderedDict()
        self._scheds: "OrderedDict[str, object]" = OrderedDict()
        self._writer = None

    def register_model(self, name: str = "model", model=None, optim=None, sched=None) -> None:
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot assign model before super().__init__() call")
        assert name not in self._models, "Found duplicate model names"
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names=None) -> List[str]:
        real = list(self._models.keys())
        if names is None:
            return real
        names = tolist_if_not(names)
        for name in names:
            assert name in real, f"No registered model named {name!r}"
        return names

    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result=None, model_name: str = ""):
        save_registered_models(self, epoch, directory, is_best, val_result, model_name)

    def resume_model_if_exist(self, directory: str) -> int:
        names = self.get_model_names()
        if not all(osp.exists(osp.join(directory, name, "checkpoint")) for name in names):
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        start_epoch = 0
        for name in names:
            start_epoch = resume_from_checkpoint(
                osp.join(directory, name), self._models[name], self._optims[name], self._scheds[name]
            )
        return start_epoch

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            model_path = osp.join(directory, name, model_file)
            if not osp.exists(model_path):
                raise FileNotFoundError(f"No model at {model_path}")
            checkpoint = load_checkpoint(model_path)
            val = checkpoint.get("val_result")
            val = "n/a" if val is None else f"{val:.1f}"
            print(f"Load {model_path} to {name} (epoch={checkpoint['epoch']}, val_result={val})")
            self._models[name].load_state_dict(checkpoint["state_dict"])

    def set_model_mode(self, mode: str = "train", names=None) -> None:
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ("test", "eval"):
                self._models[name].eval()
            else:
                raise KeyError(mode)

    def update_lr(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    def init_writer(self, log_dir: str) -> None:
        """TensorBoard scalars as Dassl writes them, when tensorboard is installed (it is optional:
        without it everything is still in log.txt)."""
        if self._writer is not None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("TensorBoard is not installed: no event files (pip install tensorboard); log.txt has everything")
            return
        os.makedirs(log_dir, exist_ok=True)
        print(f"Initialize tensorboard (log_dir={log_dir})")
        self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag: str, scalar_value, global_step=None) -> None:
        if self._writer is not None:  # only while training, as in Dassl
            self._writer.add_scalar(tag, scalar_value, global_step)

    def train(self, start_epoch: int, max_epoch: int) -> None:
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self):
        pass

    def after_train(self):
        pass

    def before_epoch(self):
        pass

    def after_epoch(self):
        pass

    def run_epoch(self):
        raise NotImplementedError

    def test(self):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch):
        raise NotImplementedError

    def model_inference(self, input):
        raise NotImplementedError

    def model_zero_grad(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss: torch.Tensor, names=None) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)


class SimpleTrainer(TrainerBase):
    """Builds data, model and evaluator from cfg; validation, checkpoints and testing."""

    def __init__(self, cfg):
        super().__init__()
        self.check_cfg(cfg)
        self.device = torch.device("cuda" if torch.cuda.is_available() and cfg.USE_CUDA else "cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf

    def check_cfg(self, cfg) -> None:
        pass

    def build_data_loader(self) -> None:
        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self) -> None:
        raise NotImplementedError("A trainer must build and register its model in build_model()")

    def train(self) -> None:
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        directory = self.cfg.RESUME or self.cfg.OUTPUT_DIR
        self.start_epoch = self.resume_model_if_exist(directory)
        self.init_writer(osp.join(self.output_dir, "tensorboard"))  # Dassl's folder
        self.time_start = time.time()

    def after_train(self) -> None:
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        elapsed = str(datetime.timedelta(seconds=round(time.time() - self.time_start)))
        print(f"Elapsed: {elapsed}")
        self.close_writer()

    def after_epoch(self) -> None:
        last_epoch = (self.epoch + 1) == self.max_epoch
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = freq > 0 and (self.epoch + 1) % freq == 0
        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(self.epoch, self.output_dir, val_result=curr_result, model_name="model-best.pth.tar")
        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)
        commit_pending_save(self)  # the epoch's saves are one commit; none is left open past it

    @torch.no_grad()
    def test(self, split: Optional[str] = None) -> float:
        self.set_model_mode("eval")
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"
            data_loader = self.test_loader
        print(f"Evaluate on the *{split}* set")
        for batch in tqdm(data_loader):
            input, label = self.parse_batch_test(batch)
            self.evaluator.process(self.model_inference(input), label)
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(results.values())[0]

    def model_inference(self, input):
        return self.model(input)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names=None) -> float:
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]


class TrainerX(SimpleTrainer):
    """A trainer on labelled data: one pass over ``train_loader_x`` per epoch."""

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        print_freq = self.cfg.TRAIN.PRINT_FREQ
        end = time.time()
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)
            if (self.batch_idx + 1) % print_freq == 0 or self.num_batches < print_freq:
                self._print_progress(losses, batch_time, data_time)
            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():  # Dassl's tags and steps
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()

    def _print_progress(self, losses: MetricMeter, batch_time: AverageMeter, data_time: AverageMeter) -> None:
        nb_remain = self.num_batches - self.batch_idx - 1 + (self.max_epoch - self.epoch - 1) * self.num_batches
        eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
        print(
            f"epoch [{self.epoch + 1}/{self.max_epoch}] "
            f"batch [{self.batch_idx + 1}/{self.num_batches}] "
            f"time {batch_time.val:.3f} ({batch_time.avg:.3f}) "
            f"data {data_time.val:.3f} ({data_time.avg:.3f}) "
            f"{losses} "
            f"lr {self.get_current_lr():.4e} "
            f"eta {eta}"
        )

    def parse_batch_train(self, batch: Dict):
        return (
            batch["img"].to(self.device),
            batch["label"].to(self.device),
            batch["domain"].to(self.device),
        )


def build_trainer(cfg):
    """Instantiate the trainer registered under ``cfg.TRAINER.NAME``."""
    if cfg.TRAINER.NAME not in TRAINER_REGISTRY:
        raise ValueError(
            f"Trainer {cfg.TRAINER.NAME!r} is not registered; available: {sorted(TRAINER_REGISTRY.registered_names())}"
        )
    if cfg.VERBOSE:
        print(f"Loading trainer: {cfg.TRAINER.NAME}")
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)
