"""The 15 CoOp-layout readers on tiny fake layouts: classes, labels, splits, few-shot, base/new, errors."""
import json
import os
import random
import os.path as osp
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from dataset_fakes import N_CLASSES, PER_CLASS, build
from textrefiner.config import get_cfg
from textrefiner.data import COOP_DATASETS, DatasetError
from textrefiner.data.fewshot import FEWSHOT_DIR
from textrefiner.data.imagenet import ImageNet, ImageNetA
from textrefiner.data.split_file_datasets import EuroSAT, OxfordPets
from textrefiner.framework import DATASET_REGISTRY

CONFIG_FILES = {
    "caltech101": "Caltech101", "oxford_pets": "OxfordPets", "stanford_cars": "StanfordCars",
    "oxford_flowers": "OxfordFlowers", "food101": "Food101", "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397",
    "dtd": "DescribableTextures", "eurosat": "EuroSAT", "ucf101": "UCF101", "imagenet": "ImageNet",
    "imagenetv2": "ImageNetV2", "imagenet_sketch": "ImageNetSketch", "imagenet_a": "ImageNetA", "imagenet_r": "ImageNetR",
}


def load(root, reader, shots=-1, seed=1, subsample="all", **keys):
    """The reader built through the registry, as DataManager builds it."""
    cfg = get_cfg()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = reader.__name__
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    for key, value in keys.items():
        cfg.DATASET[key] = value
    return DATASET_REGISTRY.get(reader.__name__)(cfg)


def relative(items, root):
    return [(osp.relpath(item.impath, root), item.label, item.classname) for item in items]


def error_of(call) -> str:
    with pytest.raises(DatasetError) as info:
        call()
    return str(info.value)


# ---- every reader ------------------------------------------------------------------
def test_dataset_configs_name_the_registered_readers():
    for stem, name in CONFIG_FILES.items():
        content = yaml.safe_load((REPO / "configs" / "datasets" / f"{stem}.yaml").read_text())
        assert content == {"DATASET": {"NAME": name}}
        assert name in DATASET_REGISTRY.registered_names()
    assert sorted(CONFIG_FILES.values()) == sorted(r.__name__ for r in COOP_DATASETS)


@pytest.mark.parametrize("reader", COOP_DATASETS, ids=lambda r: r.__name__)
def test_reader_finds_classes_labels_and_splits(tmp_path, reader):
    fake = build(str(tmp_path), reader)
    dataset = load(tmp_path, reader)
    assert dataset.num_classes == N_CLASSES
    assert dataset.classnames == fake.classnames
    for items in (dataset.train_x, dataset.val, dataset.test):
        if items is None:
            continue
        assert {item.label for item in items} == set(range(N_CLASSES))
        assert all(fake.classnames[item.label] == item.classname for item in items)
        assert all(osp.isfile(item.impath) and item.impath.startswith(str(tmp_path)) for item in items)
    assert len(dataset.test) == fake.sizes["test"]
    if reader.test_only:  # train_x is the test set, only so Dassl can count classes
        assert dataset.train_x == dataset.test and dataset.val is None
    elif not reader.has_val:  # ImageNet: CoOp's convention val = test
        assert len(dataset.train_x) == fake.sizes["train"] and dataset.val is dataset.test
    else:
        assert (len(dataset.train_x), len(dataset.val)) == (fake.sizes["train"], fake.sizes["val"])


def test_eurosat_names_are_rewritten_once(tmp_path):
    fake = build(str(tmp_path), EuroSAT)
    assert "Annual Crop Land" in fake.classnames
    split_path = tmp_path / "eurosat" / EuroSAT.split_file
    split = json.loads(split_path.read_text())
    for rows in split.values():  # CoOp's own file already holds the new names
        for row in rows:
            row[2] = fake.classnames[row[1]]
    split_path.write_text(json.dumps(split))
    assert load(tmp_path, EuroSAT).classnames == fake.classnames


def test_imagenet_a_classes_keep_their_imagenet_names(tmp_path):
    fake = build(str(tmp_path), ImageNetA)
    dataset = load(tmp_path, ImageNetA)
    assert dataset.classnames == fake.classnames == ["imagenet thing 3", "imagenet thing 7", "imagenet thing 11",
                                                     "imagenet thing 20", "imagenet thing 42"]
    assert all(item.impath.split(os.sep)[-2] == f"n{[3, 7, 11, 20, 42][item.label]:08d}" for item in dataset.test)


