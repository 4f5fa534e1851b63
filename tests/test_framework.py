"""The framework layer: config defaults, schedules, evaluator lines, checkpoints, logger."""
import io
import math
import os
import sys
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch

from conftest import COOP_YAML, SYNTHETIC_YAML
from textrefiner import framework
from textrefiner.config import get_cfg
from textrefiner.framework import build_lr_scheduler, build_optimizer, get_cfg_default
from textrefiner.framework.builtin.evaluator import Classification, macro_f1_score
from textrefiner.framework.builtin.utils import setup_logger
from textrefiner.framework.checkpoint import load_checkpoint, save_checkpoint


def test_defaults_have_dassl_names_and_values():
    cfg = get_cfg_default()
    assert cfg.OPTIM.NAME == "adam" and cfg.OPTIM.LR == 0.0003 and cfg.OPTIM.LR_SCHEDULER == "single_step"
    assert cfg.OPTIM.WARMUP_TYPE == "linear" and cfg.OPTIM.WARMUP_CONS_LR == 1e-5
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 32 and cfg.DATALOADER.TEST.SAMPLER == "SequentialSampler"
    assert cfg.INPUT.INTERPOLATION == "bilinear" and tuple(cfg.INPUT.SIZE) == (224, 224)
    assert cfg.TEST.FINAL_MODEL == "last_step" and cfg.TRAIN.PRINT_FREQ == 10


def test_project_keys_and_yaml_merge_order():
    cfg = get_cfg()
    assert cfg.TRAINER.COOP.PREC == "fp16" and cfg.TRAINER.COOP.N_CTX == 16
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all" and cfg.MODEL.BACKBONE.PATH == ""
    cfg.merge_from_file(str(SYNTHETIC_YAML))
    cfg.merge_from_file(str(COOP_YAML))
    cfg.merge_from_list(["OPTIM.LR", "0.01", "TRAINER.COOP.CTX_INIT", "a_photo"])
    assert cfg.DATASET.NAME == "Synthetic"
    assert cfg.OPTIM.NAME == "sgd" and cfg.OPTIM.MAX_EPOCH == 10 and cfg.INPUT.INTERPOLATION == "bicubic"
    assert cfg.OPTIM.LR == 0.01 and cfg.TRAINER.COOP.CTX_INIT == "a_photo"


def _lrs(optim_opts, epochs=10):
    cfg = get_cfg_default()
    cfg.merge_from_list(optim_opts)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], cfg.OPTIM)
    sched = build_lr_scheduler(opt, cfg.OPTIM)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_constant_warmup_then_cosine_equals_dassl():
    lrs = _lrs(["OPTIM.NAME", "sgd", "OPTIM.LR", 0.002, "OPTIM.LR_SCHEDULER", "cosine", "OPTIM.MAX_EPOCH", 10,
                "OPTIM.WARMUP_EPOCH", 1, "OPTIM.WARMUP_TYPE", "constant", "OPTIM.WARMUP_CONS_LR", 1e-5])
    # Dassl: warm-up epochs at the constant lr, then cosine restarted from its epoch 0
    expected = [1e-5] + [0.001 * (1 + math.cos(math.pi * (e - 1) / 10)) for e in range(1, 10)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)


def test_linear_warmup_and_no_recount():
    lrs = _lrs(["OPTIM.LR", 0.1, "OPTIM.LR_SCHEDULER", "cosine", "OPTIM.MAX_EPOCH", 8, "OPTIM.WARMUP_EPOCH", 2,
                "OPTIM.WARMUP_TYPE", "linear", "OPTIM.WARMUP_MIN_LR", 1e-4], epochs=8)
    np.testing.assert_allclose(lrs[:3], [1e-4, 0.05, 0.1], rtol=1e-12)
    if framework.FRAMEWORK == "dassl":
        return  # Dassl's WARMUP_RECOUNT False differs by design (see builtin/optim.py)
    shifted = _lrs(["OPTIM.LR", 0.1, "OPTIM.LR_SCHEDULER", "cosine", "OPTIM.MAX_EPOCH", 8, "OPTIM.WARMUP_EPOCH", 2,
                    "OPTIM.WARMUP_TYPE", "constant", "OPTIM.WARMUP_RECOUNT", False], epochs=8)
    np.testing.assert_allclose(shifted[2:], [0.05 * (1 + math.cos(math.pi * e / 8)) for e in range(2, 8)], rtol=1e-12)


