"""TextRefiner in a trainer the user wrote (docs/own-trainer.md, linked from the README): the
page's example runs as written inside a temporary checkout (its ``dassl`` imports served by a
stand-in package that re-exports this project's built-in engine), trains, saves, loads and
evaluates; and ``TextRefinerPlugin`` with TextRefiner off passes the user's model through."""
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from conftest import REPO, SYNTHETIC_YAML, TINY, make_cfg
from textrefiner.resources import PACKAGE_PARENT

USER_CHECKOUT = Path(__file__).parent / "fixtures" / "user_checkout"
TR_YAML = REPO / "configs" / "trainers" / "CoOp_TextRefiner" / "vit_b16_ep10_ctxv1.yaml"

# Dassl's modules the example imports, as the built-in engine provides them (a stand-in: no Dassl here)
DASSL_STANDIN = {
    "dassl/__init__.py": "",
    "dassl/engine/__init__.py": "from textrefiner.framework import TRAINER_REGISTRY, TrainerX  # noqa: F401\n",
    "dassl/optim/__init__.py": "from textrefiner.framework import build_lr_scheduler, build_optimizer  # noqa: F401\n",
}


def docs_example() -> str:
    text = (REPO / "docs" / "own-trainer.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- own-trainer-example:start -->\n```python\n(.*?)```\n<!-- own-trainer-example:end -->",
                      text, re.S)
    assert block, "docs/own-trainer.md lost its own-trainer example block"
    return block.group(1)


def make_checkout(tmp_path: Path) -> Path:
    import shutil

    checkout = tmp_path / "MyMethod"
    shutil.copytree(USER_CHECKOUT, checkout)
    (checkout / "trainers" / "my_coop.py").write_text(docs_example(), encoding="utf-8")
    with open(checkout / "trainers" / "__init__.py", "a", encoding="utf-8") as f:
        f.write("from . import my_coop  # noqa: F401,E402\n")
    for rel, body in DASSL_STANDIN.items():
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text(body, encoding="utf-8")
    return checkout


def run(checkout: Path, data_root: str, out: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT, "TEXTREFINER_FRAMEWORK": "builtin"}
    cmd = [sys.executable, "train.py", "--root", data_root, "--output-dir", str(out), "--trainer", "MyCoOp",
           "--dataset-config-file", str(SYNTHETIC_YAML), "--config-file", str(TR_YAML), *flags,
           "MODEL.BACKBONE.NAME", TINY, "DATALOADER.NUM_WORKERS", "0", "DATASET.NUM_SHOTS", "2",
           "OPTIM.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_FREQ", "1", "DATALOADER.TEST.BATCH_SIZE", "32"]
    proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def accuracy(stdout: str) -> float:
    found = re.findall(r"\* accuracy: ([\d.]+)%", stdout)
    assert found, stdout[-2000:]
    return float(found[-1])


def test_the_docs_example_trains_saves_loads_and_evaluates(data_root, tmp_path):
    checkout = make_checkout(tmp_path)
    out = tmp_path / "out"
    trained = run(checkout, data_root, out)
    saved = {epoch: torch.load(out / "textrefiner" / f"model.pth.tar-{epoch}", weights_only=False)["state_dict"]
             for epoch in (1, 2)}
    assert (out / "prompt_learner" / "model.pth.tar-2").is_file()
    # the head is checkpointed with its cache, and both move between epochs: the head trains, the cache fills
    assert "cache.entries" in saved[2] and "aggregation.linear.weight" in saved[2]
    assert not torch.equal(saved[1]["cache.entries"], saved[2]["cache.entries"])
    assert not torch.equal(saved[1]["aggregation.linear.weight"], saved[2]["aggregation.linear.weight"])
    # a second process loads both modules and evaluates them to the trained run's accuracy
    evaluated = run(checkout, data_root, tmp_path / "eval", "--eval-only", "--model-dir", str(out), "--load-epoch", "2")
    assert "textrefiner" in evaluated.stdout and accuracy(evaluated.stdout) == accuracy(trained.stdout)


def test_the_plugin_switched_off_passes_the_users_model_through(data_root, tmp_path, tiny_clip):
    from textrefiner.api import TextRefinerPlugin

    cfg = make_cfg(data_root, "CoOp_TextRefiner", str(tmp_path), TR_YAML, ["TRAINER.TEXTREFINER.ENABLED", False])
    plugin = TextRefinerPlugin(cfg, tiny_clip)
    registered = []
    plugin.register(type("T", (), {"register_model": lambda self, *a: registered.append(a)})())
    image, text = torch.randn(2, 3, 224, 224), torch.nn.functional.normalize(torch.randn(5, 64), dim=-1)
    with torch.no_grad():
        visual = plugin.encode_image(image)
        torch.testing.assert_close(visual.global_feature, tiny_clip.encode_image(image), rtol=1e-5, atol=1e-5)
    assert not plugin.enabled and not registered and visual.tokens is None
    assert plugin.refine(text) is text and plugin.training_losses(text, visual, torch.tensor([0, 1]), 1.0) == (text, {})


def test_the_plugin_gives_the_hosts_losses_and_refuses_a_visual_without_tokens(data_root, tmp_path, tiny_clip):
    from textrefiner.api import SoftTargets, TextRefinerPlugin

    cfg = make_cfg(data_root, "CoOp_TextRefiner", str(tmp_path), TR_YAML)
    plugin = TextRefinerPlugin(cfg, tiny_clip)
    image, text = torch.randn(2, 3, 224, 224), torch.nn.functional.normalize(torch.randn(5, 64), dim=-1)
    plugin.head.train()
    visual = plugin.encode_image(image)
    assert visual.tokens is not None and visual.cls_attention.shape == (2, 49)
    cache = plugin.head.cache.entries.clone()
    refined, losses = plugin.training_losses(text, visual, SoftTargets(torch.randn(2, 5), 1.0, weight=10.0), 1.0)
    assert refined.shape == text.shape and set(losses) == {"semantic", "regularization"}
    assert not torch.equal(plugin.head.cache.entries, cache)
    plugin.head.eval()
    import pytest

    with pytest.raises(ValueError, match="encode_image while the head trains"):
        plugin.training_losses(text, plugin.encode_image(image), torch.tensor([0, 1]), 1.0)
