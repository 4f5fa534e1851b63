"""Checkpoint files in Dassl's format, written so that a kill at any instant leaves a complete set.

A checkpoint is ``{"state_dict", "epoch", "optimizer", "scheduler", "val_result"}``
saved as ``<dir>/<model name>/model.pth.tar-<epoch>`` (or ``model-best.pth.tar``),
with a ``checkpoint`` text file naming the latest one, exactly as Dassl writes them,
so Dassl's own ``resume_from_checkpoint`` reads ours and vice versa.

A save of the registered models (``save_registered_models``; one epoch's ``after_epoch``, its
``model-best`` and its ``model.pth.tar-<epoch>`` together) is one transaction:

1. every module's file is written, complete and synced, under a staged name
   ``<name>.staged-<commit>`` beside its final name (nothing a reader uses changes);
2. the commit: one atomic write (temporary file, fsync, rename) of ``<dir>/checkpoint_set.json``,
   naming the commit number, trainer, models, epoch, the file the pointers name, and each staged
   file's final name;
3. the staged files are renamed to their final names and the ``checkpoint`` pointers written.

A kill before step 2 leaves the previous commit (and staged files nobody reads, removed on the
next resume); a kill after it leaves a committed set whose step 3 the next resume finishes
(``checkpoint_set.recover_interrupted_save``). ``model-best.pth.tar`` is never overwritten before
its set is committed. Serialising into memory first means a full disk or a file-size limit is an
``OSError`` of the write (``CheckpointWriteError``: the folder, the bytes needed and free), never
a half-written file, and the previous commit stays intact.
"""
import errno
import json
import os
import os.path as osp
import shutil
import warnings
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from ..atomic import save_torch, torch_bytes, write_text
from ..errors import UserError
from ..safe_load import UnreadableFileError, load_file

__all__ = [
    "save_checkpoint", "save_registered_models", "write_pointer_file", "load_checkpoint",
    "resume_from_checkpoint", "load_pretrained_weights", "MANIFEST", "STAGED_MARK", "CheckpointWriteError",
    "read_manifest", "complete_save", "commit_pending_save",
]

#: the commit record of the latest complete save, in the folder holding the module folders
MANIFEST = "checkpoint_set.json"
#: a module's file written but not yet renamed into place: ``<final name>.staged-<commit>``
STAGED_MARK = ".staged-"
_BEST_FILE = "model-best.pth.tar"

class CheckpointWriteError(UserError):
    """A checkpoint could not be written (full disk, quota, file-size limit); the message names the
    folder, the space needed and what is left; the previous complete checkpoint is kept."""


def _reached(step: str, path: str) -> None:
    """Called before every file operation of a save: ``stage`` (a module's file under its staged
    name), ``commit`` (the manifest), ``rename`` (a staged file to its final name), ``pointer``.
    Does nothing; the kill tests replace it to stop the process at each of these boundaries."""


def _strip_module(state: Dict[str, Any]) -> None:
    state["state_dict"] = OrderedDict(
        (k[7:] if k.startswith("module.") else k, v) for k, v in state["state_dict"].items()
    )


def save_checkpoint(
    state: Dict[str, Any],
    save_dir: str,
    is_best: bool = False,
    remove_module_from_keys: bool = True,
    model_name: str = "",
    write_pointer: bool = True,
) -> str:
    """Save ``state`` under ``save_dir`` (Dassl's signature and steps, one model: the file, atomically,
    then its pointer); returns the file path. ``write_pointer=False`` leaves the ``checkpoint`` file
    for ``write_pointer_file``. Trainers save through ``save_registered_models``."""
    if remove_module_from_keys:
        _strip_module(state)
    fpath = osp.join(save_dir, model_name or f"model.pth.tar-{state['epoch']}")
    save_torch(state, fpath)
    print(f"Checkpoint saved to {fpath}")
    if write_pointer:
        write_pointer_file(fpath)
    if is_best:
        best = osp.join(save_dir, _BEST_FILE)
        save_torch(state, best)
        print(f'Best checkpoint saved to "{best}"')
    return fpath


