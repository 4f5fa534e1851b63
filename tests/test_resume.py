"""Exact resume: a run interrupted at any step and resumed ends bit-identical to an uninterrupted one;
the committed checkpoint set is what resumes (pointers out of step are rewritten); folders without
one (Dassl's, older versions') with mixed-epoch pointers roll back; temp and staged files go;
changed settings are refused. Kills inside a save: test_checkpoint_kills.py."""
import json
import os

import pytest
import torch

from conftest import REPO, build, make_cfg, trainable_state

COOP_TR_YAML = REPO / "configs" / "trainers" / "CoOp_TextRefiner" / "vit_b16_ep10_ctxv1.yaml"
MAPLE_TR_YAML = REPO / "configs" / "trainers" / "MaPLe_TextRefiner" / "vit_b16_c2_ep5_batch4_2ctx.yaml"
CONFIGS = {"CoOp_TextRefiner": COOP_TR_YAML, "MaPLe_TextRefiner": MAPLE_TR_YAML}
# 3 epochs of 5 batches, a checkpoint every epoch, best-val selection (so model-best and the
# best result must survive the resume too), augmentation on (random crops and flips)
RUN_OPTS = ["OPTIM.MAX_EPOCH", 3, "TRAIN.CHECKPOINT_FREQ", 1, "TEST.FINAL_MODEL", "best_val",
            "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "DATASET.NUM_SHOTS", 2,
            "TRAINER.MAPLE.PROMPT_DEPTH", 2, "TRAINER.MAPLE.PREC", "fp32"]


class Interrupt(Exception):
    pass


def cfg_for(root, trainer, out, opts=()):
    return make_cfg(root, trainer, str(out), config_file=CONFIGS[trainer], opts=[*RUN_OPTS, *opts])


def train_interrupted(cfg, stop_at_step: int):
    """Train, raising inside forward_backward at global step ``stop_at_step`` (as a crash would)."""
    trainer = build(cfg)
    steps = {"n": 0}
    original = trainer.forward_backward

    def forward_backward(batch):
        steps["n"] += 1
        if steps["n"] == stop_at_step:
            raise Interrupt()
        return original(batch)

    trainer.forward_backward = forward_backward
    with pytest.raises(Interrupt):
        trainer.train()


def finish(cfg):
    trainer = build(cfg)
    trainer.train()
    return trainer


