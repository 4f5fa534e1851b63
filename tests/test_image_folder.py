"""``DATASET.NAME ImageFolder``: your own images as a dataset, with no code.

One folder per class (or a CSV of path,label[,split]), the split drawn once and saved as a CoOp
split file, class names from folders or a renaming file, base-to-novel through the launchers, and
the doctor on a damaged copy."""
import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from conftest import REPO
from launch_helpers import LAUNCH_OPTS, SHOTS, launcher_env
from textrefiner.config import get_cfg
from textrefiner.data import DatasetError, ImageFolder
from textrefiner.data.doctor import main as doctor
from textrefiner.errors import UserError
from textrefiner.run_config import build_run_config, check_cfg_values
from textrefiner.sweep.cli import main as sweep

CLASSES = ("golden_retriever", "tabby_cat", "red_fox", "barn_owl")
PER_CLASS = 8
CFG = "vit_b16_ep10_ctxv1"
SPLIT = "split_ImageFolder.json"


def make_images(folder, classes=CLASSES, per_class=PER_CLASS, seed=0):
    """Small PNGs in one folder per class; returns the relative paths by class."""
    rng = random.Random(seed)
    paths = {}
    for name in classes:
        os.makedirs(folder / name, exist_ok=True)
        paths[name] = []
        for i in range(per_class):
            Image.new("RGB", (24, 24), tuple(rng.randrange(256) for _ in range(3))).save(folder / name / f"{i}.png")
            paths[name].append(f"{name}/{i}.png")
    return paths


def image_folder_cfg(root, folder="pets", shots=-1, subsample="all", **keys):
    cfg = get_cfg()
    cfg.DATASET.NAME = "ImageFolder"
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.DATASET.IMAGE_FOLDER.DIR = folder
    for key, value in keys.items():
        cfg.DATASET.IMAGE_FOLDER[key.upper()] = value
    return cfg


def names_by_label(dataset):
    return {d.label: d.classname for d in dataset.train_x + dataset.test}


