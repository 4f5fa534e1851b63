"""Real Dassl: our patches of its torch >= 2.6 breakages, and equality with the built-in engine.

Skipped where Dassl is not installed (CI); see docs/interop.md, "Running on real Dassl".
"""
import importlib.util
import re

import pytest
import torch

from conftest import COOP_YAML, SYNTHETIC_YAML, TINY, run_train_py

pytestmark = pytest.mark.skipif(importlib.util.find_spec("dassl") is None, reason="real Dassl is not installed")

WARMUP_COSINE = ["OPTIM.NAME", "sgd", "OPTIM.LR", 0.002, "OPTIM.LR_SCHEDULER", "cosine", "OPTIM.MAX_EPOCH", 10,
                 "OPTIM.WARMUP_EPOCH", 1, "OPTIM.WARMUP_TYPE", "constant", "OPTIM.WARMUP_CONS_LR", 1e-5]


def _lrs(build_optimizer, build_lr_scheduler, cfg):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], cfg.OPTIM)
    sched = build_lr_scheduler(opt, cfg.OPTIM)
    out = []
    for _ in range(10):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out, sched


def test_warmup_scheduler_works_and_matches_builtin():
    import textrefiner.framework._dassl as dassl_fw
    from textrefiner.framework import builtin

    cfg = builtin.get_cfg_default()
    cfg.merge_from_list(WARMUP_COSINE)
    dassl_lrs, _ = _lrs(dassl_fw.build_optimizer, dassl_fw.build_lr_scheduler, cfg)
    builtin_lrs, _ = _lrs(builtin.build_optimizer, builtin.build_lr_scheduler, cfg)
    assert dassl_lrs == pytest.approx(builtin_lrs, rel=1e-12)


def test_checkpoint_with_warmup_scheduler_loads(tmp_path):
    import dassl.utils

    import textrefiner.framework._dassl as dassl_fw
    from textrefiner.framework import builtin

    cfg = builtin.get_cfg_default()
    cfg.merge_from_list(WARMUP_COSINE)
    _, sched = _lrs(dassl_fw.build_optimizer, dassl_fw.build_lr_scheduler, cfg)
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"scheduler": sched.state_dict()}, path)
    assert "successor_state" in dassl.utils.load_checkpoint(str(path))["scheduler"]


def test_checkpoint_written_by_unpatched_dassl_resumes_the_real_lr(tmp_path):
    import textrefiner.framework._dassl as dassl_fw
    from textrefiner.framework import builtin

    cfg = builtin.get_cfg_default()
    cfg.merge_from_list(WARMUP_COSINE)
    _, sched = _lrs(dassl_fw.build_optimizer, dassl_fw.build_lr_scheduler, cfg)
    old_style = {k: v for k, v in sched.__dict__.items() if k != "optimizer"}  # successor pickled whole
    p = torch.nn.Parameter(torch.zeros(1))
    opt = dassl_fw.build_optimizer([p], cfg.OPTIM)
    fresh = dassl_fw.build_lr_scheduler(opt, cfg.OPTIM)
    fresh.load_state_dict(old_style)
    assert fresh.successor.optimizer is opt
    assert fresh.successor.last_epoch == sched.successor.last_epoch


def _losses(log: str):
    return re.findall(r"loss ([\d.]+) \(", log)


def test_builtin_and_dassl_train_identically(data_root, tmp_path):
    logs = {}
    for fw in ("builtin", "dassl"):
        out = tmp_path / fw
        run_train_py(
            ["--root", data_root, "--seed", 3, "--trainer", "CoOp", "--dataset-config-file", SYNTHETIC_YAML,
             "--config-file", COOP_YAML, "--output-dir", out, "MODEL.BACKBONE.NAME", TINY, "OPTIM.MAX_EPOCH", 2,
             "DATASET.NUM_SHOTS", 4, "DATALOADER.NUM_WORKERS", 0, "DATALOADER.TRAIN_X.BATCH_SIZE", 4,
             "TRAINER.COOP.PREC", "fp32"],
            env={"TEXTREFINER_FRAMEWORK": fw},
        )
        logs[fw] = (out / "log.txt").read_text()
    assert _losses(logs["builtin"]) and _losses(logs["builtin"]) == _losses(logs["dassl"])
    accs = {fw: re.findall(r"\* accuracy: ([\d.]+)%", log) for fw, log in logs.items()}
    assert accs["builtin"] == accs["dassl"]
