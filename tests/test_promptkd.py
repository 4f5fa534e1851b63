"""PromptKD and PromptKD_TextRefiner trainers: teacher loading, labels, evaluation halves, checkpoints,
switching TextRefiner off, precision, and the launchers end to end.

Student: ``random:tiny`` (64-d joint space); teacher: ``random:tiny-wide`` (96-d), so the projector,
the alignment and the cache really change width.
"""
import csv
import io
import json
import os
import subprocess
import sys

from pathlib import Path

import pytest
import torch

from conftest import REPO, build, make_cfg, one_batch
from launch_helpers import LAUNCH_OPTS, SHOTS, launcher_env
from textrefiner.results.layout import RunKey, run_dir
from textrefiner.backbones.resolver import load_clip
from textrefiner.framework import load_checkpoint
from textrefiner.hosts.ivlp import build_ivlp
from textrefiner.precision import Precision
from textrefiner.protocols.steps import Setup, base2new_test, base2new_train
from textrefiner.trainers.promptkd import TeacherNotFoundError, build_teacher

CFG = "vit_b16_c2_ep20_batch8_4+4ctx"
YAML = {t: REPO / "configs" / "trainers" / t / f"{CFG}.yaml" for t in ("PromptKD", "PromptKD_TextRefiner")}
TEACHER = "random:tiny-wide"
# both tiny CLIPs have 2 layers per tower
TINY_OPTS = [
    "TRAINER.PROMPTKD.PREC", "fp32", "TRAINER.PROMPTKD.TEACHER_NAME", TEACHER,
    "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", 2, "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_TEXT", 2,
    "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_VISION", 2,
]
INIT_TEACHER = ["TRAINER.PROMPTKD.TEACHER_PROMPTS", "init"]
SYNTHETIC = ["red circle", "blue circle", "red square", "blue square", "red triangle", "blue triangle",
             "red cross", "blue cross", "red ring", "blue ring"]


def pkd_cfg(root, out, trainer="PromptKD_TextRefiner", opts=(), seed=1):
    return make_cfg(root, trainer, str(out), config_file=YAML[trainer], opts=[*TINY_OPTS, *opts], seed=seed)


def train_step(trainer, batch=None):
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 5
    return trainer.forward_backward(batch or one_batch(trainer))


def trained_teacher():
    """An IVLP teacher whose prompts AND frozen CLIP weights differ from a fresh random:tiny-wide."""
    teacher = build_ivlp(SYNTHETIC, load_clip(TEACHER), 4, "a photo of a", 2, 4, 2, generator_seed=5)
    with torch.no_grad():
        pl = teacher.prompt_learner
        for p in (pl.ctx, pl.deep_text_ctx, pl.vision_ctx):
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        teacher.text_encoder.ln_final.weight.add_(0.5)
    return teacher


def release_state_dict(teacher):
    """The key layout of PromptSRC's / the PromptKD release's CustomCLIP, written out by hand."""
    pl = teacher.prompt_learner
    vision = pl.vision_ctx
    sd = {"prompt_learner.ctx": pl.ctx, "prompt_learner.token_prefix": torch.zeros(10, 1, 192),
          "prompt_learner.token_suffix": torch.zeros(10, 72, 192),
          "prompt_learner.ZS_image_encoder.conv1.weight": torch.zeros(3), "image_encoder.VPT": vision[0],
          "logit_scale": teacher.logit_scale}
    sd.update({f"text_encoder.transformer.resblocks.{i + 1}.VPT_shallow": t for i, t in enumerate(pl.deep_text_ctx)})
    sd.update({f"image_encoder.transformer.resblocks.{i}.VPT_shallow": vision[i] for i in range(1, len(vision))})
    sd.update({f"image_encoder.{k}": v for k, v in teacher.image_encoder.visual.state_dict().items()})
    sd.update({f"text_encoder.{k}": v for k, v in teacher.text_encoder.state_dict().items()})
    return {k: v.detach().clone().half() if v.is_floating_point() else v for k, v in sd.items()}


def write_teacher(path, state_dict):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"state_dict": state_dict, "epoch": 20, "optimizer": None, "scheduler": None, "val_result": None},
               path)
    return path


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    teacher = trained_teacher()
    root = tmp_path_factory.mktemp("teacher_model")
    write_teacher(str(root / "Synthetic" / "VLPromptLearner" / "model-best.pth.tar"), release_state_dict(teacher))
    return str(root), teacher