def write_pointer_file(fpath: str) -> None:
    """Point the folder's ``checkpoint`` file at ``fpath`` (what a resume loads)."""
    write_text(osp.basename(fpath) + "\n", osp.join(osp.dirname(fpath), "checkpoint"))


def read_manifest(directory: str) -> Optional[dict]:
    """The folder's last committed save (``MANIFEST``), or None where no save of this version was committed."""
    path = osp.join(directory, MANIFEST)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            manifest = json.load(f)
        manifest["epoch"], manifest["models"], manifest["resume"], manifest["staged"]  # noqa: B018 (the keys used)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is unreadable ({e}); it records which checkpoints form the last complete save. "
                        "Move the folder away to train from scratch") from None
    return manifest


def _pointer_target(pointer: str) -> Optional[str]:
    try:
        with open(pointer) as f:
            return f.readline().strip()
    except OSError:
        return None


def complete_save(directory: str, manifest: dict, announce: bool = False) -> bool:
    """Step 3 of a committed save: rename its staged files into place and write the pointers.
    Idempotent (a kill during it is finished by running it again); True when anything was left to do."""
    did = False
    for staged, final in manifest["staged"].items():
        src, dst = osp.join(directory, staged), osp.join(directory, final)
        if osp.exists(src):
            _reached("rename", dst)
            os.replace(src, dst)
            did = True
        if announce:
            print(f"Checkpoint saved to {dst}")
    for name in manifest["models"]:
        pointer = osp.join(directory, name, "checkpoint")
        if _pointer_target(pointer) != manifest["resume"]:
            _reached("pointer", pointer)
            write_text(manifest["resume"] + "\n", pointer)
            did = True
    return did


def _size(n: Optional[int]) -> str:
    if n is None:
        return "unknown"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


class _SaveSet:
    """The files of one save: staged, then committed by one atomic write of the manifest."""

    def __init__(self, trainer, directory: str, epoch: int):
        self.directory, self.epoch = directory, epoch
        self.names = list(trainer.get_model_names())
        cfg = getattr(trainer, "cfg", None)
        self.trainer = cfg.TRAINER.NAME if cfg is not None else type(trainer).__name__
        previous = read_manifest(directory)
        self.commit_number = int(previous["commit"]) + 1 if previous and "commit" in previous else 1
        self.staged: "OrderedDict[str, str]" = OrderedDict()  # staged path -> final path, relative to directory
        self.sizes: List[int] = []
        self.resume = ""

    def stage(self, files: List[Tuple[str, str, bytes]]) -> None:
        """Write ``(model name, file name, data)`` under staged names, each complete and synced."""
        self.sizes += [len(data) for _, _, data in files]
        for name, file_name, data in files:
            final = f"{name}/{file_name}"
            staged = f"{final}{STAGED_MARK}{self.commit_number}"
            path = osp.join(self.directory, staged)
            try:
                os.makedirs(osp.dirname(path), exist_ok=True)
                _reached("stage", path)
                with open(path, "wb") as f:
                    self.staged[staged] = final
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                self.abort()
                raise self.error(e, committed=False) from None

    def abort(self) -> None:
        """Remove this save's staged files (a failed write); the previous commit is untouched."""
        for staged in self.staged:
            try:
                os.remove(osp.join(self.directory, staged))
            except OSError:
                pass
        self.staged.clear()

    def commit(self) -> None:
        manifest = {
            "format": 1, "commit": self.commit_number, "trainer": self.trainer, "models": self.names,
            "epoch": self.epoch, "resume": self.resume, "staged": dict(self.staged),
        }
        path = osp.join(self.directory, MANIFEST)
        try:
            _reached("commit", path)
            write_text(json.dumps(manifest, indent=1) + "\n", path)  # the commit point
        except OSError as e:
            self.abort()
            raise self.error(e, committed=False) from None
        try:
            complete_save(self.directory, manifest, announce=True)
        except OSError as e:
            raise self.error(e, committed=True) from None

    def error(self, e: OSError, committed: bool) -> BaseException:
        """One line for a full disk, a quota or a file-size limit (any other OSError is re-raised as it is)."""
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return e
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError:
            free = None
        needed = sum(self.sizes)
        if e.errno == errno.EFBIG:
            import resource

            limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
            limit = "unlimited" if limit == resource.RLIM_INFINITY else _size(limit)
            what = (f"over the file-size limit ({limit} per file, `ulimit -f`; the largest file of this save is "
                    f"{_size(max(self.sizes, default=0))})")
            fix = "Raise the limit or use another --output-dir"
        else:
            kind = "on a full disk" if e.errno == errno.ENOSPC else "over the disk quota"
            what = f"{kind} (this save needs {_size(needed)}, {_size(free)} free)"
            fix = "Free space or use another --output-dir"
        kept = ("the checkpoint is committed; rerunning the command finishes it" if committed
                else "the previous checkpoint is kept")
        return CheckpointWriteError(
            f"Cannot save the checkpoint of epoch {self.epoch} in {self.directory}: {what}; {kept}. {fix}"
        )


