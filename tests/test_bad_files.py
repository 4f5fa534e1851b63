"""The bad-file catalogue: a damaged, foreign or diverged checkpoint, MODEL.INIT_WEIGHTS file or PromptKD
teacher ends train.py with one ``Error:`` line naming the file and what to do, exit status 1, no
traceback, nothing modified; a result is never computed from non-finite weights."""
import os
import shutil
from pathlib import Path

import pytest
import torch

from test_bad_inputs import args, assert_refused
from test_promptkd import TINY_OPTS as PKD_OPTS, YAML as PKD_YAML, release_state_dict, trained_teacher, write_teacher
from textrefiner.cli.train import main

INIT_TEACHER = ["TRAINER.PROMPTKD.TEACHER_PROMPTS", "init"]
EVAL = ["--eval-only", "--load-epoch", 1]


@pytest.fixture(scope="module")
def runs(data_root, tmp_path_factory):
    """A finished 1-epoch CoOp_TextRefiner run and a PromptKD run (teacher prompts from a fixed seed)."""
    coop, pkd = tmp_path_factory.mktemp("coop_tr"), tmp_path_factory.mktemp("pkd")
    main([str(a) for a in args(data_root, coop)])
    main([str(a) for a in args(data_root, pkd, "PromptKD", PKD_YAML["PromptKD"], opts=[*PKD_OPTS, *INIT_TEACHER])])
    return {"coop": coop, "pkd": pkd}


def _half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _nan(key: str):
    def write(path: Path) -> None:
        checkpoint = torch.load(path, weights_only=True)
        checkpoint["state_dict"][key] = torch.full_like(checkpoint["state_dict"][key], float("nan"))
        torch.save(checkpoint, path)

    return write