def test_readers_write_nothing_under_root_without_few_shot(tmp_path):
    build(str(tmp_path), OxfordPets)
    before = sorted(p for p in tmp_path.rglob("*"))
    load(tmp_path, OxfordPets, subsample="base")
    assert sorted(p for p in tmp_path.rglob("*")) == before


# ---- few-shot ------------------------------------------------------------------------
def test_few_shot_draws_k_per_class_deterministically_per_seed(tmp_path):
    build(str(tmp_path), OxfordPets)
    first = load(tmp_path, OxfordPets, shots=2, seed=1)
    labels = [item.label for item in first.train_x]
    assert sorted(labels) == sorted(list(range(N_CLASSES)) * 2)
    assert len(first.val) == N_CLASSES * 2 and len(first.test) == N_CLASSES * PER_CLASS["test"]
    shutil.rmtree(tmp_path / "oxford_pets" / FEWSHOT_DIR)  # drawn again, not read back
    again = load(tmp_path, OxfordPets, shots=2, seed=1)
    other = load(tmp_path, OxfordPets, shots=2, seed=2)
    assert relative(again.train_x, tmp_path) == relative(first.train_x, tmp_path)
    assert relative(other.train_x, tmp_path) != relative(first.train_x, tmp_path)


def test_few_shot_draw_is_the_one_dassl_makes_after_seeding(tmp_path):
    build(str(tmp_path), OxfordPets)
    ours = load(tmp_path, OxfordPets, shots=2, seed=5)
    full = load(tmp_path, OxfordPets)
    random.seed(5)  # what train.py's set_random_seed does before CoOp's reader draws
    train = full.generate_fewshot_dataset(full.train_x, num_shots=2)
    val = full.generate_fewshot_dataset(full.val, num_shots=2)
    assert [i.impath for i in ours.train_x] == [i.impath for i in train]
    assert [i.impath for i in ours.val] == [i.impath for i in val]


def test_unreadable_few_shot_cache_is_drawn_again(tmp_path, capsys):
    build(str(tmp_path), OxfordPets)
    first = load(tmp_path, OxfordPets, shots=2, seed=1)
    (tmp_path / "oxford_pets" / FEWSHOT_DIR / "shot_2-seed_1.json").write_text("[1, 2")
    again = load(tmp_path, OxfordPets, shots=2, seed=1)
    assert "is unreadable; drawing it again" in capsys.readouterr().out
    assert relative(again.train_x, tmp_path) == relative(first.train_x, tmp_path)


def test_few_shot_cache_survives_moving_the_root(tmp_path):
    old_root, new_root = tmp_path / "old", tmp_path / "moved" / "data"
    build(str(old_root), OxfordPets)
    before = load(old_root, OxfordPets, shots=2, seed=3)
    cache = Path(OxfordPets.folder(str(old_root))) / FEWSHOT_DIR / "shot_2-seed_3.json"
    assert str(old_root) not in cache.read_text()  # paths in it are relative
    stamp = cache.stat().st_mtime_ns
    new_root.parent.mkdir(parents=True)
    shutil.move(str(old_root), str(new_root))
    after = load(new_root, OxfordPets, shots=2, seed=3)
    moved_cache = Path(OxfordPets.folder(str(new_root))) / FEWSHOT_DIR / "shot_2-seed_3.json"
    assert moved_cache.stat().st_mtime_ns == stamp  # read back, not rewritten
    assert relative(after.train_x, new_root) == relative(before.train_x, old_root)
    assert all(item.impath.startswith(str(new_root)) for item in after.train_x)


def test_few_shot_cache_from_another_setting_is_detected_and_redrawn(tmp_path, capsys):
    build(str(tmp_path), OxfordPets)
    load(tmp_path, OxfordPets, shots=2, seed=1)
    cache = tmp_path / "oxford_pets" / FEWSHOT_DIR / "shot_2-seed_1.json"
    content = json.loads(cache.read_text())
    planted = [content["train"][0]] * len(content["train"])  # a cache no draw of this split can give
    content["train"] = planted
    content["setting"]["with_replacement"] = True
    cache.write_text(json.dumps(content))
    capsys.readouterr()
    dataset = load(tmp_path, OxfordPets, shots=2, seed=1)
    assert "different setting or split" in capsys.readouterr().out
    assert len({item.impath for item in dataset.train_x}) == 2 * N_CLASSES
    assert json.loads(cache.read_text())["setting"]["with_replacement"] is False


