"""Shared fixtures: a tiny random CLIP, the Synthetic dataset, and config/trainer builders.

Everything runs on the CPU in seconds and never touches the network.
"""
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from textrefiner.backbones.openai import import_clip  # noqa: E402
from textrefiner.backbones.resolver import load_clip  # noqa: E402
from textrefiner.config import get_cfg  # noqa: E402
from textrefiner.framework import build_trainer, set_random_seed  # noqa: E402
from textrefiner.run_config import register_plugins  # noqa: E402

register_plugins()

SYNTHETIC_YAML = REPO / "configs" / "datasets" / "synthetic.yaml"
COOP_YAML = REPO / "configs" / "trainers" / "CoOp" / "vit_b16_ep10_ctxv1.yaml"
TINY = "random:tiny"

# Small and fast, otherwise the shipped configs' values.
FAST_OPTS = [
    "MODEL.BACKBONE.NAME", TINY,
    "DATALOADER.NUM_WORKERS", 0,
    "DATALOADER.TRAIN_X.BATCH_SIZE", 8,
    "DATALOADER.TEST.BATCH_SIZE", 16,
    "DATASET.NUM_SHOTS", 4,
    "OPTIM.MAX_EPOCH", 1,
    "TRAIN.PRINT_FREQ", 100,
    "TRAINER.COOP.PREC", "fp32",
]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> str:
    """A dataset root with Synthetic generated once per session."""
    root = tmp_path_factory.mktemp("data")
    cfg = make_cfg(str(root), "CoOp", str(tmp_path_factory.mktemp("gen")))
    from textrefiner.data.synthetic import Synthetic

    Synthetic(cfg)
    return str(root)


def deep_random_clip(seed: int = 0):
    """A random CLIP with 4 layers per tower and different text/vision widths (deep prompts, projections)."""
    torch.manual_seed(seed)
    return import_clip().model.CLIP(
        embed_dim=32, image_resolution=64, vision_layers=4, vision_width=96, vision_patch_size=32,
        context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=4,
    ).eval()


@pytest.fixture(scope="module")
def deep_clip():
    return deep_random_clip()


@pytest.fixture(scope="session")
def tiny_clip():
    return load_clip(TINY)


def make_cfg(root: str, trainer: str, output_dir: str, config_file: Path = COOP_YAML, opts: List = (), seed: int = 1):
    cfg = get_cfg()
    cfg.merge_from_file(str(SYNTHETIC_YAML))
    cfg.merge_from_file(str(config_file))
    cfg.DATASET.ROOT = root
    cfg.OUTPUT_DIR = output_dir
    cfg.SEED = seed
    cfg.TRAINER.NAME = trainer
    cfg.merge_from_list([str(x) for x in [*FAST_OPTS, *opts]])
    cfg.freeze()
    return cfg


def build(cfg):
    """A trainer built exactly as train.py builds it (seed first)."""
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def trainable_state(trainer) -> Dict[str, torch.Tensor]:
    return {
        f"{name}.{k}": v.detach().clone()
        for name in trainer.get_model_names()
        for k, v in trainer._models[name].state_dict().items()
    }


def one_batch(trainer):
    return next(iter(trainer.train_loader_x))


def run_train_py(args: List[str], env: Optional[dict] = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run train.py in a subprocess; fail with its output if it fails."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *map(str, args)],
        cwd=cwd, env=full_env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, f"train.py failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test of tens of seconds (CI runs it; deselect with -m 'not slow')")
