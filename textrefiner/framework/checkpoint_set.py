"""Which checkpoints a resume loads when a run registers several models.

Saves of this version are committed as a set (``checkpoint.py``): ``checkpoint_set.json`` names the
epoch and files of the last complete save, and ``find_resume_set`` loads exactly those (checking
their epochs), whatever the ``checkpoint`` pointers say. ``recover_interrupted_save`` finishes a
save that was committed but killed before all its files were renamed into place and its pointers
written, and removes the staged files of a save killed before its commit and the temporary files
of interrupted writes.

Folders without that file (written by Dassl or an older version) are read by their pointers: a run
killed between two models' saves left them at different epochs, and loading them as they are
would train one model's epoch twice, so the newest epoch every model has a file for is picked
(rolling back, and saying so), and a folder without one is refused.
"""
import glob
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Tuple

from ..atomic import PARTIAL_MARK
from ..errors import UserError
from .checkpoint import MANIFEST, STAGED_MARK, complete_save, load_checkpoint, read_manifest

__all__ = ["CheckpointSetError", "remove_partial_files", "find_resume_set", "checkpoint_folders",
           "recover_interrupted_save", "checkpoint_files", "pointed_file"]

_EPOCH_FILE = re.compile(r"^model\.pth\.tar-(\d+)$")
_BEST_FILE = "model-best.pth.tar"


class CheckpointSetError(UserError):
    """The checkpoints in a folder cannot be resumed from; the message says what to do."""


def _committed_staged(directory: str) -> set:
    """Staged files the last commit still has to rename into place (never temporary)."""
    manifest = read_manifest(directory)
    return {osp.join(directory, staged) for staged in (manifest or {}).get("staged", {})}


def remove_partial_files(directory: str) -> List[str]:
    """Delete temporary files of interrupted atomic writes and staged files of uncommitted saves
    under ``directory`` (one level of subfolders); a committed save's staged files are kept."""
    removed, keep = [], _committed_staged(directory)
    # result.json.tmp-<pid>: how versions before textrefiner.atomic named an unfinished result.json
    for pattern in (f"*{PARTIAL_MARK}*", f"*/*{PARTIAL_MARK}*", "result.json.tmp-*", f"*/*{STAGED_MARK}*"):
        for path in glob.glob(osp.join(glob.escape(directory), pattern)):
            if path not in keep:
                os.remove(path)
                removed.append(path)
    if removed:
        print(f"Removed {len(removed)} temporary file(s) of interrupted writes: {sorted(map(osp.basename, removed))}")
    return removed


def recover_interrupted_save(directory: str) -> None:
    """Finish a committed save a kill interrupted (renames, pointers), then remove what uncommitted
    saves and interrupted writes left. Only for a folder this process holds (train.py's lock)."""
    manifest = read_manifest(directory)
    if manifest is not None and complete_save(directory, manifest):
        print(f"Finished the interrupted save of epoch {manifest['epoch']} ({MANIFEST}: its files renamed into "
              "place, the checkpoint pointers written)")
    remove_partial_files(directory)


def checkpoint_files(folder: str) -> List[str]:
    """The complete checkpoint files of one model's folder (``model.pth.tar-N``, ``model-best.pth.tar``)."""
    if not osp.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder) if _EPOCH_FILE.match(name) or name == _BEST_FILE)


def checkpoint_folders(directory: str) -> List[str]:
    """Subfolders of ``directory`` that hold checkpoints (a ``checkpoint`` pointer or model files;
    staged and temporary files of unfinished writes do not count)."""
    if not osp.isdir(directory):
        return []
    return sorted(
        name for name in os.listdir(directory)
        if osp.isdir(osp.join(directory, name))
        and (osp.exists(osp.join(directory, name, "checkpoint")) or checkpoint_files(osp.join(directory, name)))
    )


def pointed_file(folder: str) -> Optional[str]:
    """The path a model folder's ``checkpoint`` pointer names (the file may be gone), or None when
    there is no pointer or it names nothing (empty: edited by hand or cut short)."""
    pointer = osp.join(folder, "checkpoint")
    try:
        with open(pointer) as f:
            name = f.readline().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return osp.join(folder, name) if name else None


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


def _committed_set(directory: str, names: List[str], manifest: dict) -> Tuple[int, Dict[str, dict]]:
    """The checkpoints of the last committed save (their staged files while it is unfinished)."""
    epoch, resume_file = int(manifest["epoch"]), manifest["resume"]
    if sorted(manifest["models"]) != sorted(names):
        raise CheckpointSetError(
            f"{osp.join(directory, MANIFEST)} records a save of models {manifest['models']}, this trainer has "
            f"{names}: resume with the trainer and settings that wrote it, or use another --output-dir"
        )
    staged_of = {final: staged for staged, final in manifest["staged"].items()}
    checkpoints = {}
    for name in names:
        final = f"{name}/{resume_file}"
        path = osp.join(directory, final)
        staged = staged_of.get(final)
        if staged is not None and osp.exists(osp.join(directory, staged)):
            path = osp.join(directory, staged)
        if not osp.exists(path):
            raise CheckpointSetError(
                f"{path} is missing: {MANIFEST} records it as part of the last complete save (epoch {epoch}). "
                "Restore it, or move the folder away to train from scratch"
            )
        checkpoint = load_checkpoint(path)
        if int(checkpoint.get("epoch", -1)) != epoch:
            raise CheckpointSetError(
                f"{path} holds epoch {checkpoint.get('epoch')}, but {MANIFEST} records epoch {epoch} for the last "
                "complete save: the folder was changed by hand or by another program. Move it away to train from "
                "scratch"
            )
        checkpoints[name] = checkpoint
    return epoch, checkpoints


def find_resume_set(directory: str, names: List[str]) -> Optional[Tuple[int, Dict[str, dict]]]:
    """``(epoch, {model name: loaded checkpoint})`` to resume from, or None for a fresh start.

    The last committed save where the folder records one; otherwise (Dassl's or an older version's
    folders) the pointed-to files when they agree, else the newest epoch all models have.
    """
    manifest = read_manifest(directory)
    if manifest is not None:
        return _committed_set(directory, names, manifest)
    pointed = {name: pointed_file(osp.join(directory, name)) for name in names}
    if all(path is None for path in pointed.values()):
        return None
    latest = {name: load_checkpoint(path) for name, path in pointed.items() if path is not None and osp.isfile(path)}
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
