"""A sweep's settings: from a YAML file, then command-line flags on top; and the job grid they define.

Every key (all optional):

    protocol: base2new            # base2new | xd | few_shot
    host: coop                    # textrefiner/protocols/hosts.py
    trainers: [CoOp, CoOp_TextRefiner]   # default: all of the host's
    cfg: vit_b16_ep10_ctxv1       # trainer config name; default: the host's for the protocol
    datasets: [caltech101, dtd]   # xd: the targets; default: the paper's datasets
    seeds: [1, 2, 3]
    shots: [16]                   # few_shot default: [1, 2, 4, 8, 16]
    data: data                    # dataset root (default: $DATA or ./data)
    output: output                # output root (default: $OUTPUT or ./output)
    opts: {OPTIM.MAX_EPOCH: 2}    # train.py KEY VALUE overrides (a mapping or a flat list)
    tag: ep2                      # run tag: these settings get their own folder, <cfg>/<tag>/seed<S>
    overwrite: false              # true: replace runs made with other settings (deletes their folders)
    executor: local               # local | submitit-local | slurm
    gpus: [0, 1]                  # local: one job per listed GPU at a time
    slurm: {slurm_partition: gpu, timeout_min: 600}   # submitit AutoExecutor parameters
    log_dir: output/sweep_logs    # per-job logs and sweep_report.json (default: <output>/sweep_logs)
    compare: [CoOp, CoOp_TextRefiner]   # the final table: A and B side by side, with B-A; default
                                  # with two trainers: the baseline as A, its TextRefiner variant as B
"""
import os
import os.path as osp
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

import yaml

from ..protocols import DEFAULT_DATASETS, DEFAULT_SHOTS, PROTOCOLS, Job, Setup, get_host
from ..results.benchmarks import SEEDS, paper_order


@dataclass
class SweepSettings:
    protocol: str = "base2new"
    host: str = "coop"
    trainers: Optional[List[str]] = None
    cfg: Optional[str] = None
    datasets: Optional[List[str]] = None
    seeds: List[int] = field(default_factory=lambda: list(SEEDS))
    shots: Optional[List[int]] = None
    data: str = field(default_factory=lambda: os.environ.get("DATA") or "data")
    output: str = field(default_factory=lambda: os.environ.get("OUTPUT") or "output")
    opts: List[str] = field(default_factory=list)
    tag: str = ""
    overwrite: bool = False
    executor: str = "local"
    gpus: List[str] = field(default_factory=list)
    slurm: Dict[str, Any] = field(default_factory=dict)
    log_dir: Optional[str] = None
    compare: Optional[List[str]] = None

    def update(self, values: Dict[str, Any], source: str) -> "SweepSettings":
        """Set the given keys (None values are ignored); unknown keys fail naming the known ones."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown sweep keys {unknown}; known: {sorted(known)}")
        for key, value in values.items():
            if value is not None:
                setattr(self, key, _flat_opts(value) if key == "opts" else value)
        return self

    def resolve(self) -> "SweepSettings":
        """Fill the defaults that depend on the protocol and host; check the choices."""
        if self.gpus and self.executor != "local":
            raise ValueError("gpus is for the local executor; on SLURM ask for GPUs with slurm: {gpus_per_node: 1}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {self.protocol!r}")
        host = get_host(self.host)
        self.trainers = list(self.trainers or host.trainers)
        self.cfg = self.cfg or host.configs[self.protocol]
        self.datasets = list(self.datasets or DEFAULT_DATASETS[self.protocol])
        self.shots = [int(k) for k in self.shots or DEFAULT_SHOTS[self.protocol]]
        self.seeds = [int(s) for s in self.seeds]
        self.gpus = [str(g) for g in self.gpus]
        self.log_dir = self.log_dir or osp.join(self.output, "sweep_logs")
        if self.compare is None and len(self.trainers) == 2:
            # the baseline first (A) and its TextRefiner variant second (B), whatever order the
            # trainers run in (the host lists CoOp_TextRefiner first): B-A is TextRefiner's gain
            self.compare = sorted(self.trainers, key=lambda t: t.endswith("_TextRefiner"))
        return self

    def jobs(self) -> List[Job]:
        """The grid, ordered so that all trainers of a (dataset, shots, seed) run one after another."""
        jobs = []
        for trainer in self.trainers:
            setup = Setup(trainer, self.cfg, self.data, self.output, tuple(self.opts), str(self.tag or ""),
                          bool(self.overwrite))
            jobs += PROTOCOLS[self.protocol](setup, self.datasets, self.seeds, self.shots)
        order = {d: i for i, d in enumerate(paper_order(j.dataset for j in jobs))}
        return sorted(jobs, key=lambda j: (order[j.dataset], j.shots, j.seed))  # stable: trainer order kept


def _flat_opts(opts) -> List[str]:
    if isinstance(opts, dict):
        return [str(x) for pair in opts.items() for x in pair]
    return [str(x) for x in opts]


def load_yaml(path: str) -> Dict[str, Any]:
    with open(path) as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a sweep file is a mapping of keys (see textrefiner/sweep/settings.py)")
    return values
