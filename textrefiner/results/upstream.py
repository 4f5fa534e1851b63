"""Runs without ``result.json``: made by the upstream scripts (CoOp, CoCoOp, MaPLe, PromptSRC,
PromptKD) or by this package before it wrote one. What their ``log.txt`` and checkpoints say is
enough to tabulate them and to evaluate their models.
"""
import os
import os.path as osp
import re
from typing import Optional, Tuple

from .logs import END_OF_TRAINING, START_OF_RESULT, best_validation, newest_result

#: the metrics Dassl's evaluator prints, as result.json names them
LOG_METRICS = ("accuracy", "error", "macro_f1")
_CHECKPOINT = re.compile(r"model\.pth\.tar-(\d+)\Z")


def log_record(folder: str, training: bool) -> Optional[dict]:
    """The metrics of the newest log in ``folder`` that holds a result (after ``Finish training``
    for a training run, ``=> result`` for an evaluation), or None."""
    if not osp.isdir(folder):
        return None
    signal = END_OF_TRAINING if training else START_OF_RESULT
    record = {}
    for metric in LOG_METRICS:
        found = newest_result(folder, metric, signal)
        if found is not None:
            record[metric] = found.value
            record["log"] = found.path
    return record if "accuracy" in record else None


def checkpoint_record(folder: str) -> Optional[dict]:
    """What an evaluation of the models saved in ``folder/<model name>/`` must load: the best
    validation model if one was kept, else the last epoch; None without checkpoints."""
    epochs, best = [], False
    for name in os.listdir(folder):
        model_dir = osp.join(folder, name)
        if osp.isdir(model_dir):
            files = os.listdir(model_dir)
            best = best or "model-best.pth.tar" in files
            epochs += [int(m.group(1)) for m in map(_CHECKPOINT.match, files) if m]
    if best:
        return {"final_model": "best_val", "max_epoch": max(epochs, default=None)}
    return {"final_model": "last_step", "max_epoch": max(epochs)} if epochs else None


def upstream_record(folder: str, training: bool) -> Optional[dict]:
    """A finished run without result.json: its log's metrics, and for a training run the model to
    load (None when the log holds no result or a training left no checkpoint)."""
    record = log_record(folder, training)
    if record is None or not training:
        return record
    model = checkpoint_record(folder)
    return None if model is None else {**record, **model}


def promptkd_base2new_records(folder: str) -> Optional[Tuple[dict, dict]]:
    """(Base, Novel) of a base-to-novel training by PromptKD's release scripts (``seed_<S>``, no
    result.json), which scores both halves in one log: every epoch's validation scores the base
    classes' test images against the base half of the teacher's classes and the best one is the model
    kept (Base, as PromptKD reports it), and the final test after ``Finish training`` scores the novel
    classes with that model (Novel). None unless the log holds both."""
    novel = log_record(folder, training=True)
    base = best_validation(novel["log"]) if novel else {}
    if "accuracy" not in base:
        return None
    return {**{k: v for k, v in base.items() if k in LOG_METRICS}, "log": novel["log"]}, novel
