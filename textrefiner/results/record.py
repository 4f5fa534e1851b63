"""``result.json``: the machine-readable record of one evaluation, written next to ``log.txt``."""
import hashlib
import json
import os.path as osp
import subprocess
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..atomic import write_json
from ..errors import UserError
from ..metrics import macro_f1_score
from ..teacher_layout import DEFAULT_TEACHER_DIR

RESULT_FILE = "result.json"
#: written by the launchers before train.py starts: the settings a folder's run was started with
SETTINGS_FILE = "run_settings.json"
#: the record's keys that identify its settings
HASH_KEY = "config_hash"
SETTINGS_KEY = "settings"
#: Keys that only say where a run reads its data and writes its outputs (its folder, the teacher
#: file a PromptSRC run writes and whether it may replace one, where a PromptKD run reads its teacher): the same run written elsewhere is
#: the same run. Key -> the value the hash sees in its place: the key's default where it has one,
#: so a run that never set the key keeps the hash it had before the key joined this list. Add any
#: new output-path key here: run identity (below) and the resume check (trainers/resume.py) read it.
PATH_KEYS = {
    "OUTPUT_DIR": "", "RESUME": "", "DATASET.ROOT": "",
    "TRAINER.PROMPTSRC.TEACHER_FILE": "", "TRAINER.PROMPTSRC.TEACHER_OVERWRITE": False,
    # where a PromptKD student reads its teacher: like DATASET.ROOT, a place, not what is there (a path
    # never told which teacher it holds), so a teacher root given as a relative or absolute path, by
    # $TEACHER_DIR or by a key, or one per seed, is the same setting
    "TRAINER.PROMPTKD.TEACHER_DIR": DEFAULT_TEACHER_DIR, "TRAINER.PROMPTKD.TEACHER_FILE": "",
}
#: Keys that are not a run's settings, so they stay out of its identity (``config_hash``,
#: ``config_settings``, ``differences``): the paths, and the seed (what differs between the seeds
#: of one experiment).
NOT_SETTINGS = {**PATH_KEYS, "SEED": ""}


def config_hash(cfg) -> str:
    """Short digest of the config, ignoring the keys of ``NOT_SETTINGS``."""
    clone = cfg.clone()
    clone.defrost()
    for key, neutral in NOT_SETTINGS.items():
        *parents, leaf = key.split(".")
        node = clone
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            node[leaf] = neutral
    return hashlib.sha1(clone.dump().encode()).hexdigest()[:12]


def config_settings(cfg) -> Dict[str, object]:
    """The config as flat ``{"OPTIM.MAX_EPOCH": 10, ...}``, without the keys ``config_hash``
    ignores, in JSON types (so a value read back from result.json compares equal)."""
    flat = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[prefix + key] = value

    walk(cfg, "")
    for key in NOT_SETTINGS:
        flat.pop(key, None)
    return json.loads(json.dumps(flat, default=str))


def differences(there: Dict[str, object], here: Dict[str, object]) -> List[tuple]:
    """(key, value there, value here) for every key both have whose values differ; keys of
    ``NOT_SETTINGS`` (which records written before a key joined it still carry) do not count."""
    return [(k, there[k], here[k]) for k in sorted(set(there) & set(here) - set(NOT_SETTINGS)) if there[k] != here[k]]


def same_records(a: dict, b: dict) -> bool:
    """Whether two records were made with the same settings. Compared key by key where both list
    their settings: a key only one has was added or removed by a code change and keeps the old
    behaviour at its default, so it does not count. A record without a hash (written by another
    tool, e.g. an upstream run) cannot be checked, so it is trusted."""
    if a.get(HASH_KEY) is None or b.get(HASH_KEY) is None or a[HASH_KEY] == b[HASH_KEY]:
        return True
    if isinstance(a.get(SETTINGS_KEY), dict) and isinstance(b.get(SETTINGS_KEY), dict):
        return not differences(a[SETTINGS_KEY], b[SETTINGS_KEY])
    return False


def git_commit() -> Optional[str]:
    """Commit of the checkout this package runs from, or None outside a git checkout."""
    here = osp.dirname(osp.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def per_class_accuracy(y_true: Sequence[int], y_pred: Sequence[int], lab2cname: Dict[int, str]) -> Dict[str, float]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    out = {}
    for label in np.unique(y_true):
        mask = y_true == label
        out[lab2cname.get(int(label), str(label))] = float(100.0 * np.mean(y_pred[mask] == label))
    return out


def build_record(
    cfg,
    eval_split: str,
    y_true: List[int],
    y_pred: List[int],
    lab2cname: Dict[int, str],
    framework: str,
    wall_time_s: float,
    model_dir: str = "",
    load_epoch: Optional[int] = None,
) -> dict:
    """Everything worth knowing about one evaluation; metrics recomputed from the predictions."""
    # imported here, not at module scope: reading results (parse_test_res.py, the launchers,
    # the sweep) must not pay for importing torch
    import torch


    y_true_arr, y_pred_arr = np.asarray(y_true), np.asarray(y_pred)
    accuracy = float(100.0 * np.mean(y_true_arr == y_pred_arr))
    return {
        "trainer": cfg.TRAINER.NAME,
        "dataset": cfg.DATASET.NAME,
        "split": cfg.DATASET.SUBSAMPLE_CLASSES,
        "eval_split": eval_split,
        "shots": cfg.DATASET.NUM_SHOTS,
        "seed": cfg.SEED,
        "backbone": cfg.MODEL.BACKBONE.NAME,
        "accuracy": accuracy,
        "error": 100.0 - accuracy,
        "macro_f1": 100.0 * macro_f1_score(y_true_arr, y_pred_arr),
        "num_images": len(y_true),
        "num_classes": len(lab2cname),
        "per_class_accuracy": per_class_accuracy(y_true, y_pred, lab2cname),
        "model_dir": model_dir,
        "load_epoch": load_epoch,
        # what an evaluation of this run's model must load: model-best.pth.tar for
        # "best_val", else model.pth.tar-<max_epoch> (read by the protocol launchers)
        "final_model": cfg.TEST.FINAL_MODEL,
        "max_epoch": cfg.OPTIM.MAX_EPOCH,
        "config_hash": config_hash(cfg),
        # read back by the launchers: a folder is done only for the same settings (protocols/identity.py)
        "settings": config_settings(cfg),
        "git_commit": git_commit(),
        "framework": framework,
        "torch_version": torch.__version__,
        "wall_time_s": round(wall_time_s, 3),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def write_result(output_dir: str, record: dict) -> str:
    """Write ``record`` atomically to ``<output_dir>/result.json``; returns the path."""
    path = osp.join(output_dir, RESULT_FILE)
    write_json(record, path, indent=2)
    print(f"Result written to {path}")
    return path


class DamagedRecord(UserError, ValueError):
    """A result.json or run_settings.json that is not a JSON record (cut short, overwritten)."""


def read_result(path: str) -> dict:
    """The record in ``path``; a damaged file is a ``DamagedRecord`` naming it and what to do."""
    try:
        with open(path) as f:
            record = json.load(f)
    except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError
        problem = f"not valid JSON ({' '.join(str(e).split())[:120]})"
    else:
        if isinstance(record, dict):
            return record
        problem = f"not a record (a JSON {type(record).__name__})"
    raise DamagedRecord(
        f"{path} is damaged: {problem}, e.g. a copy cut short. Delete it and rerun the job that wrote it "
        f"(its launcher or sweep runs that folder again)"
    )
