"""The teacher step: PromptSRC trained by scripts/promptkd/train_teacher.sh and written where PromptKD looks,
in a layout PromptKD loads back for every prompt design the step accepts."""
import copy
import json
import os
import subprocess

import pytest
import torch

from conftest import REPO, TINY
from launch_helpers import LAUNCH_OPTS, SHOTS, finish_without_training, launcher_env
from textrefiner.backbones.resolver import load_clip
from textrefiner.checkpoints.ivlp import load_teacher_state_dict, teacher_checkpoint
from textrefiner.config import get_cfg
from textrefiner.framework import load_checkpoint
from textrefiner.atomic import save_torch
from textrefiner.hosts.ivlp import IVLPCLIP, IVLPPromptLearner
from textrefiner.hosts.promptsrc import PromptSRCCLIP
from textrefiner.precision import Precision
from textrefiner.protocols.steps import Setup
from textrefiner.protocols.teacher import TEACHER_CFG, TeacherExists, train_teacher
from textrefiner.results.record import NOT_SETTINGS
from textrefiner.trainers.ivlp import build_ivlp_prompt_learner
from textrefiner.trainers.promptkd import build_teacher

TINY_OPTS = ["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2",
             "TRAINER.PROMPTSRC.PREC", "fp32", "TRAINER.PROMPTSRC.GPA_MEAN", "1", "OPTIM.MAX_EPOCH", "1"]


def test_step_paths_and_refusal(tmp_path):
    setup = Setup("PromptSRC", TEACHER_CFG, data="data", output=str(tmp_path / "out"))
    step = train_teacher(setup, "oxford_pets", 1, teacher_dir=str(tmp_path / "teachers"))
    assert step.teacher_file == str(tmp_path / "teachers" / "OxfordPets" / "VLPromptLearner" / "model-best.pth.tar")
    assert step.output_dir.endswith(os.path.join("train_base", "oxford_pets", "shots_16", "PromptSRC", TEACHER_CFG, "seed1"))
    assert ["TRAINER.PROMPTSRC.TEACHER_FILE", step.teacher_file] == list(step.opts[:2])
    assert "DATASET.SUBSAMPLE_CLASSES" in step.opts and "base" in step.opts
    xd = train_teacher(setup, "xd", 2, teacher_dir=str(tmp_path / "teachers"))
    assert xd.teacher_file.endswith(os.path.join("ImageNet-xd", "VLPromptLearner_large", "model.pth.tar-20"))
    # the CoCoOp/MaPLe cross-dataset layout: output/imagenet/<Trainer>/<cfg>_<K>shots/seed<S>
    assert xd.output_dir.endswith(os.path.join("imagenet", "PromptSRC", f"{TEACHER_CFG}_16shots", "seed2"))
    assert "DATASET.SUBSAMPLE_CLASSES" not in xd.opts

    os.makedirs(os.path.dirname(step.teacher_file))
    open(step.teacher_file, "w").close()
    assert not step.done  # no training result yet
    with pytest.raises(TeacherExists, match="TEACHER_OVERWRITE=1"):
        step.command()
    replace = train_teacher(setup, "oxford_pets", 1, teacher_dir=str(tmp_path / "teachers"), overwrite=True)
    assert "True" in replace.command()