def test_few_shot_cache_of_an_older_split_is_redrawn(tmp_path, capsys):
    build(str(tmp_path), OxfordPets)
    load(tmp_path, OxfordPets, shots=2, seed=1)
    split_path = tmp_path / "oxford_pets" / OxfordPets.split_file
    split = json.loads(split_path.read_text())
    split["train"] = split["train"][1:]  # the split changed after the cache was drawn
    split_path.write_text(json.dumps(split))
    capsys.readouterr()
    dataset = load(tmp_path, OxfordPets, shots=2, seed=1)
    assert "different setting or split" in capsys.readouterr().out
    listed = {osp.join(OxfordPets.image_folder(str(tmp_path)), row[0]) for row in split["train"]}
    assert {item.impath for item in dataset.train_x} <= listed


def test_class_with_too_few_images_stops_unless_replacement_is_asked_for(tmp_path):
    build(str(tmp_path), OxfordPets)
    message = error_of(lambda: load(tmp_path, OxfordPets, shots=8))
    assert "OxfordPets" in message and "fewer than 8 images in the train split" in message
    assert "DATASET.FEWSHOT_WITH_REPLACEMENT" in message and "textrefiner.data.doctor" in message
    dataset = load(tmp_path, OxfordPets, shots=8, FEWSHOT_WITH_REPLACEMENT=True)
    assert sorted(item.label for item in dataset.train_x) == sorted(list(range(N_CLASSES)) * 8)
    distinct = {item.impath for item in dataset.train_x}
    assert len(distinct) <= PER_CLASS["train"] * N_CLASSES and all("/train_" in path for path in distinct)


def test_class_with_too_few_validation_images_keeps_them_all(tmp_path, capsys):
    """As in Dassl: validation only picks the model, so a short class keeps all its images."""
    build(str(tmp_path), OxfordPets)
    dataset = load(tmp_path, OxfordPets, shots=4)  # 4 validation images per class asked, 2 there
    assert "fewer than 4 validation images" in capsys.readouterr().out
    assert len(dataset.train_x) == 4 * N_CLASSES
    assert len(dataset.val) == len({item.impath for item in dataset.val}) == PER_CLASS["val"] * N_CLASSES


def test_imagenet_few_shot_samples_train_only_and_validates_on_test(tmp_path):
    build(str(tmp_path), ImageNet)
    dataset = load(tmp_path, ImageNet, shots=1)
    assert len(dataset.train_x) == N_CLASSES and dataset.val is dataset.test
    assert len(dataset.test) == PER_CLASS["test"] * N_CLASSES


# ---- base / new ------------------------------------------------------------------------
@pytest.mark.parametrize("reader", [OxfordPets, ImageNet, ImageNetA], ids=lambda r: r.__name__)
def test_base_and_new_split_the_classes(tmp_path, reader):
    fake = build(str(tmp_path), reader)
    base = load(tmp_path, reader, shots=1, subsample="base")
    new = load(tmp_path, reader, shots=1, subsample="new")
    assert base.classnames == fake.classnames[:3] and new.classnames == fake.classnames[3:]  # ceil(5/2) = 3
    for dataset in (base, new):
        for items in (dataset.train_x, dataset.val, dataset.test):
            if items is not None:
                assert sorted({i.label for i in items}) == list(range(dataset.num_classes))
                assert all(dataset.classnames[i.label] == i.classname for i in items)
    base_images = {i.impath for i in base.test}
    new_images = {i.impath for i in new.test}
    everything = {i.impath for i in load(tmp_path, reader).test}
    assert not base_images & new_images and base_images | new_images == everything


# ---- errors name the dataset, the path and the fix -----------------------------------
def test_missing_dataset_folder(tmp_path):
    message = error_of(lambda: load(tmp_path, OxfordPets))
    assert "OxfordPets: dataset folder not found" in message and str(tmp_path / "oxford_pets") in message
    assert f"python -m textrefiner.data.doctor --root {tmp_path} --dataset OxfordPets" in message


