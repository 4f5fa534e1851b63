"""One writer per output folder, and never over another trainer's results.

``OutputLock`` is a ``train.lock`` file created exclusively in the output folder,
holding the owner's pid, host and start time; a second run into the same folder
stops with the owner named. A lock whose process is gone (killed with ``kill -9``,
a crashed node on this host) is stale: it is reported and taken over. A lock from
another host cannot be checked, so it is refused with the file to delete.
``refuse_foreign_outputs`` stops a run whose folder holds the ``result.json`` or
checkpoints of another trainer before anything is written there.
"""
import json
import os
import os.path as osp
import socket
import time
from typing import Optional

from textrefiner.errors import UserError
from textrefiner.framework.checkpoint import read_manifest
from textrefiner.framework.checkpoint_set import checkpoint_folders
from textrefiner.trainers.resume import folder_owner

LOCK_FILE = "train.lock"


def _start_time(pid: int) -> Optional[str]:
    """The kernel's start time of ``pid`` (tells a live owner from a recycled pid), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: Optional[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _start_time(pid)
    return started is None or now is None or now == started


class OutputLock:
    """``with OutputLock(folder):`` holds the folder for this process."""

    def __init__(self, directory: str):
        self.path = osp.join(directory, LOCK_FILE)
        self.held = False

    def acquire(self) -> "OutputLock":
        os.makedirs(osp.dirname(self.path), exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _start_time(os.getpid()),
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._handle_existing()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise UserError(f"Could not take the lock {self.path}: another run took it at the same moment; retry")

    def _handle_existing(self) -> None:
        try:
            with open(self.path) as f:
                owner = json.load(f)
        except (OSError, ValueError):
            owner = {}
        pid, host = owner.get("pid"), owner.get("host")
        if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid, owner.get("started")):
            print(f"Removing a stale lock: process {pid} (since {owner.get('since')}) is no longer running")
            os.remove(self.path)
            return
        who = f"process {pid} on {host} (since {owner.get('since')})" if pid else "an unreadable lock"
        raise UserError(
            f"{osp.dirname(self.path)} is being written by {who}: wait for it, stop it, or use another "
            f"--output-dir (if that process is gone, delete {self.path})"
        )

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _recorded_trainer(directory: str) -> Optional[str]:
    """The trainer named by the folder's result.json, its last committed save or its newest
    checkpoints (a model folder without a pointer yet, from a save a kill interrupted: its files), if any."""
    result = osp.join(directory, "result.json")
    if osp.exists(result):
        try:
            with open(result) as f:
                trainer = json.load(f).get("trainer")
        except (OSError, ValueError):
            trainer = None
        if trainer:
            return trainer
    manifest = read_manifest(directory)
    if manifest and manifest.get("trainer"):
        return manifest["trainer"]
    for folder in checkpoint_folders(directory):
        trainer = folder_owner(osp.join(directory, folder))
        if trainer:
            return trainer
    return None


def refuse_foreign_outputs(directory: str, trainer: str) -> None:
    """Stop before writing into a folder that holds another trainer's outputs."""
    recorded = _recorded_trainer(directory) if osp.isdir(directory) else None
    if recorded and recorded != trainer:
        raise UserError(
            f"{directory} holds the outputs of trainer {recorded}; {trainer} would overwrite them. "
            f"Use another --output-dir (or --trainer {recorded} to continue that run)"
        )
