"""Tiny on-disk copies of the 15 CoOp dataset layouts for the dataset tests.

Five classes, 8x8 images (4 train, 2 val, 3 test per class), split files and list
files in the real formats, ImageNet's 1000-line classnames.txt. ``build(root, reader)``
writes one dataset and returns what its reader should find.
"""
import functools
import io
import json
import os
import os.path as osp
from typing import Dict, List, NamedTuple

from PIL import Image

from textrefiner.data import COOP_DATASETS
from textrefiner.data.fgvc_aircraft import LIST_FILES, VARIANTS_FILE, FGVCAircraft
from textrefiner.data.imagenet import CLASSNAMES_FILE, ImageNet, ImageNetFamily, ImageNetV2
from textrefiner.data.split_file_datasets import EUROSAT_CLASSNAMES, EuroSAT, StanfordCars

N_CLASSES = 5
PER_CLASS = {"train": 4, "val": 2, "test": 3}
WNIDS = [f"n{i:08d}" for i in range(1000)]
IMAGENET_NAMES = [f"imagenet thing {i}" for i in range(1000)]
SUBSET_INDICES = [3, 7, 11, 20, 42]  # the 200-class variants hold scattered ImageNet classes
FGVC_VARIANTS = ["707-320", "A300B4", "Cessna 172", "DC-10", "F/A-18"]


class Fake(NamedTuple):
    classnames: List[str]  # in label order
    sizes: Dict[str, int]  # images per split, as read_records returns them


@functools.lru_cache(maxsize=None)
def image_bytes(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 60, 200)).save(buffer, format=fmt)
    return buffer.getvalue()


def write_image(path: str) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(image_bytes("JPEG" if path.lower().endswith((".jpg", ".jpeg")) else "PNG"))


def write_text(path: str, lines: List[str]) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def build(root: str, reader) -> Fake:
    if reader is FGVCAircraft:
        return _fgvc(root)
    if issubclass(reader, ImageNetFamily):
        return _imagenet_family(root, reader)
    return _split_file(root, reader)


def build_all(root: str) -> Dict[type, Fake]:
    return {reader: build(root, reader) for reader in COOP_DATASETS}


def _split_file(root: str, reader) -> Fake:
    if reader is EuroSAT:  # folder names in the file; the reader must rename them
        names = list(EUROSAT_CLASSNAMES)[:N_CLASSES]
    else:
        names = [f"{reader.__name__.lower()} class {i}" for i in range(N_CLASSES)]
    split = {key: [] for key in PER_CLASS}
    for label, name in enumerate(names):
        for key, count in PER_CLASS.items():
            for i in range(count):
                prefix = ("cars_test/" if key == "test" else "cars_train/") if reader is StanfordCars else ""
                rel = f"{prefix}{name.replace(' ', '_')}/{key}_{i}.jpg"
                write_image(osp.join(reader.image_folder(root), rel))
                split[key].append([rel, label, name])
    with open(osp.join(reader.folder(root), reader.split_file), "w") as f:
        json.dump(split, f)
    if reader is EuroSAT:
        names = [EUROSAT_CLASSNAMES[n] for n in names]
    return Fake(names, {key: count * N_CLASSES for key, count in PER_CLASS.items()})


def _fgvc(root: str) -> Fake:
    folder = FGVCAircraft.folder(root)
    write_text(osp.join(folder, VARIANTS_FILE), FGVC_VARIANTS)
    image_id = 1000000
    for key, filename in LIST_FILES.items():
        lines = []
        for variant in FGVC_VARIANTS:
            for _ in range(PER_CLASS[key]):
                image_id += 1
                write_image(osp.join(folder, "images", f"{image_id}.jpg"))
                lines.append(f"{image_id} {variant}")
        write_text(osp.join(folder, filename), lines)
    return Fake(FGVC_VARIANTS, {key: count * N_CLASSES for key, count in PER_CLASS.items()})


def _imagenet_family(root: str, reader) -> Fake:
    write_text(osp.join(reader.folder(root), CLASSNAMES_FILE), [f"{w} {n}" for w, n in zip(WNIDS, IMAGENET_NAMES)])
    image_dir = reader.image_folder(root)
    if reader is ImageNet:
        for wnid in WNIDS[:N_CLASSES]:
            for split, key in (("train", "train"), ("val", "test")):
                for i in range(PER_CLASS[key]):
                    write_image(osp.join(image_dir, split, wnid, f"{wnid}_{i}.JPEG"))
        sizes = {"train": PER_CLASS["train"] * N_CLASSES, "test": PER_CLASS["test"] * N_CLASSES}
        return Fake(IMAGENET_NAMES[:N_CLASSES], sizes)
    if reader is ImageNetV2:
        indices = list(range(N_CLASSES))
        folders = [str(i) for i in indices]
    else:
        indices = SUBSET_INDICES
        folders = [WNIDS[i] for i in indices]
    for folder in folders:
        for i in range(PER_CLASS["test"]):
            write_image(osp.join(image_dir, folder, f"{i}.jpg"))
    return Fake([IMAGENET_NAMES[i] for i in indices], {"test": PER_CLASS["test"] * N_CLASSES})
