"""``ImageFolder``: your own images as a dataset, with no code (``DATASET.NAME ImageFolder``).

``DATASET.IMAGE_FOLDER.DIR`` (a folder under ``--root``) holds either

* one folder per class (``<DIR>/<class>/**/<image>``; the folder names, sorted, give the
  labels, and with underscores as spaces the class names), or
* a CSV file ``DATASET.IMAGE_FOLDER.CSV`` of ``path,label[,split]`` rows (an optional header
  ``path,label,split``; paths relative to DIR; labels are class names; split is train, val or
  test, given on every row or on none).

``DATASET.IMAGE_FOLDER.CLASSNAMES`` optionally names a file in DIR that renames classes for
the prompts: a JSON object ``{"folder or label": "name"}``, or ``<folder> <class name>`` lines
(ImageNet's classnames.txt format).

What is not given is drawn once per class with a fixed seed (``TRAIN_FRACTION``, ``VAL_FRACTION``,
the rest test; with a CSV that gives train and test only, val is drawn from train) and saved in
DIR as a CoOp split file with relative paths (``split_ImageFolder.json``, or ``split_<csv>.json``),
which every later run reads: every seed and every machine uses the same split, and moving
``--root`` keeps it valid. The split file holds the folder names as class names; the renaming
file is applied when reading, so it can change at any time. A split file that no longer matches
the images (images added, a class folder emptied) stops the run and says how to draw it again.
Few-shot sampling and base/new classes are ``SplitDataset``'s, as for every dataset.
"""
import csv
import json
import os
import os.path as osp
import random
import shlex
from typing import Dict, List, Optional, Tuple

from ..atomic import write_json
from ..framework import register_dataset
from .base import SplitDataset
from .errors import DatasetError
from .fewshot import FEWSHOT_DIR
from .imagenet import list_entries, read_classnames
from .records import SPLIT_KEYS, Splits, group_by_label, read_split_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SPLIT_SEED = 1  # the split is drawn once; runs' seeds only change few-shot sampling and training
CONFIG_HELP = "configs/datasets/image_folder.yaml"

#: (relative image path, class folder or CSV label, split given by a CSV or None)
Source = List[Tuple[str, str, Optional[str]]]


def default_name(folder: str) -> str:
    """The class name a folder (or CSV label) gives: underscores become spaces."""
    return " ".join(folder.replace("_", " ").split())


def sort_classes(names) -> List[str]:
    """Folder or label names in label order: numerically when every name is a number."""
    names = sorted(set(names))
    return sorted(names, key=int) if all(n.isdigit() for n in names) else names


def is_image(filename: str) -> bool:
    return not filename.startswith(".") and filename.lower().endswith(IMAGE_EXTENSIONS)


def images_in(folder: str, prefix: str) -> List[str]:
    """Image paths under ``folder`` (sub-folders included, hidden ones not), relative, sorted."""
    found = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = osp.relpath(current, folder)
        base = prefix if rel == "." else f"{prefix}/{rel.replace(os.sep, '/')}"
        found += [f"{base}/{f}" for f in sorted(files) if is_image(f)]
    return found