def test_renamed_dataset_folder_gets_a_rename_fix(tmp_path):
    build(str(tmp_path / "x"), OxfordPets)
    shutil.move(str(tmp_path / "x" / "oxford_pets"), str(tmp_path / "OxfordPets"))
    message = error_of(lambda: load(tmp_path, OxfordPets))
    assert f"rename {tmp_path / 'OxfordPets'} to {tmp_path / 'oxford_pets'}" in message


def test_missing_image_folder(tmp_path):
    build(str(tmp_path), OxfordPets)
    shutil.rmtree(tmp_path / "oxford_pets" / "images")
    message = error_of(lambda: load(tmp_path, OxfordPets))
    assert "folder not found" in message and str(tmp_path / "oxford_pets" / "images") in message


def test_missing_split_file_names_the_download_command(tmp_path):
    build(str(tmp_path), OxfordPets)
    os.remove(tmp_path / "oxford_pets" / OxfordPets.split_file)
    message = error_of(lambda: load(tmp_path, OxfordPets))
    assert "split_zhou_OxfordPets.json" in message
    assert f"python -m textrefiner.data.download_splits --root {tmp_path} --dataset OxfordPets" in message


@pytest.mark.parametrize("content, complaint", [
    ("{not json", "not valid JSON"),
    (json.dumps({"train": [], "val": []}), "no 'test' list"),
    (json.dumps({"train": [["a.jpg", "0", "cat"]], "val": [], "test": [["b.jpg", 0, "cat"]]}), "train[0]"),
    (json.dumps({"train": [["a.jpg", 0, "cat"]], "val": [], "test": [["b.jpg", 0, "dog"]]}), "called both"),
])
def test_malformed_split_file(tmp_path, content, complaint):
    build(str(tmp_path), OxfordPets)
    (tmp_path / "oxford_pets" / OxfordPets.split_file).write_text(content)
    message = error_of(lambda: load(tmp_path, OxfordPets))
    assert "malformed split file" in message and complaint in message and "--force" in message


def test_listed_image_that_is_missing(tmp_path):
    build(str(tmp_path), OxfordPets)
    gone = tmp_path / "oxford_pets" / "images" / "oxfordpets_class_2" / "test_1.jpg"
    os.remove(gone)
    message = error_of(lambda: load(tmp_path, OxfordPets))
    assert "1 of 45 listed images are missing" in message and str(gone) in message


def test_unreadable_image(tmp_path):
    build(str(tmp_path), OxfordPets)
    broken = tmp_path / "oxford_pets" / "images" / "oxfordpets_class_1" / "train_0.jpg"
    broken.write_bytes(b"<html>quota exceeded</html>")
    message = error_of(lambda: load(tmp_path, OxfordPets))
    assert "unreadable image" in message and str(broken) in message


def test_unreadable_image_drawn_into_the_few_shot_set(tmp_path):
    """Not the first of its class, so only the few-shot check (every drawn image) can find it."""
    build(str(tmp_path), OxfordPets)
    drawn = load(tmp_path, OxfordPets, shots=2).train_x
    broken = next(Path(item.impath) for item in drawn if not item.impath.endswith("train_0.jpg"))
    shutil.rmtree(tmp_path / "oxford_pets" / FEWSHOT_DIR)
    broken.write_bytes(b"<html>quota exceeded</html>")
    load(tmp_path, OxfordPets)  # all images, first per class only: not found, as before
    message = error_of(lambda: load(tmp_path, OxfordPets, shots=2))
    assert "unreadable image" in message and str(broken) in message


def test_eurosat_image_folder_under_the_new_archive_name(tmp_path):
    build(str(tmp_path), EuroSAT)
    (tmp_path / "eurosat" / "2750").rename(tmp_path / "eurosat" / "EuroSAT_RGB")
    message = error_of(lambda: load(tmp_path, EuroSAT))
    assert f"rename {tmp_path / 'eurosat' / 'EuroSAT_RGB'} to {tmp_path / 'eurosat' / '2750'}" in message


def test_imagenet_flat_validation_folder(tmp_path):
    build(str(tmp_path), ImageNet)
    val = tmp_path / "imagenet" / "images" / "val"
    for folder in list(val.iterdir()):
        for image in folder.iterdir():
            image.rename(val / image.name)
        folder.rmdir()
    message = error_of(lambda: load(tmp_path, ImageNet))
    assert "validation images are not in class folders" in message and "one folder per class" in message
