"""Each run's health, from its ``result.json``: runs that learned nothing or diverged, a student
that stopped following its teacher, a seed far from the others. A flagged run stays in the
tables' means (dropping it would be choosing seeds), but every table and the report list it.

PromptKD's users report seeds whose model-best is epoch 1 (a loss blown up by lr x KD weight) and
base/novel swings of 20 points between seeds (zhengli97/PromptKD issues 7 and 22): these checks
are for such runs, on every trainer.
"""
import math
import statistics
from dataclasses import dataclass
from typing import Dict, List, Sequence

from ..results.collect import Run
from ..results.tables import Summary

#: a seed more than this many points from the median of its cell's other seeds is an outlier
OUTLIER_POINTS = 10.0
#: a last epoch's mean loss above this many times the first's: the loss rose over training
LOSS_ROSE = 1.1


@dataclass(frozen=True)
class Flag:
    method: str
    dataset: str
    seed: int
    what: str

    def text(self) -> str:
        return f"{self.method}, {self.dataset}, seed {self.seed}: {self.what}"


def run_flags(run: Run, method: str) -> List[str]:
    """What is wrong with one training run (empty: nothing seen)."""
    record = run.record
    flags = []
    curve = record.get("training_curve") or []
    losses = [e.get("loss") for e in curve if e.get("loss") is not None]
    if any(not math.isfinite(x) for x in losses):
        flags.append("a non-finite training loss")
    elif len(losses) >= 2 and losses[-1] > LOSS_ROSE * losses[0]:
        flags.append(f"training loss rose: epoch 1 mean {losses[0]:.4g} -> epoch {len(losses)} {losses[-1]:.4g}")
    best, epochs = record.get("best_epoch"), record.get("max_epoch") or 0
    if best == 1 and epochs >= 3:
        flags.append(f"model-best from epoch 1 of {epochs}: nothing learned after the first epoch")
    agreement = [e["teacher_agreement"] for e in curve if e.get("teacher_agreement") is not None]
    if len(agreement) >= 2 and agreement[-1] < agreement[0] - 5:
        flags.append(f"teacher agreement fell: {agreement[0]:.1f}% -> {agreement[-1]:.1f}%")
    return flags


def training_flags(runs: Sequence[Run], labels: Dict[tuple, str]) -> List[Flag]:
    """Flags of the training runs among ``runs`` (``labels``: (trainer, cfg) or the run's method -> label)."""
    flags = []
    for run in runs:
        if not run.record.get("training_curve") and not run.record.get("best_epoch"):
            continue
        method = labels.get(run.method, run.key.trainer)
        if run.key.tag:
            method = f"{method} [{run.key.tag}]"
        flags += [Flag(method, run.key.dataset, run.key.seed, what) for what in run_flags(run, method)]
    return flags


def outlier_flags(summary: Summary) -> List[Flag]:
    """Seeds of a cell (3 or more) more than ``OUTLIER_POINTS`` from the median of the cell's others."""
    flags = []
    for (method, row, column), values in sorted(summary.seed_values.items()):
        if len(values) < 3:
            continue
        for seed, value in sorted(values.items()):
            others = statistics.median(v for s, v in values.items() if s != seed)
            if abs(value - others) > OUTLIER_POINTS:
                flags.append(Flag(method, row, seed, f"{column} {value:.2f}, {value - others:+.2f} from the "
                                                     f"median of the other seeds ({others:.2f})"))
    return flags


def teacher_agreement(runs: Sequence[Run]) -> Dict[tuple, float]:
    """(trainer, dataset, seed) -> the last epoch's mean teacher agreement of distilled runs."""
    out = {}
    for run in runs:
        curve = run.record.get("training_curve") or []
        if curve and curve[-1].get("teacher_agreement") is not None:
            out[(run.key.trainer, run.key.dataset, run.key.seed)] = curve[-1]["teacher_agreement"]
    return out
