"""The dataset doctor and the split-file download command (gdown replaced by local copies)."""
import json
import types
import os
import shutil
from pathlib import Path

import gdown
import pytest
import requests

from dataset_fakes import IMAGENET_NAMES, WNIDS, build, build_all, write_text
from textrefiner.data import COOP_DATASETS, doctor, download_splits
from textrefiner.data.imagenet import CLASSNAMES_DRIVE_ID, ImageNetSketch
from textrefiner.data.split_file_datasets import Caltech101, DescribableTextures, OxfordPets


@pytest.fixture
def fake_counts(monkeypatch):
    """Make the published class and image counts those of the fakes."""
    def apply(fakes):
        for reader, fake in fakes.items():
            monkeypatch.setattr(reader, "expected_classes", len(fake.classnames))
            monkeypatch.setattr(reader, "expected_sizes", fake.sizes)
    return apply


def run_doctor(capsys, root, *args):
    code = doctor.main(["--root", str(root), *map(str, args)])
    return code, capsys.readouterr().out


# ---- doctor ------------------------------------------------------------------------
def test_doctor_passes_a_good_layout(tmp_path, capsys, fake_counts):
    fake_counts(build_all(str(tmp_path)))
    code, out = run_doctor(capsys, tmp_path)
    assert code == 0, out
    assert "PROBLEM" not in out
    for reader in COOP_DATASETS:
        assert f"OK       {reader.__name__}: 5 classes" in out
    assert "15 OK, 0 with problems, 0 absent" in out


def test_doctor_lists_absent_datasets_and_checks_only_the_named_one(tmp_path, capsys, fake_counts):
    fake_counts({OxfordPets: build(str(tmp_path), OxfordPets)})
    code, out = run_doctor(capsys, tmp_path)
    assert code == 0 and "absent   Food101: no folder" in out and "1 OK, 0 with problems, 14 absent" in out
    code, out = run_doctor(capsys, tmp_path, "--dataset", "oxford_pets")
    assert code == 0 and out.count("\n") == 2 and "OK       OxfordPets" in out
    code, out = run_doctor(capsys, tmp_path, "--dataset", "food101")
    assert code == 1 and "PROBLEM  Food101: dataset folder not found" in out


def test_doctor_on_a_root_without_datasets(tmp_path, capsys):
    code, out = run_doctor(capsys, tmp_path)
    assert code == 1 and "No dataset found" in out


def _remove_split(root):
    os.remove(root / "dtd" / DescribableTextures.split_file)


def _rename_folder(root):
    (root / "dtd").rename(root / "DTD")


def _nest_one_level_deeper(root):
    entries = list((root / "dtd").iterdir())
    (root / "dtd" / "data").mkdir()
    for entry in entries:
        entry.rename(root / "dtd" / "data" / entry.name)


def _delete_image(root):
    os.remove(root / "dtd" / "images" / "describabletextures_class_4" / "val_1.jpg")


def _corrupt_image(root):
    (root / "dtd" / "images" / "describabletextures_class_0" / "train_0.jpg").write_bytes(b"\xff\xd8 truncated")


def _drop_a_class(root):
    path = root / "dtd" / DescribableTextures.split_file
    split = json.loads(path.read_text())
    path.write_text(json.dumps({key: [row for row in rows if row[1] != 4] for key, rows in split.items()}))


def _malform_split(root):
    (root / "dtd" / DescribableTextures.split_file).write_text('{"train": [["a.jpg", 0]]}')


def _break_link(root):
    shutil.rmtree(root / "dtd")
    os.symlink(root / "nowhere", root / "dtd")


BROKEN = {
    "missing split file": (_remove_split, ["file not found", "download_splits", "--dataset DescribableTextures"]),
    "renamed folder": (_rename_folder, ["dataset folder not found", "rename {root}/DTD to {root}/dtd"]),
    "nested folder": (_nest_one_level_deeper, ["move {root}/dtd/data/images to {root}/dtd/images"]),
    "missing image": (_delete_image, ["1 of 45 listed images are missing", "{root}/dtd/images/describabletextures_class_4/val_1.jpg"]),
    "unreadable image": (_corrupt_image, ["unreadable image", "describabletextures_class_0/train_0.jpg"]),
    "class missing": (_drop_a_class, ["4 classes, expected 5", "images per split train 16, val 8, test 12, expected train 20, val 10, test 15", "--force"]),
    "malformed split": (_malform_split, ["malformed split file", "train[0]"]),
    "broken link": (_break_link, ["broken symbolic link", "{root}/nowhere"]),
}


@pytest.mark.parametrize("name", BROKEN)
def test_doctor_reports_each_broken_layout_with_its_fix(tmp_path, capsys, fake_counts, name):
    fake_counts({DescribableTextures: build(str(tmp_path), DescribableTextures)})
    breaks, expected = BROKEN[name]
    breaks(tmp_path)
    code, out = run_doctor(capsys, tmp_path)
    assert code == 1
    lines = [line for line in out.splitlines() if line.startswith("PROBLEM  DescribableTextures: ")]
    assert lines and all("Fix: " in line for line in lines)
    for text in expected:
        assert text.format(root=tmp_path) in out, out