@register_dataset
class ImageFolder(SplitDataset):
    """One folder per class, or a CSV of ``path,label[,split]``, under ``<root>/<DIR>``."""

    image_dir = ""  # record paths are relative to the dataset folder itself
    csv_file = ""
    classnames_file = ""
    train_fraction = 0.5
    val_fraction = 0.2

    # ---- configuration ----------------------------------------------------------
    @classmethod
    def reader(cls, cfg):
        node = cfg.DATASET.get("IMAGE_FOLDER")
        if node is None:
            raise DatasetError(
                "ImageFolder", "the config has no DATASET.IMAGE_FOLDER keys", "DATASET.IMAGE_FOLDER",
                "call textrefiner.config.add_textrefiner_config(cfg) in your train.py's extend_cfg", cfg.DATASET.ROOT,
            )
        if not node.DIR:
            raise DatasetError(
                "ImageFolder", "DATASET.IMAGE_FOLDER.DIR is not set", osp.abspath(cfg.DATASET.ROOT),
                f"set it to the folder under --root that holds one folder per class (see {CONFIG_HELP})",
                cfg.DATASET.ROOT,
            )
        return cls.configured(node.DIR, node.CSV, node.CLASSNAMES, node.TRAIN_FRACTION, node.VAL_FRACTION)

    @classmethod
    def configured(cls, folder: str, csv_file: str = "", classnames: str = "", train_fraction: float = 0.5,
                   val_fraction: float = 0.2):
        """This reader for one dataset folder (a subclass: the checks need only ``--root`` then)."""
        attributes = {
            "dataset_dir": folder, "csv_file": csv_file, "classnames_file": classnames,
            "train_fraction": train_fraction, "val_fraction": val_fraction, "__module__": cls.__module__,
        }
        return type(cls.__name__, (cls,), attributes)

    @classmethod
    def doctor_arguments(cls) -> str:
        arguments = f"--image-folder {shlex.quote(cls.dataset_dir)}"
        if cls.csv_file:
            arguments += f" --csv {shlex.quote(cls.csv_file)}"
        if cls.classnames_file:
            arguments += f" --classnames {shlex.quote(cls.classnames_file)}"
        return arguments

    @classmethod
    def split_path(cls, root: str) -> str:
        stem = osp.splitext(osp.basename(cls.csv_file))[0] if cls.csv_file else cls.__name__
        return osp.join(cls.folder(root), f"split_{stem}.json")

    @classmethod
    def expected_files(cls):
        return tuple(f for f in (cls.csv_file, cls.classnames_file) if f)

    @classmethod
    def file_fix(cls, root: str, filename: str, again: bool = False) -> str:
        key = "CSV" if filename == cls.csv_file else "CLASSNAMES"
        return f"put it there, or set DATASET.IMAGE_FOLDER.{key} to the file's path relative to that folder"

    @classmethod
    def folder_error(cls, root: str) -> DatasetError:
        return cls.error(root, "dataset folder not found", cls.folder(root),
                         "set DATASET.IMAGE_FOLDER.DIR to the folder under --root that holds one folder per class "
                         f"(or the CSV file), or pass the --root that holds it ({CONFIG_HELP})")

    # ---- reading ------------------------------------------------------------------
    @classmethod
    def class_folders(cls, root: str) -> List[str]:
        return [f for f in list_entries(cls.folder(root), folders=True) if f != FEWSHOT_DIR]

    @classmethod
    def read_source(cls, root: str) -> Source:
        """Every image with its class (folder or CSV label) and the split a CSV gives it."""
        if cls.csv_file:
            return cls.read_csv(root)
        folders = cls.class_folders(root)
        if not folders:
            raise cls.error(root, "no class folders", cls.folder(root),
                            "put one folder of images per class there, or set DATASET.IMAGE_FOLDER.CSV to a CSV "
                            f"of path,label[,split] rows ({CONFIG_HELP})")
        return [(path, folder, None) for folder in folders for path in images_in(osp.join(cls.folder(root), folder),
                                                                                  folder)]

    @classmethod
    def read_csv(cls, root: str) -> Source:
        path = osp.join(cls.folder(root), cls.csv_file)

        def bad(number: int, what: str) -> DatasetError:
            return cls.error(root, f"line {number} of the CSV {what}", path,
                             f"write one `path,label[,split]` row per image, paths relative to {cls.folder(root)}, "
                             "split train, val or test on every row or on none")

        rows, seen = [], {}
        with open(path, encoding="utf-8-sig", newline="") as f:
            for number, row in enumerate(csv.reader(f), 1):
                row = [cell.strip() for cell in row]
                if not any(row):
                    continue
                if number == 1 and row[0].lower() == "path":  # a header
                    continue
                if len(row) not in (2, 3) or not row[0] or not row[1]:
                    raise bad(number, f"is {','.join(row)!r}, expected path,label[,split]")
                image, label = row[0].replace("\\", "/"), row[1]
                if osp.isabs(image) or image.startswith("../"):
                    raise bad(number, f"names {image!r}, outside the dataset folder")
                split = row[2].lower() if len(row) == 3 and row[2] else None
                if split is not None and split not in SPLIT_KEYS:
                    raise bad(number, f"gives split {row[2]!r}, expected train, val or test")
                if image in seen:
                    raise bad(number, f"lists {image!r} again (first on line {seen[image]})")
                seen[image] = number
                rows.append((number, image, label, split))
        if not rows:
            raise cls.error(root, "the CSV lists no images", path, "write one `path,label[,split]` row per image")
        given = [r for r in rows if r[3] is not None]
        if given and len(given) != len(rows):
            number = next(r[0] for r in rows if r[3] is None)
            raise bad(number, "gives no split while others do")
        if given and not {"train", "test"} <= {r[3] for r in rows}:
            raise bad(rows[0][0], "column split must name both train and test images")
        return [(image, label, split) for _, image, label, split in rows]

    @classmethod
    def read_records(cls, root: str) -> Splits:
        """The saved split if there is one, else the split drawn now (not saved: the doctor writes nothing)."""
        splits = cls.saved_split(root)
        return cls.renamed(root, cls.draw_split(cls.read_source(root)) if splits is None else splits)

    @classmethod
    def load_records(cls, root: str) -> Splits:
        """As a run reads the dataset: every problem stops it; a split drawn now is saved for later runs."""
        problems = cls.layout_problems(root)
        if problems:
            raise problems[0]
        saved = cls.saved_split(root)
        splits = cls.draw_split(cls.read_source(root)) if saved is None else saved
        missing = cls.missing_images(root, splits)
        if missing:
            raise cls.missing_images_error(root, missing, sum(len(s) for s in splits.values()))
        problems = cls.content_problems(root, splits)
        if problems:
            raise problems[0]
        renamed = cls.renamed(root, splits)
        if saved is None:
            cls.save_split(cls.split_path(root), splits)
        else:
            print(f"Reading the split of {cls.folder(root)} from {cls.split_path(root)}")
        return renamed

    @classmethod
    def saved_split(cls, root: str) -> Optional[Splits]:
        path = cls.split_path(root)
        if not osp.exists(path):
            return None
        try:
            return read_split_file(path)
        except (ValueError, UnicodeDecodeError) as e:
            raise cls.error(root, f"malformed split file ({e})", path, "delete it: the next run draws the split again")

    @classmethod
    def save_split(cls, path: str, splits: Splits) -> None:
        try:
            write_json({key: [list(r) for r in splits[key]] for key in SPLIT_KEYS}, path, encoding="utf-8")
        except OSError as e:  # a read-only dataset folder: the same seeded draw is made again next time
            print(f"Cannot save the split to {path} ({e}); it is drawn again (the same way) by every run")
            return
        counts = ", ".join(f"{key} {len(splits[key])}" for key in SPLIT_KEYS)
        print(f"Saved the split of {osp.dirname(path)} to {path} ({counts}); every later run reads it")

    @classmethod
    def draw_split(cls, source: Source) -> Splits:
        """CoOp's split file for ``source``: what the CSV gives, the rest drawn per class with ``SPLIT_SEED``.

        Per class: ``round(n * TRAIN_FRACTION)`` train images (at least one), ``round(n * VAL_FRACTION)``
        val, the rest (at least one) test; a class of one image is only in train (the doctor and the
        run report it). With splits given but no val, ``VAL_FRACTION`` of each class's train images."""
        classes = sort_classes(label for _, label, _ in source)
        labels = {name: i for i, name in enumerate(classes)}
        rng = random.Random(SPLIT_SEED)
        splits: Splits = {key: [] for key in SPLIT_KEYS}
        given = any(split is not None for _, _, split in source)
        by_class: Dict[str, List[Tuple[str, Optional[str]]]] = {name: [] for name in classes}
        for path, label, split in source:
            by_class[label].append((path, split))
        draw_val = given and not any(split == "val" for _, _, split in source)
        for name in classes:
            label, cname = labels[name], default_name(name)
            items = by_class[name]
            if given:
                train = [path for path, split in items if split == "train"]
                n_val = max(0, min(round(len(train) * cls.val_fraction), len(train) - 1)) if draw_val else 0
                moved = set(rng.sample(train, n_val))
                for path, split in items:
                    splits["val" if path in moved else split].append((path, label, cname))
                continue
            paths = sorted(path for path, _ in items)
            rng.shuffle(paths)
            n = len(paths)
            n_train = max(1, round(n * cls.train_fraction))
            n_val = max(0, min(round(n * cls.val_fraction), n - n_train - 1))
            splits["train"] += [(p, label, cname) for p in paths[:n_train]]
            splits["val"] += [(p, label, cname) for p in paths[n_train:n_train + n_val]]
            splits["test"] += [(p, label, cname) for p in paths[n_train + n_val:]]
        return splits

    @classmethod
    def renamed(cls, root: str, splits: Splits) -> Splits:
        """``splits`` with the class names of the renaming file (``CLASSNAMES``), if any."""
        if not cls.classnames_file:
            return splits
        path = osp.join(cls.folder(root), cls.classnames_file)
        fix = ('write a JSON object {"folder or label": "class name"} or one `<folder> <class name>` line per '
               "class")
        try:
            if path.lower().endswith(".json"):
                with open(path, encoding="utf-8") as f:
                    names = json.load(f)
                if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
                    raise ValueError("not a JSON object of names")
            else:
                names = read_classnames(path)
        except (ValueError, UnicodeDecodeError) as e:
            raise cls.error(root, f"malformed class-name file ({e})", path, fix)
        names = {default_name(k): " ".join(v.split()) for k, v in names.items()}
        known = {name for records in splits.values() for _, _, name in records}
        unknown = sorted(set(names) - known)
        if unknown:
            raise cls.error(root, f"the class-name file renames {unknown[0]!r}, which is no class", path,
                            f"use the folder names (or CSV labels) as keys; the classes are {sorted(known)}")
        renamed = {key: [(p, y, names.get(n, n)) for p, y, n in records] for key, records in splits.items()}
        first = {}
        for records in renamed.values():
            for _, label, name in records:
                if first.setdefault(name, label) != label:
                    raise cls.error(root, f"two classes are both called {name!r}", path,
                                    "give every class its own name")
        return renamed

    # ---- checks -------------------------------------------------------------------
    @classmethod
    def content_problems(cls, root: str, splits: Splits) -> List[DatasetError]:
        """Empty class folders, classes too small to split, and images the saved split does not list."""
        problems = []
        if not cls.csv_file:
            for folder in cls.class_folders(root):
                if not images_in(osp.join(cls.folder(root), folder), folder):
                    problems.append(cls.error(root, "empty class folder", osp.join(cls.folder(root), folder),
                                              "put its images in it, or remove it"))
        tested = {label for _, label, _ in splits["test"]}
        for label, records in group_by_label(splits["train"]).items():
            if label not in tested:
                problems.append(cls.error(
                    root, f"class {records[0][2]!r} has no test image ({len(records)} image(s) in all)",
                    cls.folder(root),
                    "give every class at least two images (one to train on, one to test)"))
        path = cls.split_path(root)
        if osp.exists(path):
            try:
                source = cls.read_source(root)
            except DatasetError as e:
                return problems + [e]
            listed = {p for records in splits.values() for p, _, _ in records}
            added = [p for p, _, _ in source if p not in listed]
            if added:
                problems.append(cls.error(
                    root, f"{len(added)} images are not in the saved split (added after it was drawn), the first is",
                    osp.join(cls.folder(root), added[0]),
                    f"delete {path} to draw the split again (results with the old split are not comparable)"))
        return problems

    @classmethod
    def missing_images_error(cls, root: str, missing: List[str], total: int) -> DatasetError:
        where = osp.join(cls.folder(root), missing[0])
        if not osp.exists(cls.split_path(root)):  # only a CSV can name images that are not there
            return cls.error(root, f"{len(missing)} of {total} images the CSV lists are missing, the first is", where,
                             f"write the paths relative to {cls.folder(root)}, or put the images there")
        return cls.error(
            root, f"{len(missing)} of {total} images in the saved split are missing, the first is", where,
            f"put them back, or delete {cls.split_path(root)} to draw the split again from the images there",
        )

    @classmethod
    def unreadable_error(cls, root: str, bad: List[Tuple[str, str]]) -> DatasetError:
        listed = ", ".join(f"{p} ({r})" for p, r in bad)
        problem = f"unreadable image ({bad[0][1]})" if len(bad) == 1 else f"{len(bad)} unreadable images"
        return cls.error(root, problem, bad[0][0] if len(bad) == 1 else listed,
                         f"replace or delete it, then delete {cls.split_path(root)} if you deleted it")
