"""Cross-dataset / domain generalisation from a source other than ImageNet (SOURCE=, --source): the
testbed's Table 2, source testbed_shapes -> its domain-shifted variants. The launchers write the upstream
layout (<source>/<Trainer>/<cfg>_<K>shots/seed<S>, evaluation/<Trainer>/<cfg>_<K>shots/<target>/seed<S>)
and parse_test_res.py's xd table reads it back, grouped under that source."""
import csv
import hashlib
import io
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from launch_helpers import LAUNCH_OPTS, SHOTS, launcher_env
from textrefiner.cli.parse_test_res import main as parse_test_res
from textrefiner.protocols import Setup
from textrefiner.protocols.launch import main as launch
from textrefiner.protocols.steps import xd_test, xd_train, xd_train_target
from textrefiner.results.benchmarks import TESTBED_DG_TARGETS, TESTBED_XD_SOURCE
from textrefiner.results.layout import RunKey, parse_run_dir, run_dir
from textrefiner.results.tables import protocol_summary
from textrefiner.sweep.cli import main as sweep
from textrefiner.testbed import datasets as testbed_datasets

CFG = "vit_b16_ep10_ctxv1"
SMALL = {"train": 2, "val": 1, "test": 2}


def generate_small(root, cls, counts):
    """Generate a testbed dataset with a few images per class (the launchers then find it and read it)."""
    original = cls.counts
    cls.counts = counts
    try:
        cls.load_records(str(root))
    finally:
        cls.counts = original


def test_clutter_target_is_deterministic_with_the_source_classes(tmp_path):
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        generate_small(root, testbed_datasets.TestbedShapesClutter, {"test": 2})
    files = [sorted((root / "testbed_shapes_clutter").rglob("*.png")) for root in roots]
    assert len(files[0]) == 24 * 2
    digest = [hashlib.sha256(b"".join(f.read_bytes() for f in fs)).hexdigest() for fs in files]
    assert digest[0] == digest[1]
    split = json.loads((roots[0] / "testbed_shapes_clutter" / "split_testbed_shapes_clutter.json").read_text())
    assert split["train"] == split["val"] == [] and len({label for _, label, _ in split["test"]}) == 24
    assert testbed_datasets.TestbedShapesClutter.classnames_ == testbed_datasets.TestbedShapes.classnames_
    assert [name for _, _, name in split["test"][::2]] == testbed_datasets.TestbedShapes.classnames_
    assert testbed_datasets.TestbedShapesClutter.test_only
    assert (REPO / "configs" / "datasets" / "testbed_shapes_clutter.yaml").read_text().count("TestbedShapesClutter")


def test_a_source_training_takes_the_upstream_few_shot_template(tmp_path):
    setup = Setup("CoOp", CFG, output=str(tmp_path))
    train = xd_train(setup, seed=2, shots=16, source=TESTBED_XD_SOURCE)
    assert train.output_dir == os.path.join(str(tmp_path), TESTBED_XD_SOURCE, "CoOp", f"{CFG}_16shots", "seed2")
    assert parse_run_dir(os.path.relpath(train.output_dir, tmp_path)) == RunKey(
        "few_shot", TESTBED_XD_SOURCE, 16, "CoOp", CFG, 2)
    test = xd_test(setup, "testbed_shapes_sketch", seed=2, shots=16, source=TESTBED_XD_SOURCE)
    assert test.evaluates.output_dir == train.output_dir
    assert test.output_dir == os.path.join(str(tmp_path), "evaluation", "CoOp", f"{CFG}_16shots",
                                           "testbed_shapes_sketch", "seed2")
    # the default source is ImageNet, and a training on a target (PromptKD's students) keeps the xd template
    assert xd_train(setup, seed=2).output_dir == os.path.join(str(tmp_path), "imagenet", "CoOp", f"{CFG}_16shots",
                                                               "seed2")
    student = xd_train_target(Setup("PromptKD", "vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets"), "dtd", seed=1)
    assert student.output_dir.split(os.sep)[:2] == ["output", "xd"]
    assert run_dir("output", student.key) == student.output_dir


