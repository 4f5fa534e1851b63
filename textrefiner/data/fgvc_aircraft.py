"""``FGVCAircraft``: the dataset's own txt lists instead of a split file.

The ``data/`` folder of ``fgvc-aircraft-2013b.tar.gz``, renamed ``fgvc_aircraft``:
``variants.txt`` gives the 100 class names in label order, and
``images_variant_{train,val,test}.txt`` one ``<image id> <variant>`` line per image
in ``images/<image id>.jpg``.
"""
import os.path as osp
from typing import Dict, List

from ..framework import register_dataset
from .base import LAYOUT_HELP, SplitDataset
from .records import SPLIT_KEYS, Record

VARIANTS_FILE = "variants.txt"
LIST_FILES = {key: f"images_variant_{key}.txt" for key in SPLIT_KEYS}


def read_list(path: str, labels: Dict[str, int]) -> List[Record]:
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            image_id, _, variant = line.strip().partition(" ")
            if variant not in labels:
                raise ValueError(f"line {number} names variant {variant!r}, which {VARIANTS_FILE} does not list")
            records.append((f"{image_id}.jpg", labels[variant], variant))
    if not records:
        raise ValueError("it lists no images")
    return records


@register_dataset
class FGVCAircraft(SplitDataset):
    dataset_dir = "fgvc_aircraft"
    image_dir = "images"
    expected_classes = 100
    expected_sizes = {"train": 3334, "val": 3333, "test": 3333}
    folder_aliases = ("fgvc-aircraft-2013b", "aircraft")

    @classmethod
    def expected_files(cls):
        return (VARIANTS_FILE, *LIST_FILES.values())

    @classmethod
    def read_records(cls, root):
        dataset_dir = cls.folder(root)
        with open(osp.join(dataset_dir, VARIANTS_FILE), encoding="utf-8") as f:
            variants = [line.strip() for line in f if line.strip()]
        labels = {name: label for label, name in enumerate(variants)}
        splits = {}
        for key, filename in LIST_FILES.items():
            path = osp.join(dataset_dir, filename)
            try:
                splits[key] = read_list(path, labels)
            except (ValueError, UnicodeDecodeError) as e:
                fix = f"use the lists from fgvc-aircraft-2013b.tar.gz unchanged ({LAYOUT_HELP})"
                raise cls.error(root, f"malformed list file ({e})", path, fix)
        return splits