def test_where_the_teacher_is_written_is_not_part_of_the_run_s_settings(tmp_path):
    """The same teacher for another TEACHER_DIR (or with TEACHER_OVERWRITE) is the same run: its
    training is reused, not refused as other settings; a setting that changes the numbers still counts."""
    setup = Setup("PromptSRC", TEACHER_CFG, data="data", output=str(tmp_path / "out"))
    first = train_teacher(setup, "oxford_pets", 1, teacher_dir=str(tmp_path / "teachers"))
    moved = train_teacher(setup, "oxford_pets", 1, teacher_dir=str(tmp_path / "elsewhere"))
    replacing = train_teacher(setup, "oxford_pets", 1, teacher_dir=str(tmp_path / "elsewhere"), overwrite=True)
    assert first.opts != moved.opts != replacing.opts  # train.py is told where to write
    assert first.expected == moved.expected == replacing.expected
    assert not set(NOT_SETTINGS) & set(first.expected[1])

    record = finish_without_training(first)
    os.makedirs(os.path.dirname(first.teacher_file))
    open(first.teacher_file, "w").close()
    assert first.done
    assert moved.conflict() is None and not moved.done  # its file is missing: the step writes it
    assert "TRAINER.PROMPTSRC.TEACHER_FILE" in moved.command()

    # a result.json written before the teacher file left the settings still names it, with another hash
    record["settings"]["TRAINER.PROMPTSRC.TEACHER_FILE"] = first.teacher_file
    record["config_hash"] = "0123456789ab"
    with open(os.path.join(first.output_dir, "result.json"), "w") as f:
        json.dump(record, f)
    assert first.done and moved.conflict() is None

    other_lr = Setup("PromptSRC", TEACHER_CFG, data="data", output=str(tmp_path / "out"), opts=("OPTIM.LR", "0.5"))
    assert "OPTIM.LR" in train_teacher(other_lr, "oxford_pets", 1, teacher_dir=str(tmp_path / "elsewhere")).conflict()


def launch(data_root, output, teacher_dir, cwd, **env):
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "promptkd" / "train_teacher.sh"), "synthetic", "1", *LAUNCH_OPTS, *TINY_OPTS],
        cwd=cwd, env={**launcher_env(data_root, output), "TEACHER_DIR": str(teacher_dir), **env},
        capture_output=True, text=True,
    )


@pytest.mark.slow
def test_teacher_from_the_launcher_is_written_once_in_the_release_layout(data_root, tmp_path):
    teachers = tmp_path / "teachers"
    proc = launch(data_root, tmp_path / "out", teachers, tmp_path)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    folder = teachers / "Synthetic" / "VLPromptLearner"
    assert os.listdir(folder) == ["model-best.pth.tar"]  # nothing half-written beside it
    teacher = load_checkpoint(str(folder / "model-best.pth.tar"))
    assert set(teacher) == {"state_dict", "epoch", "optimizer", "scheduler", "val_result"}
    state = teacher["state_dict"]
    assert state["prompt_learner.ctx"].shape == (4, 128) and state["image_encoder.VPT"].shape == (4, 128)
    assert {"image_encoder.transformer.resblocks.1.VPT_shallow", "text_encoder.transformer.resblocks.1.VPT_shallow",
            "text_encoder.text_projection", "image_encoder.proj", "logit_scale"} <= set(state)

    # the training run sits in the base-to-novel layout; the file holds its final prompts
    run = tmp_path.joinpath("out", "base2new", "train_base", "synthetic", f"shots_{SHOTS}", "PromptSRC", TEACHER_CFG,
                            "seed1")
    record = json.loads((run / "result.json").read_text())
    assert record["trainer"] == "PromptSRC" and record["split"] == "base"
    trained = load_checkpoint(str(run / "prompt_learner" / "model.pth.tar-1"))["state_dict"]
    assert torch.equal(trained["ctx"], state["prompt_learner.ctx"])

    # it loads strictly into an IVLP model of the same backbone (any class names: those buffers are rebuilt)
    clip_model = load_clip(TINY)
    model = IVLPCLIP(IVLPPromptLearner(["cat", "dog"], clip_model, n_ctx_text=4, n_ctx_vision=4, depth_text=2,
                                       depth_vision=2), clip_model)
    load_teacher_state_dict(model, state)
    assert torch.equal(model.prompt_learner.vision_ctx[1], state["image_encoder.transformer.resblocks.1.VPT_shallow"])

    # the same teacher for another TEACHER_DIR: the finished run is reused (no epoch trained again)
    checkpoint = run / "prompt_learner" / "model.pth.tar-1"
    trained_at = os.stat(checkpoint).st_mtime_ns
    moved = launch(data_root, tmp_path / "out", tmp_path / "moved", tmp_path)
    assert moved.returncode == 0, f"{moved.stdout[-3000:]}\n{moved.stderr[-3000:]}"
    copy = load_checkpoint(str(tmp_path / "moved" / "Synthetic" / "VLPromptLearner" / "model-best.pth.tar"))
    assert set(copy["state_dict"]) == set(state)
    assert all(torch.equal(copy["state_dict"][k], state[k]) for k in state)
    assert os.stat(checkpoint).st_mtime_ns == trained_at

    written = os.stat(folder / "model-best.pth.tar").st_mtime_ns
    again = launch(data_root, tmp_path / "out", teachers, tmp_path)
    assert again.returncode == 0 and "Skip" in again.stdout
    other = launch(data_root, tmp_path / "other", teachers, tmp_path)
    assert other.returncode == 2 and "TEACHER_OVERWRITE=1" in other.stderr
    assert not (tmp_path / "other").exists() and os.stat(folder / "model-best.pth.tar").st_mtime_ns == written
    replaced = launch(data_root, tmp_path / "other", teachers, tmp_path, TEACHER_OVERWRITE="1")
    assert replaced.returncode == 0, replaced.stdout[-3000:]
    assert os.stat(folder / "model-best.pth.tar").st_mtime_ns != written