def teacher_cfg(data_root, tmp_path, opts=()):
    return pkd_cfg(data_root, tmp_path, opts=["TRAINER.PROMPTKD.TEACHER_PROMPTS", "file", *opts])


def test_release_layout_teacher_loads_prompts_and_its_clip_weights(data_root, tmp_path, teacher_dir):
    root, expected = teacher_dir
    teacher = build_teacher(teacher_cfg(data_root, tmp_path, ["TRAINER.PROMPTKD.TEACHER_DIR", root]), SYNTHETIC,
                            Precision("fp32", torch.device("cpu")))
    loaded, wanted = teacher.state_dict(), expected.state_dict()
    assert set(loaded) == set(wanted)
    for key in wanted:  # the file is fp16, as the releases save it
        torch.testing.assert_close(loaded[key], wanted[key].half().float(), rtol=0, atol=0, msg=key)
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training


@pytest.mark.parametrize("change,message", [
    (lambda sd: sd.pop("image_encoder.transformer.resblocks.1.VPT_shallow"),
     r"missing keys: image_encoder\.transformer\.resblocks\.1\.VPT_shallow"),
    (lambda sd: sd.pop("text_encoder.ln_final.bias"), r"missing keys: text_encoder\.ln_final\.bias"),
    (lambda sd: sd.update({"prompt_learner.meta_net.weight": torch.zeros(2)}),
     r"unexpected keys: prompt_learner\.meta_net\.weight"),
    (lambda sd: sd.update({"prompt_learner.ctx": torch.zeros(2, 192)}),
     r"shape mismatches: prompt_learner\.ctx \(2, 192\) \(expected \(4, 192\)\)"),
    (lambda sd: sd.update({"text_encoder.transformer.resblocks.8.VPT_shallow": torch.zeros(4, 192)}),
     r"unexpected keys: .*resblocks\.8\.VPT_shallow.*text depth 9"),
])
def test_teacher_files_that_do_not_fit_fail_naming_file_and_keys(data_root, tmp_path, change, message):
    sd = release_state_dict(trained_teacher())
    change(sd)
    path = write_teacher(str(tmp_path / "teacher.pth.tar"), sd)
    cfg = teacher_cfg(data_root, tmp_path, ["TRAINER.PROMPTKD.TEACHER_FILE", path])
    with pytest.raises(ValueError, match=message) as error:
        build_teacher(cfg, SYNTHETIC, Precision("fp32", torch.device("cpu")))
    assert path in str(error.value) and "TEACHER_NAME" in str(error.value)


def test_a_missing_teacher_says_where_it_is_expected_and_how_to_get_one(data_root, tmp_path):
    cfg = teacher_cfg(data_root, tmp_path, ["TRAINER.PROMPTKD.TEACHER_DIR", str(tmp_path / "nowhere")])
    expected = os.path.join(str(tmp_path / "nowhere"), "Synthetic", "VLPromptLearner", "model-best.pth.tar")
    with pytest.raises(TeacherNotFoundError, match="PromptSRC") as error:
        build_teacher(cfg, SYNTHETIC, Precision("fp32", torch.device("cpu")))
    assert expected in str(error.value) and "TEACHER_PROMPTS none" in str(error.value)
    cross = teacher_cfg(data_root, tmp_path, ["TRAINER.PROMPTKD.MODAL", "cross"])
    cross_file = r"teacher_model/ImageNet-xd/VLPromptLearner_large/model\.pth\.tar-20"
    with pytest.raises(TeacherNotFoundError, match=cross_file):
        build_teacher(cross, SYNTHETIC, Precision("fp32", torch.device("cpu")))


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory, teacher_dir):
    """One PromptKD_TextRefiner run on the base split (all classes' images), teacher from the layout."""
    out = tmp_path_factory.mktemp("trained")
    trainer = build(teacher_cfg(data_root, out, ["TRAINER.PROMPTKD.TEACHER_DIR", teacher_dir[0],
                                                 "DATASET.SUBSAMPLE_CLASSES", "base", "DATASET.NUM_SHOTS", 2]))
    assert trainer.train_classnames == SYNTHETIC and trainer.eval_classnames == SYNTHETIC[:5]
    trainer.train()
    return trainer, str(out)


