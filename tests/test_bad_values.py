"""Settings that cannot work stop train.py before anything runs, with one ``Error:`` line naming the key;
settings that run but not as likely meant say so; odd but legal input (a non-UTF-8 path, an edited
few-shot cache) neither crashes nor trains on wrong data."""
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO
from test_bad_inputs import TR_YAML, _copy_root, args, assert_refused
from test_promptkd import TINY_OPTS as PKD_OPTS, YAML as PKD_YAML
from test_promptsrc import PROMPTSRC_YAML, TINY_OPTS as SRC_OPTS
from textrefiner.cli.train import main

IVLP_YAML = REPO / "configs" / "trainers" / "IVLP" / "vit_b16_c2_ep20_batch8_4+4ctx.yaml"
PKD = ("PromptKD", PKD_YAML["PromptKD"], [*PKD_OPTS, "TRAINER.PROMPTKD.TEACHER_PROMPTS", "init"])
SRC = ("PromptSRC", PROMPTSRC_YAML, SRC_OPTS)
TR = ("CoOp_TextRefiner", TR_YAML, [])

# (id, (trainer, config, its fast opts), the overrides, a fragment of the one Error line)
CASES = [
    ("negative KD weight", PKD, ["TRAINER.PROMPTKD.KD_WEIGHT", -1000.0], "TRAINER.PROMPTKD.KD_WEIGHT must be a number > 0"),
    ("zero temperature", PKD, ["TRAINER.PROMPTKD.TEMPERATURE", 0.0], "TRAINER.PROMPTKD.TEMPERATURE must be a number > 0"),
    ("negative shots", TR, ["DATASET.NUM_SHOTS", -4], "DATASET.NUM_SHOTS (images per class; -1 or 0 for every"),
    ("negative weight decay", TR, ["OPTIM.WEIGHT_DECAY", -1.0], "OPTIM.WEIGHT_DECAY must be a number >= 0"),
    ("momentum above 1", TR, ["OPTIM.MOMENTUM", 1.5], "OPTIM.MOMENTUM must be a number in [0.0, 1.0]"),
    ("negative warm-up", TR, ["OPTIM.WARMUP_EPOCH", -2], "OPTIM.WARMUP_EPOCH (warm-up epochs; 0 or Dassl's"),
    ("GPA_STD 0", SRC, ["TRAINER.PROMPTSRC.GPA_STD", 0], "TRAINER.PROMPTSRC.GPA_STD must be a number > 0"),
    ("GPA_STD -1", SRC, ["TRAINER.PROMPTSRC.GPA_STD", -1], "TRAINER.PROMPTSRC.GPA_STD must be a number > 0"),
    ("GPA_MEAN 1000", SRC, ["TRAINER.PROMPTSRC.GPA_MEAN", 1000], "TRAINER.PROMPTSRC.GPA_MEAN 1000 with GPA_STD 1 gives"),
    ("negative text loss weight", SRC, ["TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT", -1],
     "TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT must be a number >= 0"),
    ("PromptSRC vision depth 5", SRC, ["TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 5],
     "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION must be between 0 and 2"),
    ("PromptSRC text depth 7", SRC, ["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 7],
     "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT must be between 1 and 2"),
    ("IVLP depth 9 on 2 layers", ("IVLP", IVLP_YAML, ["TRAINER.IVLP.PREC", "fp32"]), [],
     "TRAINER.IVLP.PROMPT_DEPTH_TEXT must be between 1 and 2"),
    ("PromptKD vision depth 5", PKD, ["TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", 5],
     "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION must be between 1 and 2"),
    ("PromptKD teacher text depth 7", PKD, ["TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_TEXT", 7],
     "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_TEXT must be between 1 and 2"),
]


@pytest.mark.parametrize("host,opts,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_setting_that_cannot_work_stops_with_its_key(host, opts, fragment, data_root, tmp_path, capsys):
    trainer, config, fast = host
    error = assert_refused(args(data_root, tmp_path / "out", trainer, config, opts=[*fast, *opts]), Path(data_root),
                           capsys, fragment)
    assert "lower OPTIM.LR" not in error


def test_a_key_given_twice_in_a_yaml_file_is_refused(data_root, tmp_path, capsys):
    """YAML keeps the last of two equal keys: a second OPTIM block would silently drop the first one's keys."""
    config = tmp_path / "twice.yaml"
    config.write_text(TR_YAML.read_text() + "\nOPTIM:\n  LR: 0.5\n")
    error = assert_refused(args(data_root, tmp_path / "out", config=config), Path(data_root), capsys,
                           "gives OPTIM (lines")
    assert str(config) in error and "merge them into one" in error


def test_warm_up_longer_than_training_runs_with_a_warning(data_root, tmp_path):
    out = tmp_path / "out"
    main([str(a) for a in args(data_root, out, opts=["OPTIM.WARMUP_EPOCH", 50])])
    log = (out / "log.txt").read_text()
    assert "Warning: OPTIM.WARMUP_EPOCH 50 >= OPTIM.MAX_EPOCH 1: every epoch is a warm-up epoch" in log
    assert (out / "result.json").exists()


def test_a_root_path_that_is_not_utf8_trains_and_logs_it_escaped(data_root, tmp_path):
    """Legal on Linux: the log writes the undecodable byte as \\xff instead of crashing."""
    root = os.path.join(os.fsencode(str(tmp_path)), b"data-\xff")
    shutil.copytree(data_root, os.fsdecode(root))
    out = tmp_path / "out"
    main([str(a) for a in args(os.fsdecode(root), out)])
    assert "data-\\xff" in (out / "log.txt").read_text() and (out / "result.json").exists()


def test_an_edited_few_shot_cache_is_drawn_again_not_trained_on(data_root, tmp_path):
    root = _copy_root(data_root, tmp_path)
    main([str(a) for a in args(root, tmp_path / "first")])
    (cache,) = root.rglob("split_fewshot/*.json")
    drawn = cache.read_text()
    content = json.loads(drawn)
    content["train"][0][1] = 99  # a label the dataset does not have
    cache.write_text(json.dumps(content))
    out = tmp_path / "second"
    main([str(a) for a in args(root, out)])
    assert "holds records its split does not have (edited?); drawing it again" in (out / "log.txt").read_text()
    assert cache.read_text() == drawn  # the same seed draws the same subset
    first, second = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("first", "second"))
    assert (first["accuracy"], first["per_class_accuracy"]) == (second["accuracy"], second["per_class_accuracy"])