# Every prompt design the teacher step accepts (PromptSRC's checks on random:tiny's 2 layers per tower):
# text depth 1 .. 2, vision depth 0 .. 2; no text context, fewer, as many or more tokens than CTX_INIT's
# 4 words (more: random context with "X" placeholders); no vision tokens.
DEPTHS = [(text, vision) for text in (1, 2) for vision in (0, 1, 2)]
CONTEXTS = [(0, 4), (2, 4), (4, 0), (6, 2)]  # (N_CTX_TEXT, N_CTX_VISION)


@pytest.mark.parametrize("n_ctx_text,n_ctx_vision", CONTEXTS)
@pytest.mark.parametrize("depth_text,depth_vision", DEPTHS)
def test_every_teacher_the_step_writes_loads_into_promptkd_as_it_was(tmp_path, tiny_clip, depth_text, depth_vision,
                                                                     n_ctx_text, n_ctx_vision):
    """The teacher step's writer (PromptSRC's model, ``teacher_checkpoint`` saved as ``write_teacher_file``
    saves it) and PromptKD's loader (``build_teacher``) agree on every design: the same tensors, the same
    prompt words around the context, the same features."""
    cfg = get_cfg()
    src, pkd = cfg.TRAINER.PROMPTSRC, cfg.TRAINER.PROMPTKD
    src.N_CTX_TEXT, src.N_CTX_VISION, src.PROMPT_DEPTH_TEXT, src.PROMPT_DEPTH_VISION = (
        n_ctx_text, n_ctx_vision, depth_text, depth_vision)
    pkd.N_CTX_TEXT, pkd.TEACHER_N_CTX_VISION, pkd.TEACHER_PROMPT_DEPTH_TEXT, pkd.TEACHER_PROMPT_DEPTH_VISION = (
        n_ctx_text, n_ctx_vision, depth_text, depth_vision)
    pkd.TEACHER_NAME, pkd.TEACHER_PROMPTS = TINY, "file"
    pkd.TEACHER_FILE = str(tmp_path / "model-best.pth.tar")
    names = ["cat", "dog", "red circle"]

    clip_model = copy.deepcopy(tiny_clip)
    written = PromptSRCCLIP(build_ivlp_prompt_learner(src, names, clip_model, "PROMPTSRC"), clip_model,
                            frozen_text=torch.zeros(len(names), 64))
    with torch.no_grad():  # a trained teacher: prompts and a frozen weight away from any fresh init
        for p in (*written.prompt_learner.parameters(), written.text_encoder.ln_final.weight):
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    save_torch(teacher_checkpoint(written, epoch=20), pkd.TEACHER_FILE, serialise_first=True)

    loaded = build_teacher(cfg, names, Precision("fp32", torch.device("cpu")))
    ours, theirs = loaded.state_dict(), written.state_dict()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert torch.equal(loaded.prompt_learner(), written.prompt_learner())
    image = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded.text_features(), written.text_features())
        assert torch.equal(loaded.encode_image(image).global_feature, written.encode_image(image).global_feature)
