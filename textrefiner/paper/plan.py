"""What each of the paper's artifacts runs, in each world: the sweeps (one per host and trainer
config) behind Tables 1-2 and the ablations, with the paper's datasets, seeds, shots and configs
on real data, or the testbed's on the offline testbed.

A ``Group`` is one sweep (``textrefiner.sweep``): its settings are built here and nothing else, so
a rerun of the paper command finds the same run folders and skips what is finished. Every world
writes its runs under one root (``World.runs``), laid out as the launchers lay them out, so
``parse_test_res.py`` reads them too.
"""
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import yaml

from ..errors import UserError
from ..protocols.hosts import get_host
from ..results.benchmarks import (
    BASE2NEW_DATASETS, DOMAIN_GENERALISATION_TARGETS, SEEDS, TESTBED_DG_TARGETS, TESTBED_XD_SOURCE, XD_SOURCE,
)
from ..sweep.settings import SweepSettings

#: every artifact, in the paper's order; ``all`` means these
ARTIFACTS = ("table1", "table2", "fig3", "table3", "table4", "fig4", "fig5")
#: the ablations: their sweep file (the variants) under configs/sweeps/
ABLATIONS = {name: f"ablation_testbed_{name}.yaml" for name in ("table3", "table4", "fig4", "fig5")}
#: seeds a verdict needs at least (a paired 95% interval over fewer is too wide to exclude zero on
#: the testbed: docs/paper.md) and the testbed's default
VERDICT_SEEDS = 5
TESTBED_SEEDS = (1, 2, 3, 4, 5)
TESTBED_DATASETS = ("testbed_shapes", "testbed_patterns")
#: --quick: one seed, one epoch, one dataset per protocol; a first look and the CI check, no verdicts
QUICK_SEEDS = (1,)
QUICK_OPTS = ("OPTIM.MAX_EPOCH", "1")

#: (trainer group, host, trainers) of each table, in the paper's row order; ZeroshotCLIP's host
#: only places its runs (it trains nothing)
TABLE1_GROUPS = (
    ("coop", ("ZeroshotCLIP",)),
    ("coop", ("CoOp", "CoOp_TextRefiner")),
    ("cocoop", ("CoCoOp", "CoCoOp_TextRefiner")),
    ("maple", ("MaPLe", "MaPLe_TextRefiner")),
    ("promptsrc", ("PromptSRC",)),
    ("promptkd", ("PromptKD", "PromptKD_TextRefiner")),
)
TABLE2_GROUPS = (
    ("coop", ("ZeroshotCLIP",)),
    ("cocoop", ("CoCoOp", "CoCoOp_TextRefiner")),
    ("promptsrc", ("PromptSRC",)),
    ("coop", ("CoOp", "CoOp_TextRefiner")),
    ("maple", ("MaPLe", "MaPLe_TextRefiner")),
)
#: rows of ours that neither of the paper's tables has (CoCoOp is a baseline there, without TextRefiner):
#: run and tabulated only with --cocoop-textrefiner (``World.cocoop_textrefiner``). On the testbed they
#: are batch-1 runs (the release's CoCoOp recipe), about 7 minutes of a 3-seed Tables 1-2 on 2 cores.
NOT_IN_THE_PAPER = ("CoCoOp_TextRefiner",)
#: the host trainers and their TextRefiner variants the claims pair up (without, with)
PAIRS = (("CoOp", "CoOp_TextRefiner"), ("CoCoOp", "CoCoOp_TextRefiner"), ("MaPLe", "MaPLe_TextRefiner"),
         ("PromptKD", "PromptKD_TextRefiner"))
#: the real world's zero-shot config (the testbed's is the trainer's testbed config)
ZEROSHOT_CFG = "vit_b16"


@dataclass(frozen=True)
class World:
    """Where the artifacts run: the testbed (``data`` is where its datasets are generated) or real
    data under ``data`` with OpenAI's CLIP."""

    name: str  # "testbed" or "real"
    data: str
    runs: str
    seeds: Tuple[int, ...]
    quick: bool = False
    #: extra train.py overrides for every run (e.g. MODEL.BACKBONE.PATH on a machine without network)
    opts: Tuple[str, ...] = ()
    #: also the rows in NOT_IN_THE_PAPER (CoCoOp_TextRefiner) in Tables 1-2
    cocoop_textrefiner: bool = False

    @property
    def testbed(self) -> bool:
        return self.name == "testbed"