def run_launcher(name, *args, env, cwd):
    proc = subprocess.run(["bash", str(REPO / "scripts" / "coop" / name), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_base_to_novel_through_the_launchers_and_the_doctor_on_a_damaged_copy(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "output"
    make_images(data / "pets")
    env = launcher_env(str(data), out)
    own = ["DATASET.IMAGE_FOLDER.DIR", "pets", *LAUNCH_OPTS]  # what a copied image_folder.yaml would set
    run_launcher("base2new_train.sh", "image_folder", 1, *own, env=env, cwd=tmp_path)
    split = data / "pets" / SPLIT
    saved = split.read_bytes()
    run_launcher("base2new_test.sh", "image_folder", 1, *own, env=env, cwd=tmp_path)
    assert split.read_bytes() == saved  # drawn once, read by the test step

    tail = os.path.join("image_folder", f"shots_{SHOTS}", "CoOp_TextRefiner", CFG, "seed1")
    base = json.loads((out / "base2new" / "train_base" / tail / "result.json").read_text())
    new = json.loads((out / "base2new" / "test_new" / tail / "result.json").read_text())
    assert new["split"] == "new" and new["model_dir"] == str(out / "base2new" / "train_base" / tail)
    # sorted folders: barn_owl, golden_retriever | red_fox, tabby_cat; 8 images: 4 train, 2 val, 2 test
    content = json.loads(saved)
    assert {name for _, _, name in content["test"]} == {"barn owl", "golden retriever", "red fox", "tabby cat"}
    assert [len(content[k]) for k in ("train", "val", "test")] == [16, 8, 8]
    assert all(not os.path.isabs(p) and p.split("/")[0] in CLASSES for r in content.values() for p, _, _ in r)
    table = subprocess.run([sys.executable, str(REPO / "parse_test_res.py"), str(out), "--table", "base2new",
                            "--format", "csv"], capture_output=True, text=True, check=True)
    row = {r["Dataset"]: r for r in csv.DictReader(io.StringIO(table.stdout))}["image_folder"]
    assert float(row["Base"]) == pytest.approx(base["accuracy"], abs=1e-2)
    assert float(row["Novel"]) == pytest.approx(new["accuracy"], abs=1e-2)

    # the doctor: the good copy passes, a damaged one is flagged line by line
    assert doctor(["--root", str(data), "--image-folder", "pets", "--sample", "-1", "--shots", "4"]) == 0
    damaged = tmp_path / "damaged"
    shutil.copytree(data, damaged)
    for png in (damaged / "pets" / "red_fox").iterdir():
        png.unlink()
    (damaged / "pets" / "tabby_cat" / "3.png").write_bytes(b"not a png")
    capsys.readouterr()
    assert doctor(["--root", str(damaged), "--image-folder", "pets", "--sample", "-1", "--shots", "5"]) == 1
    lines = capsys.readouterr().out.splitlines()
    problems = [line for line in lines if line.startswith("PROBLEM")]
    assert any("empty class folder" in p and p.rstrip().endswith("Fix: put its images in it, or remove it")
               and "red_fox" in p for p in problems)
    assert any("unreadable image" in p and "tabby_cat/3.png" in p for p in problems)
    assert any("fewer than 5 training images" in p for p in problems)
    assert any("images in the saved split are missing" in p and "red_fox" in p for p in problems)
    # a run stops on it in one line, naming the doctor's command for this folder
    with pytest.raises(DatasetError, match="--image-folder pets"):
        ImageFolder(image_folder_cfg(damaged))


def test_split_is_drawn_once_seeded_and_reused(tmp_path, capsys):
    make_images(tmp_path / "a" / "pets")
    first = ImageFolder(image_folder_cfg(tmp_path / "a", shots=2, subsample="base"))
    split = tmp_path / "a" / "pets" / SPLIT
    saved = split.read_bytes()
    assert "Saved the split" in capsys.readouterr().out
    # a second run reads it; few-shot and base/new work on it as for every dataset
    second = ImageFolder(image_folder_cfg(tmp_path / "a", shots=2, subsample="base"))
    assert "Reading the split" in capsys.readouterr().out and split.read_bytes() == saved
    assert [d.impath for d in second.train_x] == [d.impath for d in first.train_x]
    assert len(second.train_x) == 2 * 2 and names_by_label(second) == {0: "barn owl", 1: "golden retriever"}
    new = ImageFolder(image_folder_cfg(tmp_path / "a", subsample="new"))
    assert names_by_label(new) == {0: "red fox", 1: "tabby cat"}
    # the same images elsewhere draw the same split (a fixed seed); the file holds relative paths
    make_images(tmp_path / "b" / "pets")
    ImageFolder(image_folder_cfg(tmp_path / "b"))
    assert (tmp_path / "b" / "pets" / SPLIT).read_bytes() == saved
    shutil.move(str(tmp_path / "a"), str(tmp_path / "moved"))
    moved = ImageFolder(image_folder_cfg(tmp_path / "moved"))
    assert all(d.impath.startswith(str(tmp_path / "moved")) for d in moved.train_x)
    # images added after the split stop the run until the split is drawn again
    Image.new("RGB", (24, 24)).save(tmp_path / "b" / "pets" / "red_fox" / "new.png")
    with pytest.raises(DatasetError, match=f"not in the saved split.*Fix: delete .*{SPLIT}"):
        ImageFolder(image_folder_cfg(tmp_path / "b"))
    (tmp_path / "b" / "pets" / SPLIT).unlink()
    redrawn = ImageFolder(image_folder_cfg(tmp_path / "b"))
    assert any(d.impath.endswith("red_fox/new.png") for d in redrawn.train_x + redrawn.val + redrawn.test)


def test_csv_form(tmp_path):
    paths = make_images(tmp_path / "shots" / "img", classes=("cat", "dog", "owl"), per_class=6)
    rows = [[f"img/{p}", name, "test" if i >= 4 else "train"] for name, ps in paths.items() for i, p in enumerate(ps)]
    with open(tmp_path / "shots" / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "split"], *rows])
    dataset = ImageFolder(image_folder_cfg(tmp_path, "shots", csv="labels.csv"))
    saved = json.loads((tmp_path / "shots" / "split_labels.json").read_text())
    # the CSV's test rows stay test; val is drawn from each class's train rows
    assert sorted(p for p, _, _ in saved["test"]) == sorted(r[0] for r in rows if r[2] == "test")
    assert len(saved["train"]) + len(saved["val"]) == 12 and len(saved["val"]) == 3
    assert names_by_label(dataset) == {0: "cat", 1: "dog", 2: "owl"}
    assert all(os.path.isfile(d.impath) for d in dataset.train_x + dataset.val + dataset.test)
    with open(tmp_path / "shots" / "typo.csv", "w", newline="") as f:
        csv.writer(f).writerows([[r[0][4:], r[1]] for r in rows])  # paths relative to img/, not to the CSV
    with pytest.raises(DatasetError, match="18 of 18 images the CSV lists are missing.*Fix: write the paths relative"):
        ImageFolder(image_folder_cfg(tmp_path, "shots", csv="typo.csv"))

    # no split column: drawn per class as for class folders
    with open(tmp_path / "shots" / "all.csv", "w", newline="") as f:
        csv.writer(f).writerows([r[:2] for r in rows])
    ImageFolder(image_folder_cfg(tmp_path, "shots", csv="all.csv"))
    drawn = json.loads((tmp_path / "shots" / "split_all.json").read_text())
    assert [len(drawn[k]) for k in ("train", "val", "test")] == [9, 3, 6]

    for bad, message in (([rows[0], rows[1][:2]], "line 2 of the CSV gives no split while others do"),
                         ([[rows[0][0], "cat", "holdout"]], "gives split 'holdout'"),
                         ([["/abs/cat.png", "cat"]], "outside the dataset folder"),
                         ([rows[0], rows[0]], "again")):
        with open(tmp_path / "shots" / "bad.csv", "w", newline="") as f:
            csv.writer(f).writerows(bad)
        with pytest.raises(DatasetError, match=message) as error:
            ImageFolder(image_folder_cfg(tmp_path, "shots", csv="bad.csv"))
        assert "Fix: write one `path,label[,split]` row per image" in str(error.value)


def test_class_names_from_a_renaming_file(tmp_path):
    make_images(tmp_path / "pets")
    (tmp_path / "pets" / "names.json").write_text(json.dumps({"golden_retriever": "golden retriever dog",
                                                              "tabby cat": "tabby, a type of cat"}))
    dataset = ImageFolder(image_folder_cfg(tmp_path, classnames="names.json"))
    assert names_by_label(dataset) == {0: "barn owl", 1: "golden retriever dog", 2: "red fox",
                                       3: "tabby, a type of cat"}
    # the split file keeps the folders' names: the renaming file can change at any time
    saved = json.loads((tmp_path / "pets" / SPLIT).read_text())
    assert {name for _, _, name in saved["train"]} == {"barn owl", "golden retriever", "red fox", "tabby cat"}
    (tmp_path / "pets" / "names.txt").write_text("red_fox a red fox\nbarn_owl an owl\n")
    assert names_by_label(ImageFolder(image_folder_cfg(tmp_path, classnames="names.txt")))[0] == "an owl"
    (tmp_path / "pets" / "names.txt").write_text("red_fx a red fox\n")
    with pytest.raises(DatasetError, match="renames 'red fx', which is no class"):
        ImageFolder(image_folder_cfg(tmp_path, classnames="names.txt"))
    (tmp_path / "pets" / "names.txt").write_text("red_fox owl\nbarn_owl owl\n")
    with pytest.raises(DatasetError, match="two classes are both called 'owl'"):
        ImageFolder(image_folder_cfg(tmp_path, classnames="names.txt"))


def test_config_keys_are_checked_and_an_unknown_name_points_at_image_folder(tmp_path):
    base = ["--trainer", "CoOp", "--output-dir", str(tmp_path / "out"), "--root", str(tmp_path),
            "--dataset-config-file", str(REPO / "configs" / "datasets" / "image_folder.yaml"),
            "--config-file", str(REPO / "configs" / "trainers" / "CoOp" / f"{CFG}.yaml")]
    with pytest.raises(UserError, match="DATASET.IMAGE_FOLDER.DIR: set it to the folder under --root"):
        check_cfg_values(build_run_config(base))
    with pytest.raises(UserError, match="TRAIN_FRACTION \\+ VAL_FRACTION must be < 1"):
        check_cfg_values(build_run_config([*base, "DATASET.IMAGE_FOLDER.DIR", "pets",
                                           "DATASET.IMAGE_FOLDER.TRAIN_FRACTION", "0.9"]))
    check_cfg_values(build_run_config([*base, "DATASET.IMAGE_FOLDER.DIR", "pets"]))
    with pytest.raises(UserError, match="Unknown dataset 'HaoMo'.*configs/datasets/image_folder.yaml"):
        check_cfg_values(build_run_config([*base, "DATASET.NAME", "HaoMo"]))
    with pytest.raises(DatasetError, match="dataset folder not found.*Fix: set DATASET.IMAGE_FOLDER.DIR"):
        ImageFolder(image_folder_cfg(tmp_path, folder="no_such_folder"))
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(DatasetError, match="no class folders.*DATASET.IMAGE_FOLDER.CSV"):
        ImageFolder(image_folder_cfg(tmp_path, folder="flat"))
    make_images(tmp_path / "tiny", classes=("a", "b"), per_class=1)
    with pytest.raises(DatasetError, match="class 'a' has no test image"):
        ImageFolder(image_folder_cfg(tmp_path, folder="tiny"))
    # too few images for the shots asked: the few-shot draw names the classes and the fix
    make_images(tmp_path / "few", classes=("a", "b"), per_class=4)
    with pytest.raises(DatasetError, match="fewer than 8 images.*--image-folder few"):
        ImageFolder(image_folder_cfg(tmp_path, folder="few", shots=8))


def test_sweep_preflight_checks_the_image_folder(tmp_path, capsys):
    out = tmp_path / "output"
    with pytest.raises(SystemExit):
        sweep(["--protocol", "base2new", "--datasets", "image_folder", "--trainers", "CoOp", "--seeds", "1",
               "--data", str(tmp_path / "data"), "--output", str(out), "--", "MODEL.BACKBONE.NAME", "random:tiny",
               "DATASET.IMAGE_FOLDER.DIR", "my_photos"])
    problems = [line.strip()[2:] for line in capsys.readouterr().err.splitlines() if line.strip().startswith("- ")]
    assert len(problems) == 1 and problems[0].startswith(
        f"ImageFolder: dataset folder not found: {tmp_path / 'data' / 'my_photos'}. Fix: set DATASET.IMAGE_FOLDER.DIR")
    assert not out.exists(), "no job started"
