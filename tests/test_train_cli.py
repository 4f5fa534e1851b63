"""train.py end to end: train on base classes, evaluate the saved model on new classes."""
import importlib.util
import json
import re

import pytest

from conftest import COOP_YAML, SYNTHETIC_YAML, TINY, run_train_py

RESULT_LINES = ["=> result", "* total:", "* correct:", "* accuracy:", "* error:", "* macro_f1:"]


def _common(root, out, trainer="CoOp"):
    return [
        "--root", root, "--seed", 1, "--trainer", trainer,
        "--dataset-config-file", SYNTHETIC_YAML, "--config-file", COOP_YAML, "--output-dir", out,
    ]


def _opts(subsample):
    return [
        "MODEL.BACKBONE.NAME", TINY, "OPTIM.MAX_EPOCH", 2, "DATASET.NUM_SHOTS", 4, "DATALOADER.NUM_WORKERS", 0,
        "DATALOADER.TRAIN_X.BATCH_SIZE", 8, "DATASET.SUBSAMPLE_CLASSES", subsample,
    ]


def _base_to_new(data_root, tmp_path, env=None):
    train_dir, test_dir = tmp_path / "train_base", tmp_path / "test_new"
    run_train_py(_common(data_root, train_dir) + _opts("base"), env=env)
    log = (train_dir / "log.txt").read_text()
    for line in RESULT_LINES + ["Finish training", "** System info **", "** Config **"]:
        assert line in log
    assert re.search(r"\* accuracy: \d+\.\d%", log)
    run_train_py(
        _common(data_root, test_dir) + ["--eval-only", "--model-dir", train_dir, "--load-epoch", 2] + _opts("new"),
        env=env,
    )
    test_log = (test_dir / "log.txt").read_text()
    assert "model.pth.tar-2" in test_log and all(line in test_log for line in RESULT_LINES)
    return json.loads((train_dir / "result.json").read_text()), json.loads((test_dir / "result.json").read_text())


def test_train_then_eval_only_builtin(data_root, tmp_path):
    base, new = _base_to_new(data_root, tmp_path, env={"TEXTREFINER_FRAMEWORK": "builtin"})
    assert (base["split"], new["split"]) == ("base", "new")
    assert base["framework"] == new["framework"] == "builtin"
    assert base["num_classes"] == 5 and new["num_classes"] == 5
    assert new["load_epoch"] == 2 and new["num_images"] == 50
    assert 0 <= new["accuracy"] <= 100 and len(new["per_class_accuracy"]) == 5


@pytest.mark.skipif(importlib.util.find_spec("dassl") is None, reason="real Dassl is not installed")
def test_train_then_eval_only_on_real_dassl(data_root, tmp_path):
    base, new = _base_to_new(data_root, tmp_path, env={"TEXTREFINER_FRAMEWORK": "dassl"})
    assert base["framework"] == new["framework"] == "dassl"


def test_bad_config_path_is_named(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--config-file", str(tmp_path / "missing.yaml")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode != 0 and "missing.yaml not found" in proc.stderr
