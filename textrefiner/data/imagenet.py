"""ImageNet and its four test-only variants, read by listing class folders.

All five need CoOp's ``classnames.txt`` in their folder: one ``<folder> <class name>``
line per class, 1000 lines in wnid order, the names CLIP uses for ImageNet.

* ``ImageNet``: ``images/train/<wnid>/`` and ``images/val/<wnid>/`` (the validation
  images sorted into class folders). Labels follow the sorted train folders. ImageNet
  has no separate validation split, so, as in CoOp, its validation set is the test set
  and also stands as ``val``; ``DATASET.NUM_SHOTS`` samples the training set only.
* ``ImageNetV2``: ``imagenetv2-matched-frequency-format-val/<n>/`` with folders named
  0..999; the folder number is the label, the name is line n of classnames.txt.
* ``ImageNetSketch`` (``images/<wnid>/``, 1000 classes), ``ImageNetA``
  (``imagenet-a/<wnid>/``) and ``ImageNetR`` (``imagenet-r/<wnid>/``), 200 classes
  each: labels 0.. follow the sorted folders and names are looked up by wnid, so each
  class keeps its ImageNet name.

File names are sorted within each folder, so the record order, and with it the
few-shot draw, is the same on every file system.
"""
import os
import os.path as osp
from typing import Dict, List, Tuple

from ..framework import register_dataset
from .base import LAYOUT_HELP, SplitDataset
from .records import Record

CLASSNAMES_FILE = "classnames.txt"
CLASSNAMES_DRIVE_ID = "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"
IMAGENET_CLASSES = 1000


def read_classnames(path: str) -> Dict[str, str]:
    """Folder name -> class name, in file order; ValueError names a malformed line."""
    names = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            folder, _, name = line.strip().partition(" ")
            if not folder:
                continue
            if not name.strip():
                raise ValueError(f"line {number} is {line.strip()!r}, expected '<folder> <class name>'")
            names[folder] = name.strip()
    return names


