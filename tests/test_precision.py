"""Precision policy: casting, autocast, CPU fallbacks, and one training epoch per PREC through train.py."""
import json

import pytest
import torch
import torch.nn as nn

from conftest import REPO, SYNTHETIC_YAML, TINY, run_train_py
from textrefiner.modeling import TextRefiner
from textrefiner.precision import Precision

TR_YAML = REPO / "configs" / "trainers" / "CoOp_TextRefiner" / "vit_b16_ep10_ctxv1.yaml"


def test_fp16_casts_matmul_weights_but_keeps_norms_and_cache_in_fp32():
    head = Precision("fp16", torch.device("cuda")).cast(TextRefiner(dim=16, token_dim=32))
    assert head.aggregation.linear.weight.dtype == torch.float16
    assert head.alignment.fc1.weight.dtype == torch.float16 and head.alignment.fc2.bias.dtype == torch.float16
    assert head.alignment.norm.weight.dtype == torch.float32
    assert head.cache.entries.dtype == torch.float32


@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_cuda_only_modes_fall_back_to_fp32_on_cpu(prec):
    with pytest.warns(UserWarning, match="needs a CUDA device"):
        p = Precision(prec, torch.device("cpu"))
    assert p.name == "fp32" and p.scaler is None and p.weight_dtype == torch.float32


def test_bf16_autocast_on_cpu():
    p = Precision("bf16", torch.device("cpu"))
    layer = nn.Linear(4, 4)
    with p.autocast():
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32


def test_fp16_warns_about_adam_nan_trap():
    with pytest.warns(UserWarning, match="NaN"):
        Precision("fp16", torch.device("cuda")).warn_about_traps("adam")


def test_unknown_precision_is_rejected():
    with pytest.raises(ValueError, match="fp32"):
        Precision("int8", torch.device("cpu"))


@pytest.mark.parametrize("prec", ["fp32", "bf16", "fp16"])
def test_one_epoch_end_to_end_per_precision(data_root, tmp_path, prec):
    out = tmp_path / prec
    run_train_py([
        "--root", data_root, "--seed", 1, "--trainer", "CoOp_TextRefiner",
        "--dataset-config-file", SYNTHETIC_YAML, "--config-file", TR_YAML, "--output-dir", out,
        "MODEL.BACKBONE.NAME", TINY, "OPTIM.MAX_EPOCH", 1, "DATASET.NUM_SHOTS", 2, "DATALOADER.NUM_WORKERS", 0,
        "DATALOADER.TRAIN_X.BATCH_SIZE", 8, "TRAINER.COOP.PREC", prec, "USE_CUDA", False,
    ])
    log = (out / "log.txt").read_text()
    assert "Finish training" in log and "* accuracy:" in log
    result = json.loads((out / "result.json").read_text())
    assert 0 <= result["accuracy"] <= 100
    if prec == "fp16":  # on the CPU (USE_CUDA False): the run says it falls back, in its log
        assert "needs a CUDA device" in log