def write_record(folder, accuracy, model_dir=""):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "result.json"), "w") as f:
        json.dump({"accuracy": accuracy, "model_dir": model_dir}, f)


def test_xd_table_groups_the_evaluations_of_each_source(tmp_path, capsys):
    for source, target, accuracy in (("imagenet", "imagenet_r", 60.0), (TESTBED_XD_SOURCE, "testbed_shapes_sketch", 30.0)):
        train = xd_train(Setup("CoOp", CFG, output=str(tmp_path)), seed=1, source=source)
        write_record(train.output_dir, accuracy + 10)
        # the evaluation names its model's folder, as train.py records it (here relative to another folder)
        model_dir = os.path.join("elsewhere", os.path.relpath(train.output_dir, tmp_path))
        write_record(xd_test(Setup("CoOp", CFG, output=str(tmp_path)), target, 1, source=source).output_dir,
                     accuracy, model_dir)
    # zero-shot CLIP evaluates no model: its target names its source (the testbed's targets)
    for target in TESTBED_DG_TARGETS:
        write_record(xd_test(Setup("ZeroshotCLIP", "testbed", output=str(tmp_path)), target, 1,
                             source=TESTBED_XD_SOURCE).output_dir, 20.0)
    with pytest.raises(ValueError, match=r"several sources \(imagenet, testbed_shapes\).*--source"):
        protocol_summary(str(tmp_path), "xd")
    testbed = protocol_summary(str(tmp_path), "xd", source=TESTBED_XD_SOURCE)
    assert testbed.rows == [TESTBED_XD_SOURCE, "testbed_shapes_clutter", "testbed_shapes_sketch",
                            "Average (domain generalisation)"]
    assert testbed.get("CoOp", TESTBED_XD_SOURCE, "Accuracy").mean == 40.0
    assert testbed.get("CoOp", "testbed_shapes_sketch", "Accuracy").mean == 30.0
    assert testbed.get("ZeroshotCLIP", "Average (domain generalisation)", "Accuracy").mean == 20.0
    assert "CoOp: no results for testbed_shapes_clutter" in testbed.notes
    assert "Trained on testbed_shapes" in testbed.legend and "imagenet_r" not in testbed.rows
    imagenet = protocol_summary(str(tmp_path), "xd", source="imagenet")
    assert imagenet.rows[:2] == ["imagenet", "imagenet_r"] and imagenet.methods == ["CoOp"]
    with pytest.raises(SystemExit) as stop:
        parse_test_res([str(tmp_path), "--table", "base2new", "--source", TESTBED_XD_SOURCE])
    assert "--source is for --table xd" in str(stop.value.code)


def test_per_target_hosts_refuse_another_source(monkeypatch, capsys):
    monkeypatch.setenv("SOURCE", TESTBED_XD_SOURCE)
    with pytest.raises(SystemExit) as stop:
        launch(["promptkd", "xd_train", "dtd", "1"])
    assert stop.value.code == 2 and "unset SOURCE" in capsys.readouterr().err


def test_sweep_source_flag_plans_the_testbed_targets(tmp_path, capsys):
    sweep(["--protocol", "xd", "--source", TESTBED_XD_SOURCE, "--cfg", "testbed_ep10_ctxv1", "--seeds", "1",
           "--trainers", "CoOp", "--output", str(tmp_path), "--dry-run"])
    out = capsys.readouterr().out
    assert "= 1 jobs" in out and "xd testbed_shapes 16-shot CoOp seed 1" in out
    assert os.path.join(str(tmp_path), TESTBED_XD_SOURCE, "CoOp", "testbed_ep10_ctxv1_16shots", "seed1") in out
    for target in TESTBED_DG_TARGETS:
        assert os.path.join(str(tmp_path), "evaluation", "CoOp", "testbed_ep10_ctxv1_16shots", target, "seed1") in out
    with pytest.raises(SystemExit) as stop:
        sweep(["--protocol", "base2new", "--source", TESTBED_XD_SOURCE, "--output", str(tmp_path), "--dry-run"])
    assert "(protocol: xd)" in str(stop.value.code)


