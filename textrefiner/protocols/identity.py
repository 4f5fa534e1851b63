"""Run identity: a step's folder counts as done only if its result was made with the settings
the step would use now.

The settings of a run are its effective config (Dassl defaults < dataset YAML < trainer YAML
< the step's flags < its ``KEY VALUE`` overrides), the same one ``train.py`` builds, minus
the seed and every key that only says where data is read or outputs are written (the output
folder, the data root, a teacher file and whether it may be replaced): one list,
``results.record.NOT_SETTINGS``, which ``config_hash``, ``config_settings`` and ``differences``
all leave out, so the same run written elsewhere is the same run. Every
``result.json`` records their hash and the settings themselves; the launchers also write
``run_settings.json`` into a folder before its run starts, so an interrupted folder is only
resumed with the settings it was started with.

A folder (or a sibling seed folder of the same experiment) made with other settings is never
skipped silently: the step refuses, naming both settings and the ways out: for a training, a run
tag (which gives the run its own folder) or overwrite (which deletes the other run); for an
evaluation, overwrite, which replaces the evaluation only, never the model it evaluates (what an
evaluation takes from its model's training: ``evaluated.py``).
"""
import os
import os.path as osp
import re
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple

from ..atomic import write_json
from ..results.record import (
    HASH_KEY, RESULT_FILE, SETTINGS_FILE, SETTINGS_KEY, differences, read_result, same_records,
)


class SettingsConflict(RuntimeError):
    """A step's folder (or a sibling seed's) holds a run made with other settings."""


@lru_cache(maxsize=None)
def expected_settings(arguments: Tuple[str, ...]) -> Tuple[str, Dict[str, object]]:
    """(config hash, settings) of the config ``train.py ARGUMENTS`` builds, without running it."""
    # imported here: building a config imports the framework (torch), which only this needs
    from ..results.record import config_hash, config_settings
    from ..run_config import build_run_config

    cfg = build_run_config(arguments)
    return config_hash(cfg), config_settings(cfg)


def recorded(folder: str) -> Optional[dict]:
    """What ``folder`` says about the settings of its run: its result.json, else its
    run_settings.json (a run that did not finish), else None."""
    for name in (RESULT_FILE, SETTINGS_FILE):
        path = osp.join(folder, name)
        if osp.isfile(path):
            return read_result(path)
    return None


def same_settings(record: Optional[dict], expected: Tuple[str, Dict[str, object]]) -> bool:
    """Whether ``record`` (None: nothing there) was made with the ``expected`` (hash, settings)."""
    return record is None or same_records(record, {HASH_KEY: expected[0], SETTINGS_KEY: expected[1]})


def write_settings(folder: str, expected: Tuple[str, Dict[str, object]]) -> None:
    write_json({HASH_KEY: expected[0], SETTINGS_KEY: expected[1]}, osp.join(folder, SETTINGS_FILE), indent=1)


def suggested_tag(changes: Sequence[Tuple[str, object, object]], expected_hash: str) -> str:
    """A folder name for the new settings, CoOp-style (``n_ctx8_cscTrue``) when it stays short."""
    parts = [f"{key.rsplit('.', 1)[-1].lower()}{value}" for key, _, value in changes]
    tag = re.sub(r"[^A-Za-z0-9._+-]", "-", "_".join(parts))
    return tag if tag and len(tag) <= 48 and not tag.startswith("seed") else f"settings-{expected_hash[:8]}"


def conflict_message(step_dir: str, other_dir: str, record: dict, expected: Tuple[str, Dict[str, object]],
                     model_dir: str = "") -> str:
    """The refusal, with the ways out: for a training, a run tag or overwrite (which deletes the other run);
    for an evaluation (``model_dir``: the model it evaluates), overwrite, which replaces only the evaluation."""
    expected_hash, settings = expected
    changes = differences(record.get(SETTINGS_KEY) or {}, settings)
    if changes:
        shown = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in changes[:8])
        more = f" (and {len(changes) - 8} more)" if len(changes) > 8 else ""
        what = f"Settings that differ: {shown}{more}."
    else:
        what = f"Its config hash is {record.get(HASH_KEY)}, this step's is {expected_hash}."
    where = "this step's folder" if other_dir == step_dir else f"{other_dir}, a seed of the same experiment"
    if model_dir:
        return (
            f"{where} holds an evaluation made with other settings than this step's ({step_dir}). {what} "
            f"Pass the KEY VALUE pairs it was made with, or replace it: OVERWRITE=1 / --overwrite deletes only "
            f"the evaluation in {step_dir} and evaluates again (the model in {model_dir} is not touched)."
        )
    tag = suggested_tag(changes, expected_hash)
    return (
        f"{where} holds a run made with other settings than this step's ({step_dir}). {what} "
        f"Either give these settings their own folder with a run tag (TAG={tag} for scripts/*.sh, "
        f"--tag {tag} for the sweep), or replace the other run: OVERWRITE=1 / --overwrite deletes "
        f"{step_dir} and runs it again (other seeds' folders are left alone)."
    )


def seed_folders(step_dir: str) -> List[str]:
    """The folders of the other seeds of the same experiment (siblings named ``seed<S>``)."""
    parent, own = osp.split(step_dir.rstrip(os.sep))
    if not osp.isdir(parent):
        return []
    return [osp.join(parent, n) for n in sorted(os.listdir(parent))
            if n != own and re.fullmatch(r"seed\d+", n) and osp.isdir(osp.join(parent, n))]


def find_conflict(step_dir: str, expected: Tuple[str, Dict[str, object]], model_dir: str = "") -> Optional[str]:
    """The message for the first folder (this step's, then its sibling seeds') whose run was made
    with other settings; None if there is none. ``model_dir``: the model an evaluation step evaluates."""
    for folder in [step_dir, *seed_folders(step_dir)]:
        record = recorded(folder)
        if not same_settings(record, expected):
            return conflict_message(step_dir, folder, record, expected, model_dir)
    return None