def make_world(data: Optional[str], out: str, seeds: Optional[Sequence[int]], quick: bool,
               runs: Optional[str] = None, opts: Sequence[str] = (), cocoop_textrefiner: bool = False) -> World:
    """The testbed unless ``data`` names a dataset root; runs under ``runs`` (default
    ``<out>/runs``, ``<out>/runs_quick`` for --quick: other settings, so other folders)."""
    name = "real" if data else "testbed"
    default_seeds = QUICK_SEEDS if quick else (TESTBED_SEEDS if name == "testbed" else SEEDS)
    runs = runs or osp.join(out, "runs_quick" if quick else "runs")
    data = data or os.environ.get("DATA") or "data"
    return World(name, data, runs, tuple(int(s) for s in (seeds or default_seeds)), quick, tuple(opts),
                 cocoop_textrefiner)


def table_rows(world: World, table_groups) -> List[Tuple[str, Tuple[str, ...]]]:
    """``TABLE1_GROUPS`` or ``TABLE2_GROUPS`` as this world runs them: without the trainers in
    NOT_IN_THE_PAPER unless it asks for them."""
    rows = []
    for host, trainers in table_groups:
        kept = tuple(t for t in trainers if world.cocoop_textrefiner or t not in NOT_IN_THE_PAPER)
        if kept:
            rows.append((host, kept))
    return rows


@dataclass
class Group:
    """One sweep of an artifact: ``settings`` resolved; ``teachers``: PromptKD's teacher steps first."""

    artifact: str
    settings: SweepSettings
    needs_teachers: bool = False

    @property
    def label(self) -> str:
        s = self.settings
        what = ", ".join(s.trainers) + (f" x {len(s.variants)} variants" if s.variants else "")
        return f"{self.artifact}: {s.protocol} {what} ({s.cfg})"


def trainer_cfg(world: World, host: str, trainers: Sequence[str], protocol: str) -> str:
    """The trainer config of a group: the testbed's (one per host; PromptSRC's is the testbed teacher's,
    so the teacher runs are its Table 1 rows) or the host's release config."""
    from ..protocols.hosts import testbed_cfg
    from ..protocols.teacher import TESTBED_PROMPTKD_CFG, TESTBED_TEACHER_CFG

    if world.testbed:
        cfg = {"promptsrc": TESTBED_TEACHER_CFG, "promptkd": TESTBED_PROMPTKD_CFG}.get(host) or testbed_cfg(trainers[0])
        if not cfg:
            raise UserError(f"{trainers[0]} has no testbed config (configs/trainers/{trainers[0]}/testbed*.yaml): "
                            "the testbed cannot run it")
        return cfg
    if trainers == ("ZeroshotCLIP",):
        return ZEROSHOT_CFG
    return get_host(host).configs[protocol]


def _settings(world: World, protocol: str, host: str, trainers: Sequence[str], datasets: Sequence[str],
              source: Optional[str] = None, variants: Optional[Dict[str, List[str]]] = None,
              shared: bool = False) -> SweepSettings:
    opts = list(world.opts) + (list(QUICK_OPTS) if world.quick else [])
    values = {"protocol": protocol, "host": host, "trainers": list(trainers),
              "cfg": trainer_cfg(world, host, tuple(trainers), protocol), "datasets": list(datasets),
              "seeds": list(world.seeds), "data": world.data, "output": world.runs,
              "log_dir": osp.join(world.runs, "sweep_logs")}
    if source:
        values["source"] = source
    if opts:
        values["opts"] = opts
    if variants:
        values["variants"] = variants
    settings = SweepSettings().update(values, "the paper command")
    if shared and hasattr(settings, "shared"):
        settings.shared = True
    return settings.resolve()


def table1_datasets(world: World) -> Tuple[str, ...]:
    datasets = TESTBED_DATASETS if world.testbed else BASE2NEW_DATASETS
    return datasets[:1] if world.quick else datasets


def table1_groups(world: World) -> List[Group]:
    return [Group("table1", _settings(world, "base2new", host, trainers, table1_datasets(world)), host == "promptkd")
            for host, trainers in table_rows(world, TABLE1_GROUPS)]


