"""The prompt-learning hosts the launchers know: their trainers and their config per protocol.

A host plugs into the launchers and the sweep with one entry in ``HOSTS`` (its trainer
names, the first being the default, the name of the trainer config each protocol
uses, ``configs/trainers/<Trainer>/<cfg>.yaml``, config overrides a step sets per
dataset, and whether cross-dataset trains per target) plus three-line scripts in
``scripts/<host>/`` that call ``scripts/protocol.sh <host> <step>``.
"""
import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple


def no_step_opts(kind: str, dataset: str) -> Tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Host:
    name: str
    #: trainer names; the first is what the launchers run unless TRAINER is set
    trainers: Tuple[str, ...]
    #: protocol ("base2new", "xd", "few_shot") -> trainer config name, unless CFG is set
    configs: Dict[str, str]
    #: (step kind, dataset) -> config overrides the protocol sets for this host (the user's come after and win)
    step_opts: Callable[[str, str], Tuple[str, ...]] = no_step_opts
    #: cross-dataset trains one model per target (``xd_train DATASET SEED``) instead of one on ImageNet
    xd_per_target: bool = False

    @property
    def default_trainer(self) -> str:
        return self.trainers[0]


#: PromptKD's release scripts: KD weight 200 for these datasets in base-to-novel, 1000 elsewhere
PROMPTKD_LOW_KD_DATASETS = ("fgvc_aircraft", "oxford_flowers", "dtd")


def promptkd_step_opts(kind: str, dataset: str) -> Tuple[str, ...]:
    """The KD weight per dataset, the teacher of the protocol, and ``$TEACHER_DIR`` when set."""
    low = kind.startswith("base2new") and dataset in PROMPTKD_LOW_KD_DATASETS
    opts = ("TRAINER.PROMPTKD.KD_WEIGHT", "200.0" if low else "1000.0",
            "TRAINER.PROMPTKD.MODAL", "cross" if kind.startswith("xd") else "base2novel")
    teacher_dir = os.environ.get("TEACHER_DIR")
    return opts + (("TRAINER.PROMPTKD.TEACHER_DIR", teacher_dir) if teacher_dir else ())


HOSTS: Dict[str, Host] = {
    # TextRefiner's release trains CoOp for 10 epochs in every protocol
    "coop": Host(
        name="coop",
        trainers=("CoOp_TextRefiner", "CoOp"),
        configs={"base2new": "vit_b16_ep10_ctxv1", "xd": "vit_b16_ep10_ctxv1", "few_shot": "vit_b16_ep10_ctxv1"},
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
        step_opts=promptkd_step_opts,
        xd_per_target=True,
    ),
}


def host_of(trainer: str) -> Optional[Host]:
    """The host whose trainers include ``trainer`` (None for a trainer no host lists)."""
    return next((host for host in HOSTS.values() if trainer in host.trainers), None)


def get_host(name: str) -> Host:
    if name not in HOSTS:
        raise ValueError(f"Unknown host {name!r}; known hosts: {', '.join(HOSTS)} (textrefiner/protocols/hosts.py)")
    return HOSTS[name]