def list_entries(path: str, folders: bool) -> List[str]:
    """Sorted names of the sub-folders (or files) of ``path``, hidden ones left out."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return []
    return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir() == folders)


def scan(image_dir: str, classes: Dict[str, Tuple[int, str]], subdir: str = "") -> List[Record]:
    """Records of every image in the class folders ``classes`` (folder -> (label, name))."""
    records = []
    for folder, (label, name) in classes.items():
        rel_folder = osp.join(subdir, folder) if subdir else folder
        for filename in list_entries(osp.join(image_dir, rel_folder), folders=False):
            records.append((osp.join(rel_folder, filename), label, name))
    return records


class ImageNetFamily(SplitDataset):
    """What the five share: classnames.txt, class folders, no split file."""

    test_only = True
    downloads = {CLASSNAMES_FILE: CLASSNAMES_DRIVE_ID}

    @classmethod
    def expected_files(cls):
        return (CLASSNAMES_FILE,)

    @classmethod
    def validate_download(cls, filename, path):
        count = len(read_classnames(path))
        if count != IMAGENET_CLASSES:
            raise ValueError(f"it names {count} classes, expected {IMAGENET_CLASSES}")

    @classmethod
    def missing_images(cls, root, splits):
        return []  # the records come from listing the folders

    @classmethod
    def classnames_by_folder(cls, root: str) -> Dict[str, str]:
        path = osp.join(cls.folder(root), CLASSNAMES_FILE)
        try:
            return read_classnames(path)
        except (ValueError, UnicodeDecodeError) as e:
            raise cls.error(root, f"malformed class-name file ({e})", path, cls.file_fix(root, CLASSNAMES_FILE, True))

    @classmethod
    def class_folders(cls, root: str, directory: str) -> List[str]:
        folders = list_entries(directory, folders=True)
        if not folders:
            raise cls.error(root, "no class folders", directory, f"extract the images with their class folders ({LAYOUT_HELP})")
        return folders

    @classmethod
    def wnid_classes(cls, root: str, folders: List[str]) -> Dict[str, Tuple[int, str]]:
        """Labels from the sorted folders, names from classnames.txt by folder name."""
        names = cls.classnames_by_folder(root)
        unnamed = [f for f in folders if f not in names]
        if unnamed:
            raise cls.error(
                root, f"class folder {unnamed[0]!r} has no line in {CLASSNAMES_FILE}",
                osp.join(cls.folder(root), CLASSNAMES_FILE), cls.file_fix(root, CLASSNAMES_FILE, True),
            )
        return {folder: (label, names[folder]) for label, folder in enumerate(folders)}

    @classmethod
    def read_records(cls, root):
        image_dir = cls.image_folder(root)
        return {"test": scan(image_dir, cls.wnid_classes(root, cls.class_folders(root, image_dir)))}


@register_dataset
class ImageNet(ImageNetFamily):
    dataset_dir = "imagenet"
    image_dir = "images"
    test_only = False
    has_val = False
    expected_classes = IMAGENET_CLASSES
    expected_sizes = {"train": 1281167, "test": 50000}
    folder_aliases = ("ilsvrc2012",)

    @classmethod
    def expected_folders(cls):
        return ("images/train", "images/val")

    @classmethod
    def read_records(cls, root):
        image_dir = cls.image_folder(root)
        classes = cls.wnid_classes(root, cls.class_folders(root, osp.join(image_dir, "train")))
        val_dir = osp.join(image_dir, "val")
        if not list_entries(val_dir, folders=True) and list_entries(val_dir, folders=False):
            raise cls.error(
                root, "validation images are not in class folders", val_dir,
                "sort them into one folder per class, named as in images/train (images/val/n01440764/...)",
            )
        val_folders = cls.class_folders(root, val_dir)
        strays = [f for f in val_folders if f not in classes]
        if strays:
            raise cls.error(
                root, f"validation folder {strays[0]!r} has no training folder", osp.join(val_dir, strays[0]),
                "images/train and images/val must hold the same class folders",
            )
        return {
            "train": scan(image_dir, classes, "train"),
            "test": scan(image_dir, {f: classes[f] for f in val_folders}, "val"),
        }


@register_dataset
class ImageNetV2(ImageNetFamily):
    dataset_dir = "imagenetv2"
    image_dir = "imagenetv2-matched-frequency-format-val"
    expected_classes = IMAGENET_CLASSES
    expected_sizes = {"test": 10000}
    folder_aliases = ("imagenet-v2",)

    @classmethod
    def read_records(cls, root):
        image_dir = cls.image_folder(root)
        names = list(cls.classnames_by_folder(root).values())
        folders = cls.class_folders(root, image_dir)
        odd = [f for f in folders if not f.isdigit() or int(f) >= len(names)]
        if odd:
            raise cls.error(
                root, f"class folder {odd[0]!r} is not a number below {len(names)}", osp.join(image_dir, odd[0]),
                "use the matched-frequency archive as extracted: its class folders are named 0 to 999",
            )
        classes = {f: (int(f), names[int(f)]) for f in sorted(folders, key=int)}
        return {"test": scan(image_dir, classes)}


@register_dataset
class ImageNetSketch(ImageNetFamily):
    dataset_dir = "imagenet-sketch"
    image_dir = "images"
    expected_classes = IMAGENET_CLASSES
    expected_sizes = {"test": 50889}
    folder_aliases = ("sketch",)


@register_dataset
class ImageNetA(ImageNetFamily):
    dataset_dir = "imagenet-adversarial"
    image_dir = "imagenet-a"
    expected_classes = 200
    expected_sizes = {"test": 7500}
    folder_aliases = ("imagenet-a",)


@register_dataset
class ImageNetR(ImageNetFamily):
    dataset_dir = "imagenet-rendition"
    image_dir = "imagenet-r"
    expected_classes = 200
    expected_sizes = {"test": 30000}
    folder_aliases = ("imagenet-r",)