def table2_source_targets(world: World) -> Tuple[str, Tuple[str, ...]]:
    if world.testbed:
        return TESTBED_XD_SOURCE, TESTBED_DG_TARGETS
    return XD_SOURCE, DOMAIN_GENERALISATION_TARGETS


def table2_groups(world: World) -> List[Group]:
    source, targets = table2_source_targets(world)
    return [Group("table2", _settings(world, "xd", host, trainers, targets, source=source))
            for host, trainers in table_rows(world, TABLE2_GROUPS)]


def ablation_variants(artifact: str) -> Dict[str, List[str]]:
    """The variants of an ablation, from its sweep file (the one place they are written)."""
    from ..resources import config_path

    path = config_path("sweeps", ABLATIONS[artifact])
    with open(path) as f:
        values = yaml.safe_load(f)
    return SweepSettings().update({"variants": values["variants"]}, path).variants


def ablation_datasets(world: World) -> Tuple[str, ...]:
    """The paper ran its ablations on ImageNet; the testbed on both of its datasets."""
    datasets = TESTBED_DATASETS if world.testbed else ("imagenet",)
    return datasets[:1] if world.quick else datasets


def ablation_groups(world: World, artifact: str) -> List[Group]:
    return [Group(artifact, _settings(world, "base2new", "coop", ("CoOp_TextRefiner",), ablation_datasets(world),
                                      variants=ablation_variants(artifact), shared=True))]


def groups(world: World, artifacts: Sequence[str]) -> List[Group]:
    """Every sweep the artifacts need, in order (Figure 3 runs no sweep)."""
    out: List[Group] = []
    for artifact in artifacts:
        if artifact == "table1":
            out += table1_groups(world)
        elif artifact == "table2":
            out += table2_groups(world)
        elif artifact in ABLATIONS:
            out += ablation_groups(world, artifact)
    return out


def expand(artifacts: Sequence[str]) -> List[str]:
    """``all`` -> every artifact; each named once, in the paper's order; an unknown one refused."""
    names = set()
    for a in artifacts:
        if a == "all":
            names.update(ARTIFACTS)
        elif a in ARTIFACTS:
            names.add(a)
        else:
            raise UserError(f"unknown artifact {a!r}: choose from {', '.join(ARTIFACTS)} or all")
    return [a for a in ARTIFACTS if a in names]


@dataclass
class Plan:
    world: World
    artifacts: List[str]
    groups: List[Group] = field(default_factory=list)


#: real data: one PromptKD teacher per dataset, as the release ships them, trained with this seed
TEACHER_SEED = 1


def teacher_dir(world: World) -> str:
    """Where the paper command's teachers go: beside its runs, never the user's default teacher folder.
    The testbed trains a teacher per dataset and seed (``{seed}``: the student's seed spread includes
    its teacher's, and the teacher runs are PromptSRC's rows); real data one per dataset (the release's)."""
    from ..protocols.teacher import TESTBED_TEACHER_DIR

    return osp.abspath(osp.join(world.runs, TESTBED_TEACHER_DIR if world.testbed else "teachers"))


def teacher_steps(the_plan: "Plan") -> list:
    """The teacher steps (PromptSRC, written where PromptKD reads them) of every dataset a PromptKD group
    of the plan runs on: the release's ViT-L/14 teacher config on real data, the testbed's on the testbed."""
    from ..protocols.steps import Setup
    from ..protocols.teacher import TEACHER_CFG, TEACHER_TRAINER, TESTBED_TEACHER_CFG, train_teacher

    world = the_plan.world
    datasets = sorted({d for g in the_plan.groups if g.needs_teachers for d in g.settings.datasets})
    if not datasets:
        return []
    opts = tuple(world.opts) + (QUICK_OPTS if world.quick else ())
    setup = Setup(TEACHER_TRAINER, TESTBED_TEACHER_CFG if world.testbed else TEACHER_CFG, world.data, world.runs, opts)
    seeds = world.seeds if world.testbed else (TEACHER_SEED,)
    return [train_teacher(setup, d, seed, teacher_dir=teacher_dir(world)) for d in datasets for seed in seeds]
