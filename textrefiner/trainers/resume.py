"""Exact resume for ``PromptTrainer``: what a checkpoint carries beyond Dassl's keys, and its checks.

Every checkpoint of a run gets a ``RUN_KEY`` entry: the trainer's name, the full
config, the random-number state (``framework.run_state``), the best validation
result and its epoch, and the GradScaler's state. A resume restores all of it, so
the continuation draws the same samples and augmentations as an uninterrupted run
and ``model-best`` is replaced only by a better epoch. Dassl's own loaders ignore
the extra key. A resume refuses a checkpoint made by another trainer or with
settings that change the numbers, naming both values. Extending a run's epochs is
the one allowed change, and only with ``TRAIN.EXTEND_EPOCHS True``.
"""
import math
import os.path as osp
import warnings
from typing import Dict, List, Optional, Tuple

from yacs.config import CfgNode

from textrefiner.errors import UserError
from textrefiner.framework import build_lr_scheduler
from textrefiner.framework.checkpoint import load_checkpoint, read_manifest
from textrefiner.framework.checkpoint_set import (
    checkpoint_files, checkpoint_folders, find_resume_set, pointed_file, recover_interrupted_save,
)
from textrefiner.framework.run_state import capture_rng_state, restore_rng_state
from textrefiner.results.record import PATH_KEYS

RUN_KEY = "textrefiner_run"

# Settings that do not change the numbers a run computes (paths, logging, the final test's split);
# PATH_KEYS (where a run reads data and writes outputs) are shared with run identity.
_NEUTRAL_KEYS = {
    *PATH_KEYS, "MODEL.BACKBONE.PATH", "VERBOSE", "TRAIN.PRINT_FREQ",
    "TRAIN.CHECKPOINT_FREQ", "TRAIN.EXTEND_EPOCHS", "TEST.SPLIT",
}


def _loaders(trainer) -> List:
    return [getattr(trainer, n, None) for n in ("train_loader_x", "train_loader_u", "val_loader", "test_loader")]


def run_entry(trainer) -> dict:
    """The ``RUN_KEY`` entry saved with every model's checkpoint."""
    scaler = getattr(getattr(trainer, "precision", None), "scaler", None)
    best = trainer.best_result
    return {
        RUN_KEY: {
            "trainer": trainer.cfg.TRAINER.NAME,
            "config": trainer.cfg.dump(),
            "rng": capture_rng_state(_loaders(trainer)),
            "best_result": float(best) if math.isfinite(best) else None,
            "best_epoch": trainer.best_epoch,
            "training_curve": {str(e): v for e, v in getattr(trainer, "training_curve", {}).items()},
            "scaler": scaler.state_dict() if scaler is not None else None,
        }
    }


def saved_trainer(checkpoint: dict) -> Optional[str]:
    """The trainer that wrote a checkpoint (None for Dassl's and upstream releases' files)."""
    return (checkpoint.get(RUN_KEY) or {}).get("trainer")


def _flatten(node, prefix: str = "") -> Dict[str, object]:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:  # a YAML round trip turns tuples into lists
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def changed_settings(saved_dump: str, cfg) -> List[Tuple[str, object, object]]:
    """``(key, saved value, current value)`` for every setting that changes the numbers."""
    saved, now = _flatten(CfgNode.load_cfg(saved_dump)), _flatten(cfg)
    missing = "(not set)"
    return [
        (key, saved.get(key, missing), now.get(key, missing))
        for key in sorted(set(saved) | set(now))
        if key not in _NEUTRAL_KEYS and saved.get(key, missing) != now.get(key, missing)
    ]


def check_settings(run: dict, cfg, directory: str) -> bool:
    """Refuse changed settings; returns True when the run's epochs are being extended."""
    if run.get("trainer") not in (None, cfg.TRAINER.NAME):
        raise UserError(
            f"{directory} holds checkpoints of trainer {run['trainer']}, not {cfg.TRAINER.NAME}: "
            f"use --trainer {run['trainer']} to resume it, or another --output-dir"
        )
    changes = changed_settings(run["config"], cfg)
    extend = [c for c in changes if c[0] == "OPTIM.MAX_EPOCH"]
    others = [c for c in changes if c[0] != "OPTIM.MAX_EPOCH"]
    if others:
        listed = "; ".join(f"{k}: {old!r} in the checkpoint, {new!r} now" for k, old, new in others)
        raise UserError(
            f"Resuming {directory} with changed settings ({listed}). Run with the checkpoint's settings, "
            "or use another --output-dir for the new ones"
        )
    if not extend:
        return False
    _, old, new = extend[0]
    if not cfg.TRAIN.EXTEND_EPOCHS or new < old:
        raise UserError(
            f"Resuming {directory} with OPTIM.MAX_EPOCH {new} (the checkpoint's run has {old}). To train a run "
            "longer, add TRAIN.EXTEND_EPOCHS True (the learning-rate schedule is re-planned for the new length); "
            "otherwise set OPTIM.MAX_EPOCH back to " + str(old)
        )
    print(f"Extending the run from {old} to {new} epochs (TRAIN.EXTEND_EPOCHS): the learning-rate schedule is "
          f"re-planned for {new} epochs from the resumed epoch on")
    return True