def test_step_scheduler_and_optimizers():
    assert _lrs(["OPTIM.LR", 1.0, "OPTIM.STEPSIZE", (3,), "OPTIM.GAMMA", 0.5], epochs=7) == [1, 1, 1, .5, .5, .5, .25]
    cfg = get_cfg_default()
    p = [torch.nn.Parameter(torch.zeros(1))]
    for name, cls in [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]:
        cfg.OPTIM.NAME = name
        assert isinstance(build_optimizer(p, cfg.OPTIM), cls)
    cfg.OPTIM.NAME = "lion"
    with pytest.raises(ValueError, match="lion"):
        build_optimizer(p, cfg.OPTIM)


def test_evaluator_prints_dassl_lines():
    cfg = get_cfg_default()
    ev = Classification(cfg, lab2cname={0: "a", 1: "b", 2: "c"})
    logits = torch.tensor([[9.0, 0, 0], [0, 9.0, 0], [0, 9.0, 0], [0, 0, 9.0]])
    ev.process(logits, torch.tensor([0, 1, 2, 2]))
    buf = io.StringIO()
    with redirect_stdout(buf):
        res = ev.evaluate()
    lines = buf.getvalue().splitlines()
    assert lines == ["=> result", "* total: 4", "* correct: 3", "* accuracy: 75.0%", "* error: 25.0%",
                     "* macro_f1: 77.8%"]
    assert list(res) == ["accuracy", "error_rate", "macro_f1"]


def test_macro_f1_matches_definition_over_true_labels():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 3, 2])  # label 3 is predicted but never true: not averaged
    per_label = []
    for label in (0, 1, 2):
        tp = np.sum((y_pred == label) & (y_true == label))
        precision = tp / max(np.sum(y_pred == label), 1)
        recall = tp / np.sum(y_true == label)
        per_label.append(0 if tp == 0 else 2 * precision * recall / (precision + recall))
    assert macro_f1_score(y_true, y_pred) == pytest.approx(np.mean(per_label))


def test_checkpoint_is_atomic_and_in_dassl_format(tmp_path, monkeypatch):
    state = {"state_dict": {"w": torch.ones(2)}, "epoch": 3, "optimizer": None, "scheduler": None, "val_result": 1.0}
    path = save_checkpoint(dict(state), str(tmp_path / "m"))
    assert path.endswith("model.pth.tar-3")
    assert (tmp_path / "m" / "checkpoint").read_text().strip() == "model.pth.tar-3"
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(2))

    def crash(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(dict(state, epoch=4), str(tmp_path / "m"))
    assert sorted(os.listdir(tmp_path / "m")) == ["checkpoint", "model.pth.tar-3"]
    assert (tmp_path / "m" / "checkpoint").read_text().strip() == "model.pth.tar-3"


def test_logger_tees_stdout_and_keeps_previous_logs(tmp_path):
    saved = sys.stdout
    try:
        setup_logger(str(tmp_path))
        print("first run")
        setup_logger(str(tmp_path))
        print("second run")
        sys.stdout.flush()
    finally:
        if sys.stdout is not saved:
            sys.stdout.close()
            sys.stdout = saved
    logs = sorted(os.listdir(tmp_path))
    assert logs[0] == "log.txt" and logs[1].startswith("log.txt-")
    assert (tmp_path / "log.txt").read_text() == "first run\n"
    assert (tmp_path / logs[1]).read_text() == "second run\n"


def test_framework_choice_is_reported():
    assert framework.FRAMEWORK in ("builtin", "dassl")
    want = os.environ.get("TEXTREFINER_FRAMEWORK", "auto")
    if want != "auto":
        assert framework.FRAMEWORK == want
