"""Few-shot subsets drawn as Dassl draws them, cached per (shots, seed) as portable JSON.

The draw is Dassl's ``generate_fewshot_dataset`` done on records: per label, in order
of first appearance, ``sample(items, K)``, or ``choices(items, k=K)`` for a class with
fewer than K images when sampling with replacement was asked for. It uses its own
``random.Random(seed)``: the same draws CoOp gets from the global generator right after
``set_random_seed(seed)``, without moving the global generator. The validation subset
gets ``min(K, 4)`` per class and is drawn after the training subset, as CoOp does.

Caches live in ``<dataset folder>/split_fewshot/shot_<K>-seed_<S>.json``, beside CoOp's
``.pkl`` caches (never read: they pickle absolute paths). Paths in ours are relative to
the image folder, so moving ``--root`` keeps them valid. Each cache records how it was
drawn; one drawn with another setting or from another split is reported and drawn
again, never silently reused.
"""
import hashlib
import json
import os.path as osp
import random
from typing import List, Optional, Sequence, Tuple

from ..atomic import write_json
from .errors import DatasetError
from .records import Record, group_by_label

FEWSHOT_DIR = "split_fewshot"
CACHE_VERSION = 2
VAL_SHOTS_MAX = 4  # CoOp validates on at most 4 images per class


def short_classes(records: Sequence[Record], num_shots: int) -> List[Tuple[str, int]]:
    """``(class name, image count)`` of the classes with fewer than ``num_shots`` images."""
    return [(items[0][2], len(items)) for items in group_by_label(records).values() if len(items) < num_shots]


def draw_per_class(records: Sequence[Record], num_shots: int, rng: random.Random, repeat: bool = True) -> List[Record]:
    """``num_shots`` per class, as Dassl draws them; a class with fewer images gives images drawn
    with replacement (``repeat``) or all its images."""
    drawn = []
    for items in group_by_label(records).values():
        if len(items) >= num_shots:
            drawn.extend(rng.sample(items, num_shots))
        elif repeat:
            drawn.extend(rng.choices(items, k=num_shots))
        else:
            drawn.extend(items)
    return drawn


def digest(records: Optional[Sequence[Record]]) -> Optional[str]:
    if records is None:
        return None
    h = hashlib.sha1()
    for path, label, name in records:
        h.update(f"{path}\t{label}\t{name}\n".encode())
    return h.hexdigest()


class FewShotCache:
    """Few-shot train/val subsets of one dataset, drawn once per (shots, seed) and cached."""

    def __init__(self, dataset: str, dataset_dir: str, root: str, doctor_arguments: str = ""):
        self.dataset = dataset
        self.directory = osp.join(dataset_dir, FEWSHOT_DIR)
        self.root = root
        self.doctor_arguments = doctor_arguments  # the doctor's flags for this dataset (DatasetError)

    def path(self, num_shots: int, seed: int) -> str:
        return osp.join(self.directory, f"shot_{num_shots}-seed_{seed}.json")

    def load_or_create(
        self, train: List[Record], val: Optional[List[Record]], num_shots: int, seed: int,
        with_replacement: bool = False,
    ) -> Tuple[List[Record], Optional[List[Record]]]:
        """``(train, val)`` with ``num_shots`` (val: ``min(num_shots, 4)``) per class; a ``None`` val stays None."""
        setting = {
            "version": CACHE_VERSION,
            "num_shots": num_shots,
            "seed": seed,
            "with_replacement": bool(with_replacement),
            "source_train": digest(train),
            "source_val": digest(val),
        }
        path = self.path(num_shots, seed)
        cached = self._read(path)
        if cached is not None:
            if cached.get("setting") != setting:
                print(f"Few-shot cache {path} was drawn with a different setting or split; drawing it again")
            elif not (_drawn_from(cached["train"], train) and _drawn_from(cached["val"], val)):
                print(f"Few-shot cache {path} holds records its split does not have (edited?); drawing it again")
            else:
                print(f"Loading preprocessed few-shot data from {path}")
                return _as_records(cached["train"]), _as_records(cached["val"])
        val_shots = min(num_shots, VAL_SHOTS_MAX)
        if not with_replacement:
            self._require_enough(train, "train", num_shots)
            if val is not None:
                self._warn_short_val(val, val_shots)
        print(f"Creating a {num_shots}-shot dataset")
        rng = random.Random(seed)
        train = draw_per_class(train, num_shots, rng, with_replacement)
        val = None if val is None else draw_per_class(val, val_shots, rng, with_replacement)
        self._write(path, {"setting": setting, "train": train, "val": val})
        return train, val

    def _warn_short_val(self, val: Sequence[Record], val_shots: int) -> None:
        """Validation only selects the model: like Dassl, keep all images of a short class."""
        short = short_classes(val, val_shots)
        if short:
            print(f"Warning: {len(short)} classes of {self.dataset} have fewer than {val_shots} validation images "
                  f"(e.g. {short[0][0]!r}: {short[0][1]}); all of their validation images are used")

    def _require_enough(self, records: Sequence[Record], split: str, num_shots: int) -> None:
        short = short_classes(records, num_shots)
        if not short:
            return
        listed = ", ".join(f"{name!r} ({count})" for name, count in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        raise DatasetError(
            self.dataset,
            f"{len(short)} classes have fewer than {num_shots} images in the {split} split: {listed}{more}",
            osp.dirname(self.directory),
            f"lower DATASET.NUM_SHOTS to {min(count for _, count in short)}, or set "
            "DATASET.FEWSHOT_WITH_REPLACEMENT True to repeat images of those classes",
            self.root,
            self.doctor_arguments,
        )

    @staticmethod
    def _read(path: str) -> Optional[dict]:
        if not osp.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                content = json.load(f)
        except (OSError, ValueError):
            content = None
        if isinstance(content, dict) and {"setting", "train", "val"} <= content.keys():
            return content
        print(f"Few-shot cache {path} is unreadable; drawing it again")
        return None

    @staticmethod
    def _write(path: str, content: dict) -> None:
        try:
            write_json(content, path, encoding="utf-8")  # readers never see a half-written cache
        except OSError as e:
            # A read-only dataset folder only costs the redraw next time (same seed, same draw)
            print(f"Cannot write the few-shot cache {path} ({e}); continuing without it")
            return
        print(f"Saving preprocessed few-shot data to {path}")


def _drawn_from(rows, source: Optional[Sequence[Record]]) -> bool:
    """Whether every cached row is a record of ``source`` (path, label and class name alike)."""
    if rows is None or source is None:
        return rows is None and source is None
    known = {tuple(record) for record in source}
    try:
        return all(tuple(row) in known for row in rows)
    except TypeError:  # a row that is not a list of three plain values
        return False


def _as_records(rows) -> Optional[List[Record]]:
    return None if rows is None else [(path, label, name) for path, label, name in rows]
