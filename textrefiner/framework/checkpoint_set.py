"""Which checkpoints a resume loads when a run registers several models.

Each registered model has its own folder and ``checkpoint`` pointer. A run killed
between two models' saves (or stopped by a full disk) leaves the pointers at
different epochs; loading them as they are would train one model's epoch twice.
``find_resume_set`` instead picks the newest epoch that every model has a file for
(rolling back, and saying so), and refuses when there is none. Leftover temporary
files of interrupted writes are removed first.
"""
import glob
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Tuple

from ..errors import UserError
from .checkpoint import load_checkpoint

__all__ = ["CheckpointSetError", "remove_partial_files", "find_resume_set", "checkpoint_folders"]

_EPOCH_FILE = re.compile(r"^model\.pth\.tar-(\d+)$")
_BEST_FILE = "model-best.pth.tar"


class CheckpointSetError(UserError):
    """The checkpoints in a folder cannot be resumed from; the message says what to do."""


def remove_partial_files(directory: str) -> List[str]:
    """Delete temporary files of interrupted atomic writes under ``directory`` (one level of subfolders)."""
    removed = []
    for pattern in ("*.partial-*", "*/*.partial-*", "result.json.tmp-*"):
        for path in glob.glob(osp.join(glob.escape(directory), pattern)):
            os.remove(path)
            removed.append(path)
    if removed:
        print(f"Removed {len(removed)} temporary file(s) of interrupted writes: {sorted(map(osp.basename, removed))}")
    return removed


def checkpoint_folders(directory: str) -> List[str]:
    """Subfolders of ``directory`` that hold checkpoints (a ``checkpoint`` pointer or model files)."""
    if not osp.isdir(directory):
        return []
    return sorted(
        name for name in os.listdir(directory)
        if osp.isdir(osp.join(directory, name))
        and (osp.exists(osp.join(directory, name, "checkpoint")) or glob.glob(osp.join(glob.escape(directory), name, "model*.pth.tar*")))
    )


def _pointed_file(folder: str) -> Optional[str]:
    pointer = osp.join(folder, "checkpoint")
    if not osp.exists(pointer):
        return None
    with open(pointer) as f:
        return osp.join(folder, f.readline().strip())


def _files_by_epoch(folder: str) -> Dict[int, str]:
    """epoch -> file for every complete checkpoint file of one model (``model-best`` read for its epoch)."""
    found = {}
    if not osp.isdir(folder):
        return found
    for name in os.listdir(folder):
        match = _EPOCH_FILE.match(name)
        if match:
            found[int(match.group(1))] = osp.join(folder, name)
    best = osp.join(folder, _BEST_FILE)
    if osp.exists(best):
        found.setdefault(int(load_checkpoint(best)["epoch"]), best)
    return found


def find_resume_set(directory: str, names: List[str]) -> Optional[Tuple[int, Dict[str, dict]]]:
    """``(epoch, {model name: loaded checkpoint})`` to resume from, or None for a fresh start.

    The pointed-to files when they agree; otherwise the newest epoch all models have.
    """
    pointed = {name: _pointed_file(osp.join(directory, name)) for name in names}
    if all(path is None for path in pointed.values()):
        return None
    latest = {name: load_checkpoint(path) for name, path in pointed.items() if path is not None and osp.exists(path)}
    epochs = {name: int(ckpt["epoch"]) for name, ckpt in latest.items()}
    if len(latest) == len(names) and len(set(epochs.values())) == 1:
        return next(iter(epochs.values())), latest
    files = {name: _files_by_epoch(osp.join(directory, name)) for name in names}
    shared = set.intersection(*(set(f) for f in files.values()))
    if epochs:
        shared = {e for e in shared if e <= min(epochs.values())}
    described = ", ".join(f"{name}: {epochs.get(name, 'none')}" for name in names)
    if not shared:
        raise CheckpointSetError(
            f"The checkpoints in {directory} are from different epochs ({described}) and no epoch is saved for "
            f"every model, so training cannot resume consistently. Move the folder away (or delete it) to "
            f"train from scratch."
        )
    epoch = max(shared)
    print(f"Checkpoints of mixed epochs ({described}): rolling back to epoch {epoch}, the newest that all share")
    return epoch, {name: load_checkpoint(files[name][epoch]) for name in names}