def test_doctor_checks_imagenet_class_name_file(tmp_path, capsys, fake_counts):
    fake_counts({ImageNetSketch: build(str(tmp_path), ImageNetSketch)})
    write_text(str(tmp_path / "imagenet-sketch" / "classnames.txt"), [f"{w} {n}" for w, n in zip(WNIDS, IMAGENET_NAMES)][:999])
    code, out = run_doctor(capsys, tmp_path, "--dataset", "ImageNetSketch")
    assert code == 1 and "not CoOp's classnames.txt (it names 999 classes, expected 1000)" in out


def test_doctor_compares_with_the_published_counts(tmp_path, capsys):
    build(str(tmp_path), OxfordPets)
    code, out = run_doctor(capsys, tmp_path)
    assert code == 1 and "5 classes, expected 37" in out and "expected train 2,944, val 736, test 3,669" in out


# ---- download_splits ---------------------------------------------------------------------
@pytest.fixture
def drive(tmp_path, monkeypatch):
    """gdown.download replaced by copies from a local 'drive' folder; records the ids asked for."""
    folder = tmp_path / "drive"
    folder.mkdir()
    split = {key: [["a/1.jpg", 0, "a"], ["b/2.jpg", 1, "b"]] for key in ("train", "val", "test")}
    for reader in COOP_DATASETS:
        for filename, file_id in reader.downloads.items():
            if filename.endswith(".json"):
                (folder / file_id).write_text(json.dumps(split))
    write_text(str(folder / CLASSNAMES_DRIVE_ID), [f"{w} {n}" for w, n in zip(WNIDS, IMAGENET_NAMES)])
    asked = []

    def fake_download(url=None, output=None, quiet=False, id=None, **_):
        asked.append(id)
        shutil.copyfile(folder / id, output)
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    return folder, asked


def run_download(capsys, root, *args):
    code = download_splits.main(["--root", str(root), *args])
    return code, capsys.readouterr().out


def leftovers(root: Path):
    return [p for p in root.rglob("*") if ".download-" in p.name]


def test_download_puts_checked_files_into_present_dataset_folders(tmp_path, capsys, drive):
    root = tmp_path / "data"
    for name in ("oxford_pets", "imagenet", "imagenet-adversarial"):
        (root / name).mkdir(parents=True)
    code, out = run_download(capsys, root)
    assert code == 0, out
    assert json.loads((root / "oxford_pets" / OxfordPets.split_file).read_text())["test"][1] == ["b/2.jpg", 1, "b"]
    for name in ("imagenet", "imagenet-adversarial"):
        assert len((root / name / "classnames.txt").read_text().splitlines()) == 1000
    assert sorted(drive[1]) == sorted([OxfordPets.downloads[OxfordPets.split_file], CLASSNAMES_DRIVE_ID])  # once each
    assert not (root / "food-101").exists() and not leftovers(root)


def test_download_keeps_valid_files_unless_forced(tmp_path, capsys, drive):
    (tmp_path / "data" / "oxford_pets").mkdir(parents=True)
    run_download(capsys, tmp_path / "data")
    code, out = run_download(capsys, tmp_path / "data")
    assert code == 0 and "kept" in out and len(drive[1]) == 1
    code, out = run_download(capsys, tmp_path / "data", "--force")
    assert code == 0 and "saved" in out and len(drive[1]) == 2


def test_download_creates_the_folder_of_a_named_dataset(tmp_path, capsys, drive):
    code, out = run_download(capsys, tmp_path / "data", "--dataset", "caltech101")
    assert code == 0 and (tmp_path / "data" / "caltech-101" / Caltech101.split_file).is_file()


def test_download_rejects_a_file_that_is_not_the_split(tmp_path, capsys, drive):
    folder, _ = drive
    (folder / OxfordPets.downloads[OxfordPets.split_file]).write_text("<html>Google Drive - quota exceeded</html>")
    code, out = run_download(capsys, tmp_path / "data", "--dataset", "OxfordPets")
    assert code == 1 and "FAILED   OxfordPets" in out and "not the expected file" in out
    assert not (tmp_path / "data" / "oxford_pets" / OxfordPets.split_file).exists()
    assert not leftovers(tmp_path / "data")


@pytest.mark.parametrize("refusal", ["DownloadError", "FileURLRetrievalError"])
def test_download_reports_a_refusal_of_any_gdown_release(tmp_path, capsys, monkeypatch, refusal):
    """gdown >= 6 raises DownloadError, gdown 4.7 - 5.x FileURLRetrievalError: both are reported."""
    exceptions = types.SimpleNamespace(**{refusal: type(refusal, (Exception,), {})})

    def refuse(**_):
        raise getattr(exceptions, refusal)("Too many users have viewed or downloaded this file recently")

    monkeypatch.setattr(gdown, "exceptions", exceptions)
    monkeypatch.setattr(gdown, "download", refuse)
    code, out = run_download(capsys, tmp_path / "data", "--dataset", "OxfordPets")
    assert code == 1 and "Google Drive refused the download" in out and "Too many users" in out
    assert not leftovers(tmp_path / "data")


def test_download_says_so_when_offline(tmp_path, capsys, monkeypatch):
    def no_network(**_):
        raise requests.exceptions.ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setattr(gdown, "download", no_network)
    root = tmp_path / "data"
    code, out = run_download(capsys, root, "--dataset", "imagenet", "--dataset", "OxfordPets")
    assert code == 1
    assert "cannot reach Google Drive" in out and "offline" in out
    assert f"save it as {root / 'imagenet' / 'classnames.txt'}" in out
    assert f"not done OxfordPets: https://drive.google.com/uc?id={OxfordPets.downloads[OxfordPets.split_file]}" in out
    assert not leftovers(root)