def _epoch_file_follows(trainer, epoch: int) -> bool:
    """Whether the ``after_epoch`` now saving ``model-best`` saves ``model.pth.tar-<epoch>`` next
    (Dassl's rule, which the built-in engine copies): then both go into one commit."""
    cfg, max_epoch = getattr(trainer, "cfg", None), getattr(trainer, "max_epoch", None)
    if cfg is None or max_epoch is None or getattr(trainer, "epoch", None) != epoch:
        return False
    freq = cfg.TRAIN.CHECKPOINT_FREQ
    return epoch + 1 == max_epoch or (freq > 0 and (epoch + 1) % freq == 0)


def commit_pending_save(trainer) -> None:
    """Commit a ``model-best`` save held back for its epoch's file (which did not come)."""
    pending = trainer.__dict__.pop("_pending_checkpoint_save", None)
    if pending is not None:
        pending.commit()


def save_registered_models(
    trainer, epoch: int, directory: str, is_best: bool = False, val_result=None, model_name: str = "",
    extra: Optional[Dict[str, Any]] = None,
) -> None:
    """Dassl's ``TrainerBase.save_model``: one checkpoint per registered model, under
    ``<directory>/<name>``; ``extra`` entries are added to every model's checkpoint. All of them
    are committed at once (see the module's docstring); a ``model-best`` save whose epoch also saves
    ``model.pth.tar-<epoch>`` is committed together with that file."""
    pending = trainer.__dict__.pop("_pending_checkpoint_save", None)
    if pending is not None and (pending.directory != directory or pending.epoch != epoch + 1):
        pending.commit()
        pending = None
    save = pending or _SaveSet(trainer, directory, epoch + 1)
    file_name = model_name or f"model.pth.tar-{epoch + 1}"
    files = []
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
        _strip_module(state)
        data = torch_bytes(state)
        files.append((name, file_name, data))
        if is_best:
            files.append((name, _BEST_FILE, data))
    save.stage(files)
    save.resume = file_name
    if model_name == _BEST_FILE and _epoch_file_follows(trainer, epoch):
        trainer.__dict__["_pending_checkpoint_save"] = save
        return
    save.commit()


def load_checkpoint(fpath: str, what: str = "checkpoint") -> Dict[str, Any]:
    """Load a checkpoint on the CPU, as data only (``textrefiner.safe_load``: tensors, containers and
    the optimizer and scheduler objects Dassl pickles; anything else is refused, naming the class)."""
    if not fpath:
        raise FileNotFoundError(f'{what[0].upper() + what[1:]} not found at ""')
    checkpoint = load_file(fpath, what)
    if not isinstance(checkpoint, dict):
        raise UnreadableFileError(f"{fpath} holds a {type(checkpoint).__name__}, not a {what} (a dict with a "
                                  "state_dict, as torch.save of Dassl's checkpoints writes): give the right file")
    return checkpoint


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
