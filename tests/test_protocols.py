"""The protocol launchers (scripts/coop/*.sh): paths, model loading, skip/resume, and the
base-to-novel table recomputed from the result.json files they write."""
import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from launch_helpers import LAUNCH_OPTS, SHOTS, launcher_env
from textrefiner.cli.parse_test_res import main as parse_test_res
from textrefiner.protocols import ModelNotReady, Setup
from textrefiner.protocols.steps import base2new_test, xd_test
from textrefiner.results.layout import LAYOUT, RunKey, parse_run_dir, run_dir

CFG = "vit_b16_ep10_ctxv1"


def run_script(name, *args, env, cwd):
    proc = subprocess.run(["bash", str(REPO / "scripts" / "coop" / name), *map(str, args), *LAUNCH_OPTS],
                          cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_every_layout_path_reads_back_as_its_key(tmp_path):
    for kind in LAYOUT:
        key = RunKey(kind, "oxford_pets", 16, "CoOp_TextRefiner", CFG, 3)
        assert parse_run_dir(os.path.relpath(run_dir(str(tmp_path), key), tmp_path)) == key
    assert run_dir("output", RunKey("xd_test", "imagenet_a", 16, "CoOp", CFG, 1)) == os.path.join(
        "output", "evaluation", "CoOp", f"{CFG}_16shots", "imagenet_a", "seed1")
    assert parse_run_dir("base2new/train_base/oxford_pets/seed1") is None


def test_evaluation_loads_the_model_its_training_kept(tmp_path):
    setup = Setup("CoOp", CFG, data="data", output=str(tmp_path))
    test = base2new_test(setup, "synthetic", seed=1)
    with pytest.raises(ModelNotReady, match="base2new_train"):
        test.command()
    train_dir = test.evaluates.output_dir
    assert train_dir == run_dir(str(tmp_path), RunKey("base2new_train", "synthetic", 16, "CoOp", CFG, 1))
    os.makedirs(train_dir)
    for final_model, expected in (("best_val", []), ("last_step", ["--load-epoch", "7"])):
        with open(os.path.join(train_dir, "result.json"), "w") as f:
            json.dump({"final_model": final_model, "max_epoch": 7}, f)
        command = test.command()
        flags = command[command.index("--eval-only"):command.index("DATASET.NUM_SHOTS")]
        assert flags == ["--eval-only", "--model-dir", train_dir, *expected]
    # the model of CoCoOp's and MaPLe's cross-dataset scripts: output/imagenet/<Trainer>/<cfg>_<K>shots/seed<S>
    assert xd_test(setup, "imagenetv2", seed=2).evaluates.output_dir.endswith(os.path.join("imagenet", "CoOp",
                                                                                          f"{CFG}_16shots", "seed2"))


def test_overrides_must_not_change_what_the_protocol_sets():
    with pytest.raises(ValueError, match="SHOTS"):
        Setup("CoOp", CFG, opts=("DATASET.NUM_SHOTS", "4"))
    with pytest.raises(ValueError, match="KEY VALUE"):
        Setup("CoOp", CFG, opts=("OPTIM.MAX_EPOCH",))
    with pytest.raises(FileNotFoundError, match="CoOp_TextRefiner"):
        Setup("NoSuchTrainer", CFG)


def test_base2new_launchers_then_table_matches_result_files(data_root, tmp_path, capsys):
    out = tmp_path / "output"
    env = launcher_env(data_root, out)
    for seed in (1, 2):
        run_script("base2new_train.sh", "synthetic", seed, env=env, cwd=tmp_path)
        run_script("base2new_test.sh", "synthetic", seed, env=env, cwd=tmp_path)

    tail = os.path.join("synthetic", f"shots_{SHOTS}", "CoOp_TextRefiner", CFG)
    folders = {"base": out / "base2new" / "train_base" / tail, "new": out / "base2new" / "test_new" / tail}
    records = {split: [json.loads((d / f"seed{s}" / "result.json").read_text()) for s in (1, 2)]
               for split, d in folders.items()}
    for record in records["new"]:  # the shipped config keeps the best-val model: model-best.pth.tar
        assert record["split"] == "new" and record["load_epoch"] is None
        assert record["model_dir"] == str(folders["base"] / f"seed{record['seed']}")

    first = folders["base"] / "seed1" / "result.json"
    mtime = first.stat().st_mtime_ns
    rerun = run_script("base2new_train.sh", "synthetic", 1, env=env, cwd=tmp_path)
    assert "Skip" in rerun.stdout and first.stat().st_mtime_ns == mtime

    proc = subprocess.run([sys.executable, str(REPO / "parse_test_res.py"), str(out), "--table", "base2new",
                           "--format", "csv"], capture_output=True, text=True, check=True)
    rows = {r["Dataset"]: r for r in csv.DictReader(io.StringIO(proc.stdout))}
    base = [r["accuracy"] for r in records["base"]]
    new = [r["accuracy"] for r in records["new"]]
    hm = 2 * np.mean(base) * np.mean(new) / (np.mean(base) + np.mean(new))
    row = rows["synthetic"]
    assert (row["Method"], row["Seeds"]) == ("CoOp_TextRefiner", "1,2")
    for column, expected in (("Base", np.mean(base)), ("Base_std", np.std(base)), ("Novel", np.mean(new)),
                             ("Novel_std", np.std(new)), ("HM", hm)):
        assert float(row[column]) == pytest.approx(expected, abs=1e-4), column
    assert float(rows["Average"]["HM"]) == pytest.approx(hm, abs=1e-4)

    with pytest.raises(SystemExit) as exit_info:
        parse_test_res([str(folders["new"]), "--test-log"])
    assert exit_info.value.code == 0
    assert f"* accuracy: {np.mean(new):.2f}% +- {np.std(new):.2f}%" in capsys.readouterr().out
