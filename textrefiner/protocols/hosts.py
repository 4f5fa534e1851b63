"""The prompt-learning hosts the launchers know: their trainers and their config per protocol.

A host plugs into the launchers and the sweep with one entry in ``HOSTS`` (its trainer
names, the first being the default, and the name of the trainer config each protocol
uses, ``configs/trainers/<Trainer>/<cfg>.yaml``) plus five three-line scripts in
``scripts/<host>/`` that call ``scripts/protocol.sh <host> <step>``.
"""
from dataclasses import dataclass
from typing import Dict, Tuple


@dataclass(frozen=True)
class Host:
    name: str
    #: trainer names; the first is what the launchers run unless TRAINER is set
    trainers: Tuple[str, ...]
    #: protocol ("base2new", "xd", "few_shot") -> trainer config name, unless CFG is set
    configs: Dict[str, str]

    @property
    def default_trainer(self) -> str:
        return self.trainers[0]


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
}


def get_host(name: str) -> Host:
    if name not in HOSTS:
        raise ValueError(f"Unknown host {name!r}; known hosts: {', '.join(HOSTS)} (textrefiner/protocols/hosts.py)")
    return HOSTS[name]