# damage done to the CoOp_TextRefiner run's prompt_learner/model.pth.tar-1 (in a copy)
MODEL_DIR = [
    ("truncated", _half, "it is truncated"),
    ("empty", lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    ("random bytes", lambda p: p.write_bytes(os.urandom(4096)), "it is not a file torch.save wrote"),
    ("a pickled list", lambda p: torch.save([1, 2, 3], p), "holds a list, not a checkpoint"),
    ("no state_dict", lambda p: torch.save({"epoch": 1}, p), "holds no state_dict"),
    ("NaN prompts", _nan("ctx"), "holds NaN or inf in ctx: the run that wrote it diverged"),
]


@pytest.mark.parametrize("damage,fragment", [c[1:] for c in MODEL_DIR], ids=[c[0] for c in MODEL_DIR])
def test_a_damaged_model_dir_checkpoint_is_refused(damage, fragment, data_root, runs, tmp_path, capsys):
    model_dir = tmp_path / "model"
    shutil.copytree(runs["coop"], model_dir)
    damaged = model_dir / "prompt_learner" / "model.pth.tar-1"
    damage(damaged)
    out = tmp_path / "eval"
    error = assert_refused(args(data_root, out, flags=["--model-dir", model_dir, *EVAL]), Path(data_root), capsys,
                           fragment, untouched=[damaged])
    assert str(damaged) in error and not (out / "result.json").exists()


def test_damaged_promptkd_teacher_text_is_refused_naming_the_file(data_root, runs, tmp_path, capsys):
    model_dir = tmp_path / "model"
    shutil.copytree(runs["pkd"], model_dir)
    path = model_dir / "teacher_text" / "model.pth.tar-1"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["features"] = checkpoint["state_dict"]["features"][:3]  # 3 rows for 10 class names
    torch.save(checkpoint, path)
    error = assert_refused(args(data_root, tmp_path / "eval", "PromptKD", PKD_YAML["PromptKD"],
                                flags=["--model-dir", model_dir, *EVAL], opts=[*PKD_OPTS, *INIT_TEACHER]),
                           Path(data_root), capsys, "3 rows for 10 class names")
    assert str(path) in error


def _init_file(kind: str, runs, tmp_path: Path) -> Path:
    path = tmp_path / "init.pth.tar"
    ours = runs["coop"] / "prompt_learner" / "model.pth.tar-1"
    if kind == "folder":
        path.mkdir()
    elif kind == "result.json":
        shutil.copy(runs["coop"] / "result.json", path)
    elif kind == "a PromptKD checkpoint":
        shutil.copy(runs["pkd"] / "vision_prompts" / "model.pth.tar-1", path)
    elif kind == "wrong shape":
        torch.save({"state_dict": {"ctx": torch.zeros(3, 3)}, "epoch": 1}, path)
    else:
        shutil.copy(ours, path)
        {"truncated": _half, "random bytes": lambda p: p.write_bytes(os.urandom(4096)), "NaN": _nan("ctx")}[kind](path)
    return path


INIT = [
    ("truncated", "it is truncated"), ("random bytes", "it is not a file torch.save wrote"),
    ("result.json", "it is not a file torch.save wrote"), ("folder", "is a folder, not a MODEL.INIT_WEIGHTS"),
    ("wrong shape", "ctx (3, 3) there, (4, 128) in prompt_learner"),
    ("a PromptKD checkpoint", "fits none of this trainer's modules"),
    ("NaN", "holds NaN or inf in ctx"),
]


@pytest.mark.parametrize("kind,fragment", INIT, ids=[c[0] for c in INIT])
def test_init_weights_that_cannot_load_are_refused_not_skipped(kind, fragment, data_root, runs, tmp_path, capsys):
    path = _init_file(kind, runs, tmp_path)
    error = assert_refused(args(data_root, tmp_path / "out", opts=["MODEL.INIT_WEIGHTS", path]), Path(data_root),
                           capsys, fragment)
    assert str(path) in error


def test_init_weights_of_this_trainer_initialise_every_module_they_hold(data_root, runs, tmp_path):
    """The working case beside the refusals: a CoOp_TextRefiner prompt learner starts a new run."""
    source = runs["coop"] / "prompt_learner" / "model.pth.tar-1"
    out = tmp_path / "out"
    main([str(a) for a in args(data_root, out, opts=["MODEL.INIT_WEIGHTS", source, "OPTIM.MAX_EPOCH", 1])])
    log = (out / "log.txt").read_text()
    assert f"prompt_learner: 1 of 1 tensors initialised from {source}" in log
    assert "textrefiner: 0 of" in log and "keeps its initial weights" in log


def _teacher_state(change: str) -> dict:
    teacher = trained_teacher()
    state = release_state_dict(teacher)
    if change == "another prompt depth":  # trained with text and vision prompts in 1 layer, not 2
        state = {k: v for k, v in state.items() if "VPT_shallow" not in k}
    elif change == "NaN prompts":
        state["prompt_learner.ctx"] = torch.full_like(state["prompt_learner.ctx"], float("nan"))
    elif change == "another backbone":  # the student's random:tiny, not the configured random:tiny-wide
        state = {k: (v[..., :128] if v.dim() and v.shape[-1] == 192 else v) for k, v in state.items()}
    return state


TEACHERS = [
    ("truncated", "it is truncated"), ("empty", "is empty (0 bytes), not a PromptKD teacher"),
    ("a CoOp checkpoint", "does not fit the configured teacher"),
    ("another prompt depth", "does not fit the configured teacher: missing keys"),
    ("another backbone", "shape mismatches"), ("NaN prompts", "holds NaN or inf in prompt_learner.ctx"),
]


@pytest.mark.parametrize("change,fragment", TEACHERS, ids=[c[0] for c in TEACHERS])
def test_a_bad_teacher_file_is_refused_naming_it(change, fragment, data_root, runs, tmp_path, capsys):
    teacher_dir = tmp_path / "teachers"
    path = Path(write_teacher(str(teacher_dir / "Synthetic" / "VLPromptLearner" / "model-best.pth.tar"),
                              _teacher_state(change)))
    if change == "truncated":
        _half(path)
    elif change == "empty":
        path.write_bytes(b"")
    elif change == "a CoOp checkpoint":
        shutil.copy(runs["coop"] / "prompt_learner" / "model.pth.tar-1", path)
    error = assert_refused(args(data_root, tmp_path / "out", "PromptKD", PKD_YAML["PromptKD"],
                                opts=[*PKD_OPTS, "TRAINER.PROMPTKD.TEACHER_DIR", teacher_dir]),
                           Path(data_root), capsys, fragment, untouched=[path])
    assert str(path) in error and "lower OPTIM.LR" not in error


def _nan_clip(tmp_path: Path) -> Path:
    """random:tiny's weights with NaN in the text tower's last LayerNorm (a damaged CLIP file)."""
    from textrefiner.backbones.resolver import load_clip

    clip = load_clip("random:tiny").state_dict()
    clip["ln_final.weight"] = torch.full_like(clip["ln_final.weight"], float("nan"))
    weights = tmp_path / "clip.pt"
    torch.save(clip, weights)
    return weights


def test_non_finite_logits_are_never_recorded_as_a_result(data_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert_refused(args(data_root, out, flags=["--eval-only"], opts=["MODEL.BACKBONE.NAME", _nan_clip(tmp_path)]),
                   Path(data_root), capsys, "are not finite (NaN or inf) at evaluation, so no result is recorded")
    assert not (out / "result.json").exists()


def test_a_loss_that_is_nan_before_any_update_does_not_blame_the_learning_rate(data_root, tmp_path, capsys):
    """NaN from the start (here the CLIP weights) is not OPTIM.LR's fault, so the line does not say so."""
    error = assert_refused(args(data_root, tmp_path / "out", opts=["MODEL.BACKBONE.NAME", _nan_clip(tmp_path)]),
                           Path(data_root), capsys, "before any update, so the learning rate is not the cause")
    assert "lower OPTIM.LR" not in error


def test_an_empty_checkpoint_pointer_is_no_pointer(data_root, runs, tmp_path):
    """A pointer file cut to nothing names no file: evaluating a saved epoch reads that epoch's file."""
    model_dir = tmp_path / "model"
    shutil.copytree(runs["coop"], model_dir)
    (model_dir / "prompt_learner" / "checkpoint").write_text("")
    out = tmp_path / "eval"
    main([str(a) for a in args(data_root, out, flags=["--model-dir", model_dir, *EVAL])])
    assert (out / "result.json").exists()