def test_checkpoint_holds_prompts_projector_head_and_teacher_text_only(trained):
    trainer, out = trained
    assert trainer.get_model_names() == ["vision_prompts", "projector", "textrefiner", "teacher_text"]
    keys = set()
    for name in trainer.get_model_names():
        state = load_checkpoint(os.path.join(out, name, "model-best.pth.tar"))["state_dict"]
        keys |= {f"{name}.{k}" for k in state}
        if name == "teacher_text":
            assert state["features"].shape == (10, 96) and state["_extra_state"]["classnames"] == SYNTHETIC
    assert not any(part in k for k in keys for part in ("image_encoder", "visual", "transformer", "token_embedding"))
    assert "textrefiner.cache.entries" in keys and "projector.norm.running_mean" in keys
    assert trainer.refiner.cache.entries.shape == (25, 96)


def test_evaluation_after_training_runs_without_the_teacher(data_root, tmp_path, trained):
    _, out = trained
    cfg = teacher_cfg(data_root, tmp_path, ["TRAINER.PROMPTKD.TEACHER_DIR", str(tmp_path / "gone"),
                                            "DATASET.SUBSAMPLE_CLASSES", "new"])
    evaluator = build(cfg)
    evaluator.load_model(out)
    accuracy = evaluator.test()
    assert evaluator.teacher is None and 0 <= accuracy <= 100
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["split"] == "new" and record["num_classes"] == 5 and record["num_images"] == 50


def test_base_and_novel_evaluations_equal_slices_of_the_full_logits(data_root, tmp_path, trained):
    _, out = trained
    logits = {}
    image = None
    for split in ("all", "base", "new"):
        trainer = build(teacher_cfg(data_root, tmp_path / split, ["DATASET.SUBSAMPLE_CLASSES", split]))
        trainer.load_model(out)
        trainer.set_model_mode("eval")
        image = one_batch(trainer)["img"] if image is None else image
        with torch.no_grad():
            logits[split] = trainer.model(image, text_features=trainer.classifier_text_features())
    assert logits["all"].shape[1] == 10
    # equal up to the rounding of a matrix product of another shape
    torch.testing.assert_close(logits["base"], logits["all"][:, :5], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(logits["new"], logits["all"][:, 5:], rtol=1e-6, atol=1e-6)


def test_labels_never_reach_a_loss(data_root, tmp_path):
    results = []
    for shuffle in (False, True):
        trainer = build(pkd_cfg(data_root, tmp_path / str(shuffle), opts=INIT_TEACHER))
        batch = one_batch(trainer)
        if shuffle:
            batch["label"] = (batch["label"] + torch.arange(1, len(batch["label"]) + 1)) % 10
        summary = train_step(trainer, batch)
        grads = {f"{n}.{k}": p.grad.clone() for n in trainer.get_model_names()
                 for k, p in trainer._models[n].named_parameters()}
        results.append((batch["label"], summary, grads))
    (labels, summary, grads), (shuffled, summary2, grads2) = results
    assert not torch.equal(labels, shuffled)
    assert set(summary) == {"loss", "kd", "semantic", "regularization", "teacher_agreement"}
    assert summary == summary2
    assert grads.keys() == grads2.keys() and all(torch.equal(grads[k], grads2[k]) for k in grads)
    assert all(g.abs().sum() > 0 for g in grads.values()), "every trainable parameter gets a gradient"



def test_cache_and_teacher_text_survive_save_load_and_resume(data_root, tmp_path):
    opts = [*INIT_TEACHER, "TEST.NO_TEST", True, "DATASET.NUM_SHOTS", 2]
    first = build(pkd_cfg(data_root, tmp_path / "a", opts=opts))
    first.train()
    saved = first.refiner.cache.entries.clone()
    loaded = build(pkd_cfg(data_root, tmp_path / "b", opts=opts, seed=7))
    loaded.load_model(str(tmp_path / "a"), epoch=1)
    assert torch.equal(loaded.refiner.cache.entries, saved) and loaded.teacher is None
    assert torch.equal(loaded.model.teacher_text.features, first.model.teacher_text.features)
    resumed = build(pkd_cfg(data_root, tmp_path / "a", opts=[*opts, "OPTIM.MAX_EPOCH", 2, "TRAIN.EXTEND_EPOCHS", True]))
    seen = {}
    run_epoch = resumed.run_epoch
    resumed.run_epoch = lambda: (seen.setdefault("entries", resumed.refiner.cache.entries.clone()), run_epoch())
    resumed.train()
    assert resumed.start_epoch == 1 and torch.equal(seen["entries"], saved)


@pytest.mark.parametrize("prec", ["bf16", "fp16"])
def test_every_precision_trains_on_the_cpu(data_root, tmp_path, prec):
    trainer = build(pkd_cfg(data_root, tmp_path, opts=[*INIT_TEACHER, "TRAINER.PROMPTKD.PREC", prec,
                                                       "USE_CUDA", False]))
    summary = train_step(trainer)
    assert all(torch.isfinite(torch.tensor(v)) for v in summary.values())
    assert trainer.precision.name == ("bf16" if prec == "bf16" else "fp32")


def test_protocol_sets_the_kd_weight_per_dataset_and_the_user_override_wins(monkeypatch):
    monkeypatch.setenv("TEACHER_DIR", "/teachers")
    setup = Setup("PromptKD", CFG)
    for dataset, weight in (("dtd", "200.0"), ("oxford_pets", "1000.0")):
        command = base2new_train(setup, dataset, 1).command()
        at = command.index("TRAINER.PROMPTKD.KD_WEIGHT")
        assert command[at + 1] == weight and command[command.index("TRAINER.PROMPTKD.TEACHER_DIR") + 1] == "/teachers"
    assert "--eval-only" not in base2new_test(setup, "dtd", 1).flags
    override = Setup("PromptKD", CFG, opts=("TRAINER.PROMPTKD.KD_WEIGHT", "5"))
    command = base2new_train(override, "dtd", 1).command()
    assert command[len(command) - 1 - command[::-1].index("TRAINER.PROMPTKD.KD_WEIGHT") + 1] == "5"


def run_launcher(step, args, data_root, out, cwd):
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "promptkd" / f"{step}.sh"), *args, *LAUNCH_OPTS, *map(str, TINY_OPTS),
         *INIT_TEACHER],
        cwd=cwd, env=launcher_env(data_root, out), capture_output=True, text=True,
    )
    assert proc.returncode == 0, f"{step} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def parsed_table(out, table):
    # one dataset of the paper's grid: the averages are partial, which the parser accepts only when asked
    proc = subprocess.run([sys.executable, str(REPO / "parse_test_res.py"), str(out), "--table", table,
                           "--format", "csv", "--accept-partial"], capture_output=True, text=True, check=True)
    return {r["Dataset"]: r for r in csv.DictReader(io.StringIO(proc.stdout))}


