"""Adding a host takes one host module, one trainer module (its config keys, their checks and its
trainers) and its configs: a toy host written from outside the package in five files registers,
keeps every shared promise (``host_promises.py``), and its keys are checked by train.py."""
import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from host_promises import PROMISES, Case, textrefiner_off_is_the_host_exactly
from test_bad_inputs import SYNTHETIC_YAML, TINY
from textrefiner import config as config_module
from textrefiner.cli.train import main
from textrefiner.framework import TRAINER_REGISTRY

#: the whole host: a learnable shift of CoOp's class text features (a stand-in for a new method)
FILES = {
    "toyhost/__init__.py": "from . import trainer  # noqa: F401  (registers the trainers and TRAINER.TOY)\n",
    "toyhost/model.py": '''
        """The toy host's modules: CoOp's prompts plus a learnable shift of the class text features."""
        import torch
        import torch.nn as nn

        from textrefiner.hosts.coop import CoOpCLIP


        class TextShift(nn.Module):
            def __init__(self, dim: int):
                super().__init__()
                self.shift = nn.Parameter(torch.zeros(dim))


        class ShiftedCoOpCLIP(CoOpCLIP):
            def __init__(self, prompt_learner, clip_model, text_shift: TextShift):
                super().__init__(prompt_learner, clip_model)
                self.text_shift = text_shift

            def text_features(self):
                features = super().text_features() + self.text_shift.shift.to(self.logit_scale.dtype)
                return features / features.norm(dim=-1, keepdim=True)
        ''',
    "toyhost/trainer.py": '''
        """Toy and Toy_TextRefiner, with the TRAINER.TOY keys and their checks."""
        from yacs.config import CfgNode as CN

        from textrefiner.config import ConfigPart, register_config_part
        from textrefiner.framework import register_trainer
        from textrefiner.hosts.coop import PromptLearner
        from textrefiner.precision import PRECISIONS
        from textrefiner.trainers.base import PromptTrainer
        from textrefiner.trainers.textrefiner import TextRefinerMixin

        from .model import ShiftedCoOpCLIP, TextShift


        def add_toy_config(cfg: CN) -> None:
            cfg.TRAINER.TOY = CN()
            cfg.TRAINER.TOY.N_CTX = 4  # learnable context tokens
            cfg.TRAINER.TOY.PREC = "fp16"  # as TRAINER.COOP.PREC


        register_config_part(ConfigPart("TRAINER.TOY", add_toy_config, choices={"TRAINER.TOY.PREC": PRECISIONS},
                                        minimums={"TRAINER.TOY.N_CTX": (1, "context tokens")}))


        @register_trainer
        class Toy(PromptTrainer):
            host_key = "TOY"

            def build_host(self, clip_model):
                prompt_learner = PromptLearner(self.dm.dataset.classnames, clip_model, n_ctx=self.host_cfg.N_CTX)
                shift = TextShift(clip_model.text_projection.shape[1])
                self.model = ShiftedCoOpCLIP(prompt_learner, clip_model, shift)
                return {"prompt_learner": prompt_learner, "text_shift": shift}


        @register_trainer
        class Toy_TextRefiner(TextRefinerMixin, Toy):
            pass
        ''',
    "toyhost/configs/Toy/toy.yaml": '''
        OPTIM:
          NAME: "sgd"
          LR: 0.02
          MAX_EPOCH: 1
          LR_SCHEDULER: "cosine"
        TRAINER:
          TOY:
            N_CTX: 4
        ''',
}
FILES["toyhost/configs/Toy_TextRefiner/toy.yaml"] = FILES["toyhost/configs/Toy/toy.yaml"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy package imported from a temporary folder; the registries are as before afterwards."""
    root = tmp_path_factory.mktemp("toy")
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).lstrip())
    parts, trainers = dict(config_module._PARTS), dict(TRAINER_REGISTRY._obj_map)
    sys.path.insert(0, str(root))
    try:
        importlib.import_module("toyhost")
        yield root / "toyhost"
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "toyhost" or m.startswith("toyhost.")]:
            del sys.modules[name]
        config_module._PARTS.clear()
        config_module._PARTS.update(parts)
        TRAINER_REGISTRY._obj_map.clear()
        TRAINER_REGISTRY._obj_map.update(trainers)


def cases(package: Path):
    return [Case(name, package / "configs" / name / "toy.yaml", host_key="TOY") for name in ("Toy", "Toy_TextRefiner")]


def test_a_host_is_five_files(toy):
    assert len([p for p in toy.rglob("*") if p.is_file() and "__pycache__" not in p.parts]) == 5


@pytest.mark.parametrize("promise", PROMISES, ids=[p.__name__ for p in PROMISES])
@pytest.mark.parametrize("which", [0, 1], ids=["Toy", "Toy_TextRefiner"])
def test_the_toy_host_keeps_every_shared_promise(toy, promise, which, data_root, tmp_path):
    promise(cases(toy)[which], data_root, tmp_path)


def test_the_toy_textrefiner_switched_off_is_the_toy_host(toy, data_root, tmp_path):
    textrefiner_off_is_the_host_exactly(cases(toy)[1], data_root, tmp_path)


def test_train_py_checks_the_toy_keys(toy, data_root, tmp_path, capsys):
    argv = ["--root", data_root, "--trainer", "Toy", "--dataset-config-file", SYNTHETIC_YAML, "--config-file",
            toy / "configs" / "Toy" / "toy.yaml", "--output-dir", tmp_path / "out", "MODEL.BACKBONE.NAME", TINY,
            "TRAINER.TOY.N_CTX", 0]
    with pytest.raises(SystemExit):
        main([str(a) for a in argv])
    assert "Error: TRAINER.TOY.N_CTX (context tokens) must be a whole number >= 1, got 0" in capsys.readouterr().err