def run_script(host, name, *args, env, cwd):
    proc = subprocess.run(["bash", str(REPO / "scripts" / host / name), *map(str, args), *LAUNCH_OPTS],
                          cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_testbed_source_launchers_end_to_end_then_the_xd_table(tmp_path):
    data, out = tmp_path / "data", tmp_path / "output"
    generate_small(data, testbed_datasets.TestbedShapes, SMALL)
    generate_small(data, testbed_datasets.TestbedShapesClutter, {"test": SMALL["test"]})
    env = {**launcher_env(str(data), out), "SOURCE": TESTBED_XD_SOURCE}
    run_script("coop", "xd_train.sh", 1, env=env, cwd=tmp_path)
    run_script("coop", "xd_test.sh", "testbed_shapes_clutter", 1, env=env, cwd=tmp_path)

    model = out / TESTBED_XD_SOURCE / "CoOp_TextRefiner" / f"{CFG}_{SHOTS}shots" / "seed1"
    source = json.loads((model / "result.json").read_text())
    target = json.loads((out / "evaluation" / "CoOp_TextRefiner" / f"{CFG}_{SHOTS}shots" / "testbed_shapes_clutter"
                         / "seed1" / "result.json").read_text())
    assert (source["dataset"], source["num_classes"], source["shots"]) == ("TestbedShapes", 24, SHOTS)
    assert (target["dataset"], target["num_images"]) == ("TestbedShapesClutter", 24 * SMALL["test"])
    assert os.path.samefile(target["model_dir"], model)

    proc = subprocess.run([sys.executable, str(REPO / "parse_test_res.py"), str(out), "--table", "xd",
                           "--format", "csv", "--accept-partial"], capture_output=True, text=True, check=True)
    rows = {(r["Dataset"], r["Method"]): r for r in csv.DictReader(io.StringIO(proc.stdout))}
    assert float(rows[(TESTBED_XD_SOURCE, "CoOp_TextRefiner")]["Accuracy"]) == pytest.approx(source["accuracy"], abs=1e-4)
    assert float(rows[("testbed_shapes_clutter", "CoOp_TextRefiner")]["Accuracy"]) == pytest.approx(
        target["accuracy"], abs=1e-4)
    assert float(rows[("Average (domain generalisation)", "CoOp_TextRefiner")]["Accuracy"]) == pytest.approx(
        target["accuracy"], abs=1e-4)
    assert "covers 1 of testbed_shapes's 2 targets (not run: testbed_shapes_sketch)" in proc.stderr


def test_an_evaluation_of_another_sources_model_is_never_taken_for_this_ones(tmp_path):
    """The upstream evaluation folder names no source: two sources' models of one trainer, config and
    shots evaluate into the same folder, so a finished evaluation of the one is not the other's."""
    from textrefiner.protocols.identity import recorded

    setup = Setup("CoOp", CFG, output=str(tmp_path))
    of_testbed = xd_test(setup, "testbed_shapes_sketch", seed=1, shots=16, source=TESTBED_XD_SOURCE)
    of_imagenet = xd_test(setup, "testbed_shapes_sketch", seed=1, shots=16)
    assert of_testbed.output_dir == of_imagenet.output_dir
    for step, dataset in ((of_testbed, "TestbedShapes"), (of_imagenet, "ImageNet")):
        os.makedirs(step.evaluates.output_dir)
        with open(os.path.join(step.evaluates.output_dir, "result.json"), "w") as f:
            json.dump({"accuracy": 50.0, "dataset": dataset, "model_dir": ""}, f)
    write_record(of_testbed.output_dir, 40.0, model_dir=of_testbed.evaluates.output_dir)
    record = recorded(of_testbed.output_dir)
    assert of_testbed.done and of_testbed.other_model(record) is None
    assert not of_imagenet.done and of_imagenet.other_model(record) == of_testbed.evaluates.output_dir
    message = of_imagenet.conflict()
    assert "trained on another dataset" in message and "TAG=NAME" in message and "both models are kept" in message
    # a model folder moved or deleted since cannot be checked: the evaluation is trusted, as before
    os.remove(os.path.join(of_testbed.evaluates.output_dir, "result.json"))
    assert of_imagenet.other_model(record) is None
