"""Checkpoint files in Dassl's format, written atomically.

A checkpoint is ``{"state_dict", "epoch", "optimizer", "scheduler", "val_result"}``
saved as ``<dir>/<model name>/model.pth.tar-<epoch>`` (or ``model-best.pth.tar``),
with a ``checkpoint`` text file naming the latest one, exactly as Dassl writes them,
so Dassl's own ``resume_from_checkpoint`` reads ours and vice versa. Files are first
written to a temporary name in the same folder and then renamed, so a crash never
leaves a truncated checkpoint behind. With several registered models, every model's
file is written before any ``checkpoint`` pointer moves, so a crash leaves at most
the pointers out of step (``checkpoint_set`` detects that and rolls back).
"""
import os
import os.path as osp
import tempfile
import warnings
from collections import OrderedDict
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from ..safe_load import load_file

__all__ = [
    "atomic_save", "save_checkpoint", "save_registered_models", "write_pointer_file", "load_checkpoint",
    "resume_from_checkpoint", "load_pretrained_weights",
]


_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic_write(write_fn, fpath: str) -> None:
    directory = osp.dirname(fpath) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=osp.basename(fpath) + ".partial-", dir=directory)
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, fpath)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _write_text(text: str):
    def write(path: str) -> None:
        with open(path, "w") as f:
            f.write(text)

    return write


def atomic_save(obj: Any, fpath: str) -> None:
    """``torch.save(obj, fpath)`` through a temporary file in the same folder and a rename."""
    _atomic_write(lambda p: torch.save(obj, p), fpath)


def save_checkpoint(
    state: Dict[str, Any],
    save_dir: str,
    is_best: bool = False,
    remove_module_from_keys: bool = True,
    model_name: str = "",
    write_pointer: bool = True,
) -> str:
    """Save ``state`` under ``save_dir`` (Dassl's signature); returns the file path.
    ``write_pointer=False`` leaves the ``checkpoint`` file for ``write_pointer_file``."""
    if remove_module_from_keys:
        state["state_dict"] = OrderedDict(
            (k[7:] if k.startswith("module.") else k, v) for k, v in state["state_dict"].items()
        )
    fpath = osp.join(save_dir, model_name or f"model.pth.tar-{state['epoch']}")
    _atomic_write(lambda p: torch.save(state, p), fpath)
    print(f"Checkpoint saved to {fpath}")
    if write_pointer:
        write_pointer_file(fpath)
    if is_best:
        best = osp.join(save_dir, "model-best.pth.tar")
        _atomic_write(lambda p: torch.save(state, p), best)
        print(f'Best checkpoint saved to "{best}"')
    return fpath


def write_pointer_file(fpath: str) -> None:
    """Point the folder's ``checkpoint`` file at ``fpath`` (what a resume loads)."""
    _atomic_write(_write_text(osp.basename(fpath) + "\n"), osp.join(osp.dirname(fpath), "checkpoint"))


def save_registered_models(
    trainer, epoch: int, directory: str, is_best: bool = False, val_result=None, model_name: str = "",
    extra: Optional[Dict[str, Any]] = None,
) -> None:
    """Dassl's ``TrainerBase.save_model``: one checkpoint per registered model, under
    ``<directory>/<name>``; ``extra`` entries are added to every model's checkpoint."""
    paths = []
    for name in trainer.get_model_names():
        optim, sched = trainer._optims[name], trainer._scheds[name]
        state = {
            "state_dict": trainer._models[name].state_dict(),
            "epoch": epoch + 1,
            "optimizer": optim.state_dict() if optim is not None else None,
            "scheduler": sched.state_dict() if sched is not None else None,
            "val_result": val_result,
            **(extra or {}),
        }
        paths.append(save_checkpoint(state, osp.join(directory, name), is_best, model_name=model_name,
                                     write_pointer=False))
    for path in paths:
        write_pointer_file(path)


def load_checkpoint(fpath: str, what: str = "checkpoint") -> Dict[str, Any]:
    """Load a checkpoint on the CPU, as data only (``textrefiner.safe_load``: tensors, containers and
    the optimizer and scheduler objects Dassl pickles; anything else is refused, naming the class)."""
    if not fpath:
        raise FileNotFoundError(f'{what[0].upper() + what[1:]} not found at ""')
    return load_file(fpath, what)


def resume_from_checkpoint(
    fdir: str,
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler=None,
) -> int:
    """Load the latest checkpoint of ``fdir`` into model/optimizer/scheduler; returns its epoch."""
    with open(osp.join(fdir, "checkpoint")) as f:
        fpath = osp.join(fdir, f.readline().strip())
    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    print(f"Previous epoch: {checkpoint['epoch']}")
    return checkpoint["epoch"]


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Copy matching tensors (same name and shape) from a file into ``model``."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    model_dict = model.state_dict()
    matched, discarded = [], []
    for k, v in state_dict.items():
        k = k[7:] if k.startswith("module.") else k
        if k in model_dict and model_dict[k].size() == v.size():
            model_dict[k] = v
            matched.append(k)
        else:
            discarded.append(k)
    model.load_state_dict(model_dict)
    if not matched:
        warnings.warn(f"Cannot load {weight_path} (check the key names manually)")
    else:
        print(f"Successfully loaded pretrained weights from {weight_path}")
        if discarded:
            print(f"Layers discarded due to unmatched keys or size: {discarded}")
