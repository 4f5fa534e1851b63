"""Numeric precision policy, in one place (``TRAINER.<HOST>.PREC``).

* ``fp32``: everything in float32.
* ``fp16``: the CoOp/TextRefiner releases' default. CLIP's Linear/Conv/attention
  weights and the trainable modules are cast to float16 (``clip.model.convert_weights``)
  and the optimizer updates float16 weights directly; no loss scaling.
* ``amp``: float32 weights, float16 autocast and a GradScaler.
* ``bf16``: float32 weights, bfloat16 autocast; no scaler needed.

fp16 and amp need a CUDA device; on the CPU they fall back to fp32 with a warning.
"""
import contextlib
import functools
import warnings
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

PRECISIONS = ("fp32", "fp16", "amp", "bf16")
_ADAPTIVE_OPTIMS = ("adam", "adamw", "amsgrad", "rmsprop")


def autocast_enabled(device_type: str) -> bool:
    """Whether an autocast region is open for ``device_type`` ("cpu", "cuda")."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 has one query per device type
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def float32_under_autocast(fn: Callable) -> Callable:
    """Run ``fn`` in float32, with autocast off, when it is called inside an autocast region.

    For the classifier's logits and the losses computed from logits. An autocast matmul returns
    them rounded to bfloat16's 8 significant bits (float16's 11): a logit of 30 moves by up to
    0.12 in bf16, 12 % of a class probability, and every softmax, KL, cross-entropy and L1 term
    built on it inherits that as gradient noise. Under autocast (PREC amp, bf16) the weights are
    float32, so float32 is the model's own dtype here. Outside autocast ``fn`` runs untouched:
    fp32 stays bit-identical and fp16 keeps the releases' float16 logits.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if torch.is_tensor(a)]
        if not tensors or not autocast_enabled(tensors[0].device.type):
            return fn(*args, **kwargs)

        def up(a):
            return a.float() if torch.is_tensor(a) and a.is_floating_point() else a

        with torch.autocast(tensors[0].device.type, enabled=False):
            return fn(*map(up, args), **{k: up(v) for k, v in kwargs.items()})

    return wrapper


class Precision:
    """Casts modules, opens autocast regions and runs backward/step for one precision mode."""

    def __init__(self, prec: str, device: torch.device):
        if prec not in PRECISIONS:
            raise ValueError(f"PREC must be one of {PRECISIONS}, got {prec!r}")
        device = torch.device(device)
        if prec in ("fp16", "amp") and device.type != "cuda":
            warnings.warn(f"PREC {prec} needs a CUDA device; running in fp32 on {device.type} (use bf16 for a faster CPU run)")
            prec = "fp32"
        self.name = prec
        self.device = device
        self.scaler: Optional[torch.amp.GradScaler] = torch.amp.GradScaler(device.type) if prec == "amp" else None

    @property
    def weight_dtype(self) -> torch.dtype:
        """dtype of CLIP's matmul weights (CLIP's ``model.dtype``)."""
        return torch.float16 if self.name == "fp16" else torch.float32

    def cast(self, module: nn.Module) -> nn.Module:
        """Cast a module's matmul weights to the policy's storage dtype (norms stay fp32, as in CLIP)."""
        module.float()
        if self.name == "fp16":
            from .backbones.openai import import_clip

            import_clip().model.convert_weights(module)
        return module

    def autocast(self):
        if self.name == "amp":
            return torch.autocast(self.device.type, dtype=torch.float16)
        if self.name == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def warn_about_traps(self, optim_name: str) -> None:
        if self.name != "fp16":
            return
        msg = "PREC fp16 updates float16 weights without loss scaling (the releases' default)."
        if optim_name in _ADAPTIVE_OPTIMS:
            msg += (
                f" With OPTIM.NAME {optim_name}, eps=1e-8 underflows in float16 and the loss turns NaN "
                "after a few steps: use PREC amp or bf16, or SGD."
            )
        else:
            msg += " Small gradients can underflow to zero; use PREC amp or bf16 if the loss stalls or turns NaN."
        warnings.warn(msg)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """Step every optimizer of one backward pass (the scaler is updated once, after all)."""
        for optimizer in optimizers:
            (self.scaler.step(optimizer) if self.scaler is not None else optimizer.step())
        if self.scaler is not None:
            self.scaler.update()
