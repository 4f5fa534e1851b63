"""Optimizers and per-epoch learning-rate schedules with Dassl's config keys.

Schedules are torch's own: the main scheduler (StepLR, MultiStepLR or
CosineAnnealingLR over MAX_EPOCH) preceded, when ``OPTIM.WARMUP_EPOCH > 0``, by a
LambdaLR warm-up and chained with SequentialLR. The resulting learning rates equal
Dassl's wrapper schedulers epoch by epoch: during warm-up a constant
``WARMUP_CONS_LR`` (or ``WARMUP_MIN_LR`` then ``base_lr * e / WARMUP_EPOCH`` for
the linear type); afterwards the main schedule restarted from its first epoch.

``WARMUP_RECOUNT False`` continues the main schedule at epoch ``WARMUP_EPOCH``
(closed form). Dassl's own version of that option restarts CosineAnnealingLR's
recursive update from the base lr and gives other values; no CoOp-family config
uses it.
"""
import bisect
import math
from typing import Iterable, Union

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import (
    CosineAnnealingLR, LambdaLR, MultiStepLR, SequentialLR, StepLR,
)

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "adamw"]
AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]


def build_optimizer(model: Union[nn.Module, Iterable], optim_cfg, param_groups=None) -> torch.optim.Optimizer:
    """An optimizer over ``model``'s parameters (or ``param_groups``) from ``cfg.OPTIM``."""
    name = optim_cfg.NAME
    if name not in AVAI_OPTIMS:
        raise ValueError(f"OPTIM.NAME must be one of {AVAI_OPTIMS}, but got {name!r}")
    if param_groups is None:
        if optim_cfg.STAGED_LR:
            param_groups = _staged_param_groups(model, optim_cfg)
        else:
            param_groups = model.parameters() if isinstance(model, nn.Module) else model
    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=wd, betas=betas, amsgrad=name == "amsgrad")
    if name == "sgd":
        return torch.optim.SGD(
            param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
            dampening=optim_cfg.SGD_DAMPNING, nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(
            param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd, alpha=optim_cfg.RMSPROP_ALPHA
        )
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=wd, betas=betas)


def _staged_param_groups(model: nn.Module, optim_cfg) -> list:
    if not isinstance(model, nn.Module):
        raise TypeError("OPTIM.STAGED_LR needs an nn.Module to split into base and new layers")
    new_layers = optim_cfg.NEW_LAYERS
    new_layers = [new_layers] if isinstance(new_layers, str) else list(new_layers)
    base, new = [], []
    for name, module in model.named_children():
        (new if name in new_layers else base).extend(module.parameters())
    return [{"params": base, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT}, {"params": new}]


def _main_scheduler(optimizer, optim_cfg, shift: int = 0):
    """The post-warm-up schedule; ``shift`` > 0 starts it ``shift`` epochs in (WARMUP_RECOUNT False)."""
    kind, stepsize, gamma = optim_cfg.LR_SCHEDULER, optim_cfg.STEPSIZE, optim_cfg.GAMMA
    max_epoch = optim_cfg.MAX_EPOCH
    if kind not in AVAI_SCHEDS:
        raise ValueError(f"OPTIM.LR_SCHEDULER must be one of {AVAI_SCHEDS}, but got {kind!r}")
    if kind == "single_step":
        step = stepsize[-1] if isinstance(stepsize, (list, tuple)) else stepsize
        if not isinstance(step, int):
            raise TypeError(f"For single_step, OPTIM.STEPSIZE must be an integer, but got {step!r}")
        step = max_epoch if step <= 0 else step
        factor = lambda e: gamma ** ((e + shift) // step)  # noqa: E731
        make = lambda: StepLR(optimizer, step_size=step, gamma=gamma)  # noqa: E731
    elif kind == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError(f"For multi_step, OPTIM.STEPSIZE must be a list, but got {stepsize!r}")
        milestones = sorted(stepsize)
        factor = lambda e: gamma ** bisect.bisect_right(milestones, e + shift)  # noqa: E731
        make = lambda: MultiStepLR(optimizer, milestones=milestones, gamma=gamma)  # noqa: E731
    else:
        factor = lambda e: 0.5 * (1 + math.cos(math.pi * (e + shift) / max_epoch))  # noqa: E731
        make = lambda: CosineAnnealingLR(optimizer, float(max_epoch))  # noqa: E731
    # torch's schedulers cannot start mid-schedule, so a shifted one is the closed form
    return LambdaLR(optimizer, factor) if shift else make()


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg):
    """Per-epoch scheduler from ``cfg.OPTIM`` (call ``.step()`` once at the end of each epoch)."""
    warmup = optim_cfg.WARMUP_EPOCH
    if warmup <= 0:
        return _main_scheduler(optimizer, optim_cfg)
    if optim_cfg.WARMUP_TYPE not in ("constant", "linear"):
        raise ValueError(f"OPTIM.WARMUP_TYPE must be constant or linear, got {optim_cfg.WARMUP_TYPE!r}")
    main = _main_scheduler(optimizer, optim_cfg, shift=0 if optim_cfg.WARMUP_RECOUNT else warmup)
    base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
    if optim_cfg.WARMUP_TYPE == "constant":
        cons = optim_cfg.WARMUP_CONS_LR
        lambdas = [lambda e, b=b: cons / b for b in base_lrs]
    else:
        min_lr = optim_cfg.WARMUP_MIN_LR
        lambdas = [lambda e, b=b: min_lr / b if e == 0 else e / warmup for b in base_lrs]
    warm = LambdaLR(optimizer, lambdas)
    return SequentialLR(optimizer, [warm, main], milestones=[warmup])
