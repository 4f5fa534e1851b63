"""A job = the steps of one protocol for one trainer, dataset, shot count and seed, in order.

    base2new   base2new_train, base2new_test                (per dataset)
    xd         xd_train, then xd_test for every target      (one job per seed: one model of the source,
                                                            ImageNet unless another is given)
               or xd_train on each target                   (hosts that train per target: PromptKD)
    few_shot   few_shot                                     (per dataset and shot count)
"""
import os.path as osp
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

from ..results.benchmarks import (
    BASE2NEW_DATASETS, CROSS_DATASET_TARGETS, DOMAIN_GENERALISATION_TARGETS, FEW_SHOT_SHOTS, SHOTS, XD_SOURCE,
)
from .hosts import host_of
from .steps import Setup, Step, base2new_test, base2new_train, few_shot, xd_test, xd_train, xd_train_target


@dataclass(frozen=True)
class Job:
    protocol: str
    setup: Setup
    dataset: str
    shots: int
    seed: int
    steps: Tuple[Step, ...]

    @property
    def name(self) -> str:
        """Unique within an output tree (a tagged job ends in its run tag); used for the job's log file."""
        s = self.setup
        name = f"{self.protocol}-{self.dataset}-shots{self.shots}-{s.trainer}-{s.cfg}-seed{self.seed}"
        return f"{name}-{s.tag}" if s.tag else name

    @property
    def label(self) -> str:
        variant = f" [{self.setup.tag}]" if self.setup.tag else ""
        return f"{self.protocol} {self.dataset} {self.shots}-shot {self.setup.trainer}{variant} seed {self.seed}"

    def status(self) -> str:
        """``done`` (every step has result.json made with its settings), ``other settings`` (a
        folder holds a run made with others: the step would refuse), ``partial`` (something was
        started) or ``todo``."""
        pending = [step for step in self.steps if not step.done]
        if not pending:
            return "done"
        if any(not step.overwrite and step.conflict() for step in pending):
            return "other settings"
        return "partial" if any(osp.isdir(step.output_dir) for step in self.steps) else "todo"


def base2new_jobs(setup: Setup, datasets: Sequence[str], seeds: Sequence[int], shots: Sequence[int]) -> List[Job]:
    return [
        Job("base2new", setup, d, k, s, (base2new_train(setup, d, s, k), base2new_test(setup, d, s, k)))
        for d in datasets for k in shots for s in seeds
    ]


def xd_jobs(setup: Setup, datasets: Sequence[str], seeds: Sequence[int], shots: Sequence[int],
            source: str = XD_SOURCE) -> List[Job]:
    """``datasets`` are the targets; every job trains on ``source`` (ImageNet unless given) first, or,
    for a host that trains per target (PromptKD), one job per target trains on it."""
    host = host_of(setup.trainer)
    if host and host.xd_per_target:
        check_source(host, source)
        untrainable = [d for d in datasets if d in DOMAIN_GENERALISATION_TARGETS]
        if untrainable:
            print(f"{setup.trainer}: skipping {', '.join(untrainable)} (test-only datasets: a per-target student "
                  "needs the target's training images)")
        return [
            Job("xd", setup, d, k, s, (xd_train_target(setup, d, s, k),))
            for d in datasets if d not in untrainable for k in shots for s in seeds
        ]
    return [
        Job("xd", setup, source, k, s,
            (xd_train(setup, s, k, source), *(xd_test(setup, d, s, k, source) for d in datasets)))
        for k in shots for s in seeds
    ]


def check_source(host, source: str) -> None:
    """A host that trains one student per target distils from the ImageNet teacher: no other source."""
    if host.xd_per_target and source != XD_SOURCE:
        raise ValueError(f"{host.name} trains one student per cross-dataset target with the {XD_SOURCE} teacher: "
                         f"a source other than {XD_SOURCE} ({source}) is for the hosts that train one source "
                         f"model; unset SOURCE (launchers) or drop --source (sweep)")


def few_shot_jobs(setup: Setup, datasets: Sequence[str], seeds: Sequence[int], shots: Sequence[int]) -> List[Job]:
    return [
        Job("few_shot", setup, d, k, s, (few_shot(setup, d, k, s),)) for d in datasets for k in shots for s in seeds
    ]


PROTOCOLS: Dict[str, Callable[..., List[Job]]] = {
    "base2new": base2new_jobs, "xd": xd_jobs, "few_shot": few_shot_jobs,
}
#: the paper's grid per protocol, used when a sweep names no datasets or shots
DEFAULT_DATASETS = {
    "base2new": BASE2NEW_DATASETS,
    "xd": CROSS_DATASET_TARGETS + DOMAIN_GENERALISATION_TARGETS,
    "few_shot": BASE2NEW_DATASETS,
}
DEFAULT_SHOTS = {"base2new": (SHOTS,), "xd": (SHOTS,), "few_shot": FEW_SHOT_SHOTS}
