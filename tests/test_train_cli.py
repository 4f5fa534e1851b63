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


def upstream_parse(log: str, end_signal: str):
    """What CoOp's and Dassl's parse_test_res.py read from a log: from the line equal to ``end_signal``
    on (it latches), the last ``* accuracy: X%``; None if there is none."""
    value, good_to_go = None, False
    for line in log.splitlines():
        line = line.strip()
        good_to_go = good_to_go or line == end_signal
        match = re.search(r"\* accuracy: ([\.\deE+-]+)%", line)
        if match and good_to_go:
            value = float(match.group(1))
    return value


def _base_to_new(data_root, tmp_path, env=None):
    train_dir, test_dir = tmp_path / "train_base", tmp_path / "test_new"
    run_train_py(_common(data_root, train_dir) + _opts("base"), env=env)
    log = (train_dir / "log.txt").read_text()
    for line in RESULT_LINES + ["Finish training", "** System info **", "** Config **"]:
        assert line in log
    assert re.search(r"\* accuracy: \d+\.\d%", log)
    # CoOp's parser waits for "Finished training", Dassl's for "Finish training": adjacent, both read the final test
    lines = [line.strip() for line in log.splitlines()]
    assert lines[lines.index("Finished training") + 1] == "Finish training"
    final = json.loads((train_dir / "result.json").read_text())["accuracy"]
    assert upstream_parse(log, "Finished training") == upstream_parse(log, "Finish training") == round(final, 1)
    run_train_py(
        _common(data_root, test_dir) + ["--eval-only", "--model-dir", train_dir, "--load-epoch", 2] + _opts("new"),
        env=env,
    )
    test_log = (test_dir / "log.txt").read_text()
    assert "model.pth.tar-2" in test_log and all(line in test_log for line in RESULT_LINES)
    assert "Finished training" not in test_log  # evaluation logs: --test-log ("=> result") as before
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


def _failing_train_py(args):
    import subprocess
    import sys

    from conftest import REPO

    return subprocess.run([sys.executable, str(REPO / "train.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


@pytest.mark.parametrize("weights", ["path", "name"])
def test_missing_clip_weights_give_one_line_naming_where_to_put_them(data_root, tmp_path, weights):
    missing = tmp_path / "ViT-B-16.pt"
    backbone = ["MODEL.BACKBONE.PATH", missing] if weights == "path" else ["MODEL.BACKBONE.NAME", missing]
    opts = _opts("base")
    opts[opts.index("MODEL.BACKBONE.NAME"): opts.index("MODEL.BACKBONE.NAME") + 2] = ["MODEL.BACKBONE.NAME", "ViT-B/16"]
    proc = _failing_train_py(_common(data_root, tmp_path / "out") + opts + backbone)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("Error: ") and str(missing) in last and "put the" in last and "CLIP weights there" in last
    assert last in (tmp_path / "out" / "log.txt").read_text()


def test_warnings_reach_log_txt(data_root, tmp_path):
    """PREC fp16 falls back to fp32 on the CPU: the warning is in the run's log, not only on stderr."""
    out = tmp_path / "out"
    run_train_py(_common(data_root, out) + _opts("base") + ["OPTIM.MAX_EPOCH", 1, "TRAINER.COOP.PREC", "fp16",
                                                            "USE_CUDA", False])
    assert "Warning: UserWarning: PREC fp16 needs a CUDA device" in (out / "log.txt").read_text()


def test_zero_shot_clip_evaluates_with_dassl_result_lines(data_root, tmp_path):
    out = tmp_path / "zs"
    args = ["--root", data_root, "--seed", 1, "--trainer", "ZeroshotCLIP", "--dataset-config-file", SYNTHETIC_YAML,
            "--config-file", COOP_YAML, "--output-dir", out, "--eval-only",
            "MODEL.BACKBONE.NAME", TINY, "DATALOADER.NUM_WORKERS", 0, "DATASET.SUBSAMPLE_CLASSES", "new"]
    run_train_py(args)
    log = (out / "log.txt").read_text()
    assert all(line in log for line in RESULT_LINES)
    result = json.loads((out / "result.json").read_text())
    assert result["trainer"] == "ZeroshotCLIP" and result["split"] == "new" and result["num_classes"] == 5
    reported = float(re.search(r"\* accuracy: (\d+\.\d)%", log).group(1))
    assert result["accuracy"] == pytest.approx(reported, abs=0.05)
