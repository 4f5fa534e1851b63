"""The prompt-learning hosts: the one entry per host that the launchers, the sweep, the demo
and the benchmarks read.

Adding a host (README, "Adding a host"): its modules in ``textrefiner/hosts/<host>.py``; its
trainers in ``textrefiner/trainers/`` (``@register_trainer``, imported by the package's
``__init__``); its keys as an ``add_<host>_config`` in ``textrefiner/config.py``, listed in
``CONFIG_PARTS``; its YAML files in ``configs/trainers/<Trainer>/``; one entry in ``HOSTS``
below; and the launchers ``scripts/<host>/*.sh``, each one line calling
``scripts/protocol.sh <host> <step>``.
"""
from dataclasses import dataclass, field
from typing import Dict, Tuple


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

    @property
    def default_trainer(self) -> str:
        return self.trainers[0]


HOSTS: Dict[str, Host] = {
    # TextRefiner's release trains CoOp for 10 epochs in every protocol
    "coop": Host(
        name="coop",
        trainers=("CoOp_TextRefiner", "CoOp"),
        configs={"base2new": "vit_b16_ep10_ctxv1", "xd": "vit_b16_ep10_ctxv1", "few_shot": "vit_b16_ep10_ctxv1"},
        config_key="COOP",
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
}


def get_host(name: str) -> Host:
    if name not in HOSTS:
        raise ValueError(f"Unknown host {name!r}; known hosts: {', '.join(HOSTS)} (textrefiner/protocols/hosts.py)")
    return HOSTS[name]


def host_of(trainer: str) -> Host:
    """The host whose trainers include ``trainer``."""
    for host in HOSTS.values():
        if trainer in host.trainers:
            return host
    known = ", ".join(t for h in HOSTS.values() for t in h.trainers)
    raise ValueError(f"No host lists trainer {trainer!r}; known: {known} (textrefiner/protocols/hosts.py)")
