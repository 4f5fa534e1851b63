"""Image records, CoOp split files, base/new classes and the file checks every reader shares.

A record is ``(relative image path, label, class name)``, the row format of CoOp's
``split_zhou_<Name>.json``; paths are relative to the dataset's image folder. Readers
work on records and make ``Datum`` objects last: real Dassl's ``Datum`` asserts that
its file exists, so our checks must run first to give our message, and a few-shot run
then builds Datum objects for its few training images only.
"""
import json
import math
import os
import os.path as osp
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image

from ..framework import Datum

Record = Tuple[str, int, str]
Splits = Dict[str, List[Record]]
SPLIT_KEYS = ("train", "val", "test")
SUBSAMPLE_CHOICES = ("all", "base", "new")


def parse_split(content) -> Splits:
    """Validate the content of a CoOp split file; ValueError says what is wrong and where."""
    if not isinstance(content, dict):
        raise ValueError("expected a JSON object with train/val/test lists")
    names: Dict[int, str] = {}
    splits: Splits = {}
    for key in SPLIT_KEYS:
        rows = content.get(key)
        if not isinstance(rows, list):
            raise ValueError(f"it has no {key!r} list")
        splits[key] = [_parse_row(row, key, i, names) for i, row in enumerate(rows)]
    for key in ("train", "test"):
        if not splits[key]:
            raise ValueError(f"its {key!r} list is empty")
    # Dassl counts classes as max(label) + 1: a stray label would add phantom classes
    stray = sorted(set(names) - set(range(len(names))))
    if stray:
        raise ValueError(
            f"its {len(names)} classes must have labels 0..{len(names) - 1}, but labels {stray[:10]} "
            f"({', '.join(repr(names[y]) for y in stray[:3])}) are outside that range"
        )
    return splits


def _parse_row(row, key: str, index: int, names: Dict[int, str]) -> Record:
    ok = isinstance(row, list) and len(row) == 3
    if ok:
        path, label, name = row
        ok = isinstance(path, str) and isinstance(name, str) and type(label) is int and label >= 0
    if not ok:
        raise ValueError(f"{key}[{index}] is {row!r}, expected [relative image path, label >= 0, class name]")
    if names.setdefault(label, name) != name:
        raise ValueError(f"label {label} is called both {names[label]!r} and {name!r}")
    return path, label, name


def read_split_file(path: str) -> Splits:
    """Read and validate a split file (ValueError when it is not valid JSON or not in CoOp's format)."""
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"it is not valid JSON ({e})") from e
    return parse_split(content)


def to_items(records: Sequence[Record], image_dir: str) -> List[Datum]:
    return [Datum(impath=osp.join(image_dir, path), label=label, classname=name) for path, label, name in records]


def subsample_classes(*splits: Optional[List[Record]], subsample: str = "all"):
    """Keep all classes, the base half or the new half (CoOp's rule).

    Labels of the first split are sorted; base = first ``ceil(n/2)``, new = the rest;
    kept labels are renumbered from 0 in every split, class names unchanged. ``None``
    splits pass through.
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, got {subsample!r}")
    if subsample == "all":
        return splits
    labels = sorted({label for _, label, _ in splits[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabel = {y: i for i, y in enumerate(selected)}
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    return tuple(
        None if split is None else [(path, relabel[label], name) for path, label, name in split if label in relabel]
        for split in splits
    )


def group_by_label(records: Sequence[Record]) -> Dict[int, List[Record]]:
    """Records per label, labels in order of first appearance (the order Dassl samples in)."""
    groups = defaultdict(list)
    for record in records:
        groups[record[1]].append(record)
    return groups


def first_per_class(records: Sequence[Record]) -> List[Record]:
    return [items[0] for items in group_by_label(records).values()]


def evenly_spaced(records: Sequence[Record], count: int) -> List[Record]:
    """``count`` records spread over the list (all of them when ``count`` < 0)."""
    if count < 0 or count >= len(records):
        return list(records)
    if count == 0:
        return []
    step = len(records) / count
    return [records[int(i * step)] for i in range(count)]


def find_missing(image_dir: str, relpaths: Sequence[str]) -> List[str]:
    """The listed paths with no file, found by listing each folder once.

    One ``listdir`` per folder instead of one ``stat`` per image keeps this cheap for
    split files with a hundred thousand entries.
    """
    listings: Dict[str, set] = {}
    missing = []
    for rel in relpaths:
        folder, name = osp.split(rel)
        if folder not in listings:
            try:
                listings[folder] = set(os.listdir(osp.join(image_dir, folder)))
            except OSError:
                listings[folder] = set()
        if name not in listings[folder]:
            missing.append(rel)
    return missing


def _problem(path: str, decode: bool) -> Optional[str]:
    try:
        with Image.open(path) as img:
            if decode:
                img.load()  # a truncated file opens fine and only fails here
    except (OSError, SyntaxError, ValueError) as e:
        return str(e) or type(e).__name__
    return None


def unreadable_images(paths: Sequence[str], decode: bool = False) -> List[Tuple[str, str]]:
    """``(path, reason)`` for each image PIL cannot open (``decode``: nor fully decode), in order.
    Decoding runs in threads (PIL releases the GIL while it decodes)."""
    if not decode or len(paths) < 64:
        problems = [_problem(path, decode) for path in paths]
    else:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            problems = list(pool.map(lambda p: _problem(p, decode), paths, chunksize=32))
    return [(path, problem) for path, problem in zip(paths, problems) if problem is not None]
