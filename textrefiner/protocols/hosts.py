"""The prompt-learning hosts: the one entry per host that the launchers, the sweep, the demo
and the benchmarks read.

Adding a host (README, "Adding a host"): its modules in ``textrefiner/hosts/<host>.py``; its
config keys, their checks and its trainers ``X`` and ``X_TextRefiner`` in
``textrefiner/trainers/<host>.py``; its YAML files in ``configs/trainers/<Trainer>/``; and one
entry in ``HOSTS`` below.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

from ..teacher_layout import modal, teacher_dir_from_environment


def no_step_opts(kind: str, dataset: str) -> Tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Host:
    name: str
    #: trainer names; the first is what the launchers run unless TRAINER is set
    trainers: Tuple[str, ...]
    #: protocol ("base2new", "xd", "few_shot") -> trainer config name, unless CFG is set
    configs: Dict[str, str]
    #: the host's node under TRAINER (its PREC, TEXT_CHUNK_SIZE, ... keys)
    config_key: str = "COOP"
    #: overrides the shipped configs need on the 2-layer ``random:tiny`` CLIP (demo, quick checks)
    tiny_opts: Tuple[str, ...] = field(default=())
    #: whether ``bash bootstrap.sh demo`` runs its trainers (20-epoch hosts would outgrow its time budget)
    in_demo: bool = True
    #: overrides the offline demo needs besides ``tiny_opts`` (PromptKD: a teacher with seeded prompts, no file)
    demo_opts: Tuple[str, ...] = field(default=())
    #: (step kind, dataset) -> config overrides the protocol sets for this host (the user's come after and win)
    step_opts: Callable[[str, str], Tuple[str, ...]] = no_step_opts
    #: cross-dataset trains one model per target (``xd_train DATASET SEED``) instead of one on ImageNet
    xd_per_target: bool = False
    #: trainer config name for the offline testbed CLIP (``MODEL.BACKBONE.NAME testbed``); "" = none shipped
    testbed_cfg: str = ""

    @property
    def default_trainer(self) -> str:
        return self.trainers[0]


#: PromptKD's release scripts: KD weight 200 for these datasets in base-to-novel, 1000 elsewhere
PROMPTKD_LOW_KD_DATASETS = ("fgvc_aircraft", "oxford_flowers", "dtd")


def promptkd_step_opts(kind: str, dataset: str) -> Tuple[str, ...]:
    """The KD weight per dataset, the teacher of the protocol, and ``$TEACHER_DIR`` when set."""
    low = kind.startswith("base2new") and dataset in PROMPTKD_LOW_KD_DATASETS
    opts = ("TRAINER.PROMPTKD.KD_WEIGHT", "200.0" if low else "1000.0", "TRAINER.PROMPTKD.MODAL", modal(kind))
    teacher_dir = teacher_dir_from_environment()
    return opts + (("TRAINER.PROMPTKD.TEACHER_DIR", teacher_dir) if teacher_dir else ())


HOSTS: Dict[str, Host] = {
    # TextRefiner's release trains CoOp for 10 epochs in every protocol
    "coop": Host(
        name="coop",
        trainers=("CoOp_TextRefiner", "CoOp"),
        configs={"base2new": "vit_b16_ep10_ctxv1", "xd": "vit_b16_ep10_ctxv1", "few_shot": "vit_b16_ep10_ctxv1"},
        config_key="COOP",
        testbed_cfg="testbed_ep10_ctxv1",
    ),
    # CoCoOp's release config (KaiyangZhou/CoOp: base-to-novel and cross-dataset; it ships no few-shot one)
    "cocoop": Host(
        name="cocoop",
        trainers=("CoCoOp", "CoCoOp_TextRefiner"),
        configs={p: "vit_b16_c4_ep10_batch1_ctxv1" for p in ("base2new", "xd", "few_shot")},
        config_key="COCOOP",
        testbed_cfg="testbed_c4_ep10_batch1_ctxv1",
        # batch 1 for 10 epochs (1,920 steps on the testbed) would double the demo's time
        in_demo=False,
    ),
    # MaPLe's release configs; it ships none for few-shot, which uses the base-to-novel one
    "maple": Host(
        name="maple",
        trainers=("MaPLe_TextRefiner", "MaPLe"),
        configs={
            "base2new": "vit_b16_c2_ep5_batch4_2ctx",
            "xd": "vit_b16_c2_ep5_batch4_2ctx_cross_datasets",
            "few_shot": "vit_b16_c2_ep5_batch4_2ctx",
        },
        config_key="MAPLE",
        # the configs prompt 9 layers; random:tiny has 2 (more is an error, not a silent clamp)
        tiny_opts=("TRAINER.MAPLE.PROMPT_DEPTH", "2"),
        testbed_cfg="testbed_c2_ep5_batch4_2ctx",
    ),
    # PromptSRC's release configs (batch 4, lr 0.0025, 20 epochs; cross-dataset depth 3; few-shot 50 epochs).
    # Also the host scripts/promptkd/train_teacher.sh launches (PromptSRC with the teacher config).
    "promptsrc": Host(
        name="promptsrc",
        trainers=("PromptSRC_TextRefiner", "PromptSRC"),
        configs={
            "base2new": "vit_b16_c2_ep20_batch4_4+4ctx",
            "xd": "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets",
            "few_shot": "vit_b16_c2_ep50_batch4_4+4ctx_few_shot",
        },
        config_key="PROMPTSRC",
        tiny_opts=("TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2"),
        in_demo=False,
    ),
    # IVLP: PromptSRC's baseline (one release config, used for every protocol)
    "ivlp": Host(
        name="ivlp",
        trainers=("IVLP",),
        configs={p: "vit_b16_c2_ep20_batch4_4+4ctx" for p in ("base2new", "xd", "few_shot")},
        config_key="IVLP",
        tiny_opts=("TRAINER.IVLP.PROMPT_DEPTH_TEXT", "2", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "2"),
        in_demo=False,
    ),
    # PromptKD's release configs; a student per cross-dataset target, distilled from the ImageNet teacher
    "promptkd": Host(
        name="promptkd",
        trainers=("PromptKD_TextRefiner", "PromptKD"),
        configs={
            "base2new": "vit_b16_c2_ep20_batch8_4+4ctx",
            "xd": "vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets",
            "few_shot": "vit_b16_c2_ep20_batch8_4+4ctx",
        },
        config_key="PROMPTKD",
        # the student and teacher configs prompt 9 layers; the teacher is the wider tiny CLIP
        tiny_opts=("TRAINER.PROMPTKD.TEACHER_NAME", "random:tiny-wide", "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", "2",
                   "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_TEXT", "2",
                   "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_VISION", "2"),
        demo_opts=("TRAINER.PROMPTKD.TEACHER_PROMPTS", "init"),
        step_opts=promptkd_step_opts,
        xd_per_target=True,
    ),
}


#: trainers outside any host that the testbed runs, with their testbed config
TESTBED_EXTRA_CFGS = {"ZeroshotCLIP": "testbed"}


def testbed_cfg(trainer: str) -> str:
    """The testbed config name of ``trainer`` (configs/trainers/<trainer>/<name>.yaml), or "" if none ships."""
    host = host_of(trainer)
    return TESTBED_EXTRA_CFGS.get(trainer, host.testbed_cfg if host else "")


def host_of(trainer: str) -> Optional[Host]:
    """The host whose trainers include ``trainer`` (None for a trainer no host lists)."""
    return next((host for host in HOSTS.values() if trainer in host.trainers), None)


def get_host(name: str) -> Host:
    if name not in HOSTS:
        raise ValueError(f"Unknown host {name!r}; known hosts: {', '.join(HOSTS)} (textrefiner/protocols/hosts.py)")
    return HOSTS[name]