def result(out):
    record = json.loads((out / "result.json").read_text())
    return {k: record[k] for k in ("accuracy", "macro_f1", "per_class_accuracy", "num_images")}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def checkpoint_tensors(out, name, file):
    return torch.load(out / name / file, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.parametrize("trainer_name,stop_at_step", [("CoOp_TextRefiner", 8), ("MaPLe_TextRefiner", 12)])
def test_interrupted_run_resumes_bit_identical(data_root, tmp_path, trainer_name, stop_at_step):
    reference = finish(cfg_for(data_root, trainer_name, tmp_path / "ref"))
    cfg = cfg_for(data_root, trainer_name, tmp_path / "cut")
    train_interrupted(cfg, stop_at_step)  # in epoch 2 (5 steps per epoch); epoch 1 is saved
    resumed = finish(cfg)
    assert resumed.start_epoch == (stop_at_step - 1) // 5
    assert_same_state(trainable_state(reference), trainable_state(resumed))
    assert result(tmp_path / "ref") == result(tmp_path / "cut")
    for name in reference.get_model_names():
        for file in ("model-best.pth.tar", "model.pth.tar-3"):
            assert_same_state(checkpoint_tensors(tmp_path / "ref", name, file),
                              checkpoint_tensors(tmp_path / "cut", name, file))
    best = torch.load(tmp_path / "cut" / "prompt_learner" / "model-best.pth.tar", weights_only=True)
    ref_best = torch.load(tmp_path / "ref" / "prompt_learner" / "model-best.pth.tar", weights_only=True)
    assert (best["epoch"], best["val_result"]) == (ref_best["epoch"], ref_best["val_result"])


def test_mixed_epoch_set_rolls_back_to_the_shared_epoch(data_root, tmp_path, capsys):
    """A folder of Dassl or an older version (pointers, no checkpoint_set.json) killed between the two
    modules' pointer updates leaves textrefiner one epoch behind."""
    reference = finish(cfg_for(data_root, "CoOp_TextRefiner", tmp_path / "ref"))
    out = tmp_path / "cut"
    cfg = cfg_for(data_root, "CoOp_TextRefiner", out)
    train_interrupted(cfg, 13)  # epochs 1 and 2 saved
    (out / "checkpoint_set.json").unlink()
    (out / "textrefiner" / "checkpoint").write_text("model.pth.tar-1\n")
    resumed = finish(cfg)
    assert "rolling back to epoch 1" in capsys.readouterr().out
    assert resumed.start_epoch == 1
    assert_same_state(trainable_state(reference), trainable_state(resumed))


def test_mixed_epochs_without_a_shared_epoch_are_refused(data_root, tmp_path):
    from textrefiner.errors import UserError

    out = tmp_path / "cut"
    cfg = cfg_for(data_root, "CoOp_TextRefiner", out, opts=["TEST.FINAL_MODEL", "last_step"])
    train_interrupted(cfg, 13)
    (out / "checkpoint_set.json").unlink()  # a folder of Dassl or an older version
    (out / "textrefiner" / "model.pth.tar-2").unlink()
    (out / "textrefiner" / "model.pth.tar-1").rename(out / "textrefiner" / "model.pth.tar-0")
    (out / "textrefiner" / "checkpoint").write_text("model.pth.tar-0\n")
    with pytest.raises(UserError, match="different epochs .*prompt_learner: 2, textrefiner: 1"):
        build(cfg).train()


def test_pointers_out_of_step_with_the_committed_set_are_rewritten(data_root, tmp_path, capsys):
    """checkpoint_set.json names the last complete save: pointers left behind (a kill after the
    commit) are moved to it, and the run resumes from it."""
    reference = finish(cfg_for(data_root, "CoOp_TextRefiner", tmp_path / "ref"))
    out = tmp_path / "cut"
    cfg = cfg_for(data_root, "CoOp_TextRefiner", out)
    train_interrupted(cfg, 13)  # epochs 1 and 2 saved
    (out / "textrefiner" / "checkpoint").write_text("model.pth.tar-1\n")
    capsys.readouterr()
    resumed = finish(cfg)
    printed = capsys.readouterr().out
    assert "Finished the interrupted save of epoch 2" in printed and "Resuming after epoch 2" in printed
    assert resumed.start_epoch == 2
    assert_same_state(trainable_state(reference), trainable_state(resumed))
    assert (out / "textrefiner" / "checkpoint").read_text() == "model.pth.tar-3\n"


def test_a_committed_set_missing_a_file_is_refused_naming_it(data_root, tmp_path):
    from textrefiner.errors import UserError

    out = tmp_path / "cut"
    cfg = cfg_for(data_root, "CoOp_TextRefiner", out, opts=["TEST.FINAL_MODEL", "last_step"])
    train_interrupted(cfg, 13)
    (out / "textrefiner" / "model.pth.tar-2").unlink()
    with pytest.raises(UserError, match="textrefiner/model.pth.tar-2 is missing: checkpoint_set.json records it"):
        build(cfg).train()


def test_stale_partial_files_are_removed_on_resume(data_root, tmp_path):
    out = tmp_path / "cut"
    cfg = cfg_for(data_root, "CoOp_TextRefiner", out, opts=["OPTIM.MAX_EPOCH", 2, "TEST.NO_TEST", True])
    train_interrupted(cfg, 7)
    stale = [out / "prompt_learner" / "model.pth.tar-2.partial-abc", out / "result.json.tmp-123",
             out / "textrefiner" / "model.pth.tar-2.staged-2"]  # a staged file of a save never committed
    for path in stale:
        path.write_bytes(b"half a file")
    finish(cfg)
    assert not any(path.exists() for path in stale)


@pytest.mark.parametrize("change,named", [
    (["OPTIM.LR", 0.01], "OPTIM.LR: 0.002 in the checkpoint, 0.01 now"),
    (["OPTIM.MAX_EPOCH", 3], "TRAIN.EXTEND_EPOCHS True"),
    (["TRAINER.TEXTREFINER.ALPHA", 0.5], "TRAINER.TEXTREFINER.ALPHA: 0.2 in the checkpoint, 0.5 now"),
])
def test_changed_settings_on_resume_are_refused_naming_both(data_root, tmp_path, change, named):
    from textrefiner.errors import UserError

    out, short = tmp_path / "cut", ["OPTIM.MAX_EPOCH", 2, "TEST.NO_TEST", True]
    train_interrupted(cfg_for(data_root, "CoOp_TextRefiner", out, opts=short), 7)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "log.txt"}
    with pytest.raises(UserError, match=named.replace("(", r"\(").replace(")", r"\)")):
        build(cfg_for(data_root, "CoOp_TextRefiner", out, opts=[*short, *change])).train()
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "log.txt"}


def test_extending_epochs_replans_the_schedule(data_root, tmp_path):
    """A finished 2-epoch run extended to 4 continues with the 4-epoch cosine schedule's rates."""
    out = tmp_path / "run"
    opts = ["TEST.NO_TEST", True, "OPTIM.WARMUP_EPOCH", 0]
    finish(cfg_for(data_root, "CoOp_TextRefiner", out, opts=[*opts, "OPTIM.MAX_EPOCH", 2]))
    extended = build(cfg_for(data_root, "CoOp_TextRefiner", out,
                             opts=[*opts, "OPTIM.MAX_EPOCH", 4, "TRAIN.EXTEND_EPOCHS", True]))
    lrs = []
    original = extended.run_epoch

    def run_epoch():
        lrs.append(extended.get_current_lr())
        original()

    extended.run_epoch = run_epoch
    extended.train()
    planned = build(cfg_for(data_root, "CoOp_TextRefiner", tmp_path / "planned", opts=[*opts, "OPTIM.MAX_EPOCH", 4]))
    expected = []
    for _ in range(4):
        expected.append(planned.get_current_lr())
        planned.update_lr()
    assert lrs == pytest.approx(expected[2:])
    assert os.path.exists(out / "prompt_learner" / "model.pth.tar-4")
