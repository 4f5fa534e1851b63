"""The shipped testbed CLIP: its file, its zero-shot accuracy, and that prompt learning learns on it.

These are the suite's only tests of *learning*: a gradient that never reaches the prompts, a
prompt inserted at the wrong place or a cache that never fills would pass every numerical
test and fail here. Each trainer runs base-to-novel's training step on ``testbed_shapes``
(12 base classes, 16 shots, seed 1) with its shipped testbed config, through the launchers' code
path, and is scored on the base classes' test images (600).
"""
import os.path as osp

import pytest
import torch

from textrefiner.backbones.resolver import load_clip
from textrefiner.protocols.hosts import testbed_cfg as config_name
from textrefiner.protocols.steps import Setup, base2new_test, base2new_train, run_step
from textrefiner.testbed.backbone import TESTBED_MODELS
from textrefiner.testbed.model import sha256
from textrefiner.testbed.pretrain import zero_shot_accuracy, zero_shot_set

WEIGHTS = TESTBED_MODELS["testbed"]
DATASET = "testbed_shapes"
#: what training on 16 shots of the base classes must add to zero-shot accuracy there (points)
MIN_GAIN_OVER_ZERO_SHOT = {"CoOp": 10.0, "MaPLe": 10.0}
#: how far a TextRefiner variant may fall below its host on base accuracy with the same seed (points)
MAX_LOSS_TO_HOST = 5.0


def test_shipped_weights_match_their_checksum_and_size_budget():
    assert osp.getsize(WEIGHTS) < 10e6
    with open(WEIGHTS + ".sha256") as f:
        assert sha256(WEIGHTS) == f.read().split()[0]


def test_shipped_weights_give_their_recorded_zero_shot_accuracy():
    """Regression: the file, loaded through clip.model.build_model as the trainers load it, scores the
    figure pretraining recorded on its own evaluation set (64 colour-shape classes)."""
    meta = torch.load(WEIGHTS, map_location="cpu", weights_only=True)["meta"]
    model = load_clip("testbed")
    acc, held, _, _ = zero_shot_accuracy(model, *zero_shot_set(meta["eval_set"]["seed"], meta["eval_set"]["images"]))
    assert acc == pytest.approx(meta["zero_shot"], abs=0.5)
    assert held == pytest.approx(meta["held_out_zero_shot"], abs=1.0)
    assert acc > 3 * 100 / meta["eval_set"]["classes"]  # well above chance


@pytest.fixture(scope="module")
def base_accuracy(tmp_path_factory):
    """trainer -> base-class test accuracy after base2new_train (ZeroshotCLIP: evaluation only), memoised."""
    root = str(tmp_path_factory.mktemp("testbed-data"))
    out = str(tmp_path_factory.mktemp("testbed-runs"))
    results = {}

    def run(trainer: str) -> float:
        if trainer not in results:
            step = base2new_train(Setup(trainer, config_name(trainer), data=root, output=out), DATASET, seed=1)
            log = osp.join(out, f"{trainer}.log")
            with open(log, "w") as f:
                code = run_step(step, log=f)
            assert code == 0 and step.record is not None, open(log).read()[-3000:]
            results[trainer] = step.record["accuracy"]
        return results[trainer]

    run.root, run.out = root, out
    return run


@pytest.mark.parametrize("host", sorted(MIN_GAIN_OVER_ZERO_SHOT))
def test_prompt_learning_beats_zero_shot_on_base_classes(base_accuracy, host):
    zero_shot, learned = base_accuracy("ZeroshotCLIP"), base_accuracy(host)
    assert learned >= zero_shot + MIN_GAIN_OVER_ZERO_SHOT[host], (host, learned, "zero-shot", zero_shot)


@pytest.mark.parametrize("host", sorted(MIN_GAIN_OVER_ZERO_SHOT))
def test_textrefiner_trains_and_keeps_up_with_its_host(base_accuracy, host):
    variant = f"{host}_TextRefiner"
    refined, plain = base_accuracy(variant), base_accuracy(host)
    assert refined >= plain - MAX_LOSS_TO_HOST, (variant, refined, host, plain)
    assert refined > base_accuracy("ZeroshotCLIP"), (variant, refined)


def test_zero_shot_evaluates_novel_classes_without_a_model(base_accuracy):
    """ZeroshotCLIP's base-to-novel steps are evaluations only: the novel step needs no training folder."""
    base_accuracy("ZeroshotCLIP")
    setup = Setup("ZeroshotCLIP", config_name("ZeroshotCLIP"), data=base_accuracy.root, output=base_accuracy.out)
    step = base2new_test(setup, DATASET, seed=1)
    assert step.evaluates is None and "--eval-only" in step.command()
    with open(osp.join(base_accuracy.out, "zs-new.log"), "w") as f:
        assert run_step(step, log=f) == 0
    assert 100 / 12 < step.record["accuracy"] <= 100


def test_a_224_pixel_config_on_the_testbed_stops_with_one_line_naming_the_size(base_accuracy):
    import subprocess
    import sys

    from textrefiner.protocols.steps import dataset_config, trainer_config

    proc = subprocess.run(
        [sys.executable, "-m", "textrefiner.cli.train", "--root", base_accuracy.root, "--trainer", "CoOp",
         "--dataset-config-file", dataset_config(DATASET), "--config-file", trainer_config("CoOp", "vit_b16_ep10_ctxv1"),
         "--output-dir", osp.join(base_accuracy.out, "size-check"), "MODEL.BACKBONE.NAME", "testbed"],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr
    assert "set INPUT.SIZE (64, 64)" in proc.stdout + proc.stderr