def replan_schedulers(trainer, epoch: int) -> None:
    """New schedulers for the extended ``OPTIM.MAX_EPOCH``, stepped to ``epoch``: from here on the
    learning rates are those of a run planned for the new length (the epochs already trained keep theirs)."""
    for name in trainer.get_model_names():
        optim = trainer._optims[name]
        if optim is None or trainer._scheds[name] is None:
            continue
        for group in optim.param_groups:
            group["lr"] = group["initial_lr"]
        sched = build_lr_scheduler(optim, trainer.cfg.OPTIM)
        with warnings.catch_warnings():  # stepping before optimizer.step() is the point here
            warnings.simplefilter("ignore")
            for _ in range(epoch):
                sched.step()
        trainer._scheds[name] = sched


def restore_run(trainer, run: Optional[dict], model_best_val: Optional[float]) -> None:
    """Random-number state, best validation result and scaler, from the ``RUN_KEY`` entry."""
    if run is None:
        if model_best_val is not None:
            trainer.best_result = float(model_best_val)
        print("Warning: these checkpoints carry no random-number state (written by Dassl or an older version): "
              "the continuation will not reproduce an uninterrupted run exactly")
        return
    note = restore_rng_state(run["rng"], _loaders(trainer))
    if note:
        print(f"Warning: random-number state only partly restored ({note}); the continuation may differ")
    trainer.best_result = -math.inf if run["best_result"] is None else run["best_result"]
    trainer.best_epoch = run["best_epoch"]
    if hasattr(trainer, "training_curve"):  # the epochs before the interruption (absent in older checkpoints)
        trainer.training_curve = {int(e): v for e, v in (run.get("training_curve") or {}).items()}
    scaler = getattr(getattr(trainer, "precision", None), "scaler", None)
    if scaler is not None and run.get("scaler"):
        scaler.load_state_dict(run["scaler"])
    best = "none yet" if trainer.best_epoch is None else f"{trainer.best_result:.2f} at epoch {trainer.best_epoch}"
    print(f"Restored the random-number state, scaler and best validation result ({best})")


def folder_owner(folder: str) -> Optional[str]:
    """The trainer recorded in one model folder's checkpoints: the pointed-to file's, else (no pointer
    yet: a first save killed before its pointers, by an older version) the newest file's."""
    pointed = pointed_file(folder)
    candidates = [pointed] if pointed else [osp.join(folder, name) for name in reversed(checkpoint_files(folder))]
    for path in candidates:
        if osp.isfile(path):
            return saved_trainer(load_checkpoint(path))
    return None


def recorded_owners(directory: str, folders: List[str]) -> set:
    """Trainers that recorded the folder's checkpoints as theirs: the committed save's
    (``checkpoint_set.json``) and each model folder's (None dropped)."""
    manifest = read_manifest(directory)
    owners = {manifest.get("trainer")} if manifest else set()
    owners.update(folder_owner(osp.join(directory, folder)) for folder in folders)
    owners.discard(None)
    return owners


def foreign_folders(directory: str, names: List[str], trainer_name: str, strict: bool = True) -> None:
    """Refuse a folder whose checkpoints another trainer (or host) recorded as its own. ``strict``
    (training into it): also refuse checkpoints of models this trainer does not have, or of only
    some of its models without such a record. Otherwise (loading a model): also refuse a folder
    with all our models plus others, whose loading would silently drop those others. A save of ours
    that a kill interrupted (some models' files written, no pointer yet) is ours: never refused."""
    found = checkpoint_folders(directory)
    if not found:
        return
    owners = recorded_owners(directory, found)
    other = sorted(owners - {trainer_name})
    extra = set(found) - set(names)
    if strict:
        foreign = extra or (set(found) != set(names) and trainer_name not in owners)
    else:  # folders of upstream releases, named otherwise, are left to load_model's own checks
        foreign = extra and set(names) <= set(found)
    if other or foreign:
        written_by = f"trainer {', '.join(other)}" if other else "another trainer"
        raise UserError(
            f"{directory} holds checkpoints of {found} written by {written_by}; {trainer_name} saves {names} "
            f"and would overwrite them. Use another --output-dir (or --trainer {other[0] if other else '...'} "
            "to continue that run)"
        )


def resume(trainer, directory: str) -> int:
    """Dassl's ``resume_model_if_exist``, exact and checked; returns the epoch to start from."""
    names = trainer.get_model_names()
    foreign_folders(directory, names, trainer.cfg.TRAINER.NAME)  # before anything is changed there
    if osp.abspath(directory) == osp.abspath(trainer.cfg.OUTPUT_DIR):
        recover_interrupted_save(directory)  # ours: train.py holds the folder's lock
    found = find_resume_set(directory, names)
    if found is None:
        print("No checkpoint found, train from scratch")
        return 0
    epoch, checkpoints = found
    print(f"Found checkpoint at {directory} (will resume training)")  # Dassl's line, which tools grep
    print(f"Resuming after epoch {epoch}")
    run = checkpoints[names[0]].get(RUN_KEY)
    extend = check_settings(run, trainer.cfg, directory) if run is not None else False
    for name in names:
        checkpoint = checkpoints[name]
        trainer.load_module_state(name, checkpoint["state_dict"], osp.join(directory, name))
        optim, sched = trainer._optims[name], trainer._scheds[name]
        if optim is not None and checkpoint.get("optimizer") is not None:
            optim.load_state_dict(checkpoint["optimizer"])
        if sched is not None and checkpoint.get("scheduler") is not None and not extend:
            sched.load_state_dict(checkpoint["scheduler"])
    if extend:
        replan_schedulers(trainer, epoch)
    best_file = osp.join(directory, names[0], "model-best.pth.tar")
    best_val = load_checkpoint(best_file).get("val_result") if run is None and osp.exists(best_file) else None
    restore_run(trainer, run, best_val)
    return epoch
