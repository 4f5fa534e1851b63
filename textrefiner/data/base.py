"""What every CoOp-layout dataset shares: split files, few-shot sampling, base/new classes.

A split file (CoOp's ``split_zhou_<Name>.json``) holds ``train``/``val``/``test`` lists
of ``[relative image path, label, class name]``; paths are relative to the
dataset's image folder.

Few-shot splits are cached per (shots, seed) as JSON under
``<dataset folder>/split_fewshot/`` with paths relative to the image folder, so
moving ``--root`` never invalidates a cache. Each cache records how it was drawn
(shots, seed, repeat, a digest of the full split it was drawn from); a cache
whose record does not match the current setting is reported and redrawn, never
silently reused.
"""
import hashlib
import json
import math
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

from ..framework import DatasetBase, Datum, read_json

FEWSHOT_DIR = "split_fewshot"
FEWSHOT_CACHE_VERSION = 1
SUBSAMPLE_CHOICES = ("all", "base", "new")


def items_to_records(items: Sequence[Datum], image_dir: str) -> List[list]:
    """Datum list -> ``[relative path, label, class name]`` records."""
    return [[osp.relpath(item.impath, image_dir), item.label, item.classname] for item in items]


def records_to_items(records: Sequence[Sequence], image_dir: str) -> List[Datum]:
    return [Datum(impath=osp.join(image_dir, path), label=int(label), classname=name) for path, label, name in records]


def read_split(filepath: str, image_dir: str) -> Tuple[List[Datum], List[Datum], List[Datum]]:
    """Read a CoOp split JSON into (train, val, test) Datum lists."""
    print(f"Reading split from {filepath}")
    split = read_json(filepath)
    return tuple(records_to_items(split[key], image_dir) for key in ("train", "val", "test"))


def subsample_classes(*splits: Sequence[Datum], subsample: str = "all"):
    """Keep all classes, the base half or the new half (CoOp's rule).

    Labels of the first split are sorted; base = first ``ceil(n/2)``, new = the
    rest; kept labels are renumbered from 0 in every split, class names unchanged.
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, got {subsample!r}")
    if subsample == "all":
        return splits
    labels = sorted({item.label for item in splits[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabel = {y: i for i, y in enumerate(selected)}
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    return tuple(
        [
            Datum(impath=item.impath, label=relabel[item.label], domain=item.domain, classname=item.classname)
            for item in split
            if item.label in relabel
        ]
        for split in splits
    )


def _digest(records: Sequence[Sequence]) -> str:
    return hashlib.sha1(json.dumps(records, sort_keys=True).encode()).hexdigest()


class FewShotCache:
    """Few-shot train/val subsets of one dataset, cached as portable JSON."""

    def __init__(self, dataset_dir: str, image_dir: str):
        self.directory = osp.join(dataset_dir, FEWSHOT_DIR)
        self.image_dir = image_dir

    def path(self, num_shots: int, seed: int) -> str:
        return osp.join(self.directory, f"shot_{num_shots}-seed_{seed}.json")

    def load_or_create(self, dataset: DatasetBase, train, val, num_shots: int, seed: int, repeat: bool = False):
        """Return (train, val) with ``num_shots`` per class (val: ``min(num_shots, 4)``, as CoOp)."""
        setting = {
            "version": FEWSHOT_CACHE_VERSION,
            "num_shots": num_shots,
            "seed": seed,
            "repeat": repeat,
            "source_train": _digest(items_to_records(train, self.image_dir)),
            "source_val": _digest(items_to_records(val, self.image_dir)),
        }
        path = self.path(num_shots, seed)
        cached = self._read(path)
        if cached is not None:
            if cached.get("setting") == setting:
                print(f"Loading preprocessed few-shot data from {path}")
                return (records_to_items(cached["train"], self.image_dir), records_to_items(cached["val"], self.image_dir))
            print(f"Few-shot cache {path} was drawn with a different setting or split; drawing it again")
        train = dataset.generate_fewshot_dataset(train, num_shots=num_shots, repeat=repeat)
        val = dataset.generate_fewshot_dataset(val, num_shots=min(num_shots, 4), repeat=repeat)
        self._write(path, {
            "setting": setting,
            "train": items_to_records(train, self.image_dir),
            "val": items_to_records(val, self.image_dir),
        })
        print(f"Saving preprocessed few-shot data to {path}")
        return train, val

    @staticmethod
    def _read(path: str) -> Optional[dict]:
        if not osp.exists(path):
            return None
        try:
            return read_json(path)
        except (OSError, ValueError):
            print(f"Few-shot cache {path} is unreadable; drawing it again")
            return None

    def _write(self, path: str, content: dict) -> None:
        os.makedirs(self.directory, exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(content, f)
        os.replace(tmp, path)


class SplitDataset(DatasetBase):
    """A dataset under ``<root>/<dataset_dir>`` described by a CoOp split file.

    Subclasses set ``dataset_dir``, ``image_dir`` (relative to ``dataset_dir``) and
    ``split_file``, and may override ``read_data()``; few-shot sampling
    (``DATASET.NUM_SHOTS``) and class subsampling (``DATASET.SUBSAMPLE_CLASSES``)
    are applied here for all of them.
    """

    dataset_dir = ""
    image_dir = "images"
    split_file = ""

    def __init__(self, cfg):
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = osp.join(root, type(self).dataset_dir)
        self.image_dir = osp.join(self.dataset_dir, type(self).image_dir)
        self.split_path = osp.join(self.dataset_dir, type(self).split_file)
        train, val, test = self.read_data()
        num_shots = cfg.DATASET.NUM_SHOTS
        if num_shots >= 1:
            cache = FewShotCache(self.dataset_dir, self.image_dir)
            train, val = cache.load_or_create(self, train, val, num_shots, cfg.SEED)
        train, val, test = subsample_classes(train, val, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=train, val=val, test=test)

    def read_data(self) -> Tuple[List[Datum], List[Datum], List[Datum]]:
        if not osp.exists(self.split_path):
            raise FileNotFoundError(
                f"{type(self).__name__}: split file {self.split_path} not found. Put "
                f"{type(self).split_file} in {self.dataset_dir} (check with `python -m textrefiner.data.doctor "
                f"--root {osp.dirname(self.dataset_dir)}`)"
            )
        return read_split(self.split_path, self.image_dir)