def test_promptkd_launchers_end_to_end_aggregated_by_the_parser(data_root, tmp_path):
    out = tmp_path / "output"
    for step in ("base2new_train", "base2new_test"):
        run_launcher(step, ["synthetic", "1"], data_root, out, tmp_path)
    run_launcher("xd_train", ["synthetic", "1"], data_root, out, tmp_path)
    tail = ("synthetic", f"shots_{SHOTS}", "PromptKD_TextRefiner", CFG, "seed1")
    base, new = (json.loads(out.joinpath("base2new", split, *tail, "result.json").read_text())
                 for split in ("train_base", "test_new"))
    assert (base["split"], new["split"], new["num_classes"], base["num_classes"]) == ("base", "new", 5, 5)
    assert new["load_epoch"] is None  # best_val: the novel evaluation loads model-best.pth.tar
    row = parsed_table(out, "base2new")["synthetic"]
    assert row["Method"] == "PromptKD_TextRefiner"
    assert float(row["Base"]) == pytest.approx(base["accuracy"], abs=1e-4)
    assert float(row["Novel"]) == pytest.approx(new["accuracy"], abs=1e-4)
    xd_key = RunKey("xd_train", "synthetic", SHOTS, "PromptKD_TextRefiner", f"{CFG}_cross_datasets", 1)
    cross = json.loads((Path(run_dir(str(out), xd_key)) / "result.json").read_text())
    assert cross["split"] == "all" and cross["num_classes"] == 10
    assert float(parsed_table(out, "xd")["synthetic"]["Accuracy"]) == pytest.approx(cross["accuracy"], abs=1e-4)
