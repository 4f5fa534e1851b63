"""What every CoOp-layout dataset shares: its place under ``--root``, reading, checks, few-shot, base/new.

A reader is a ``SplitDataset`` subclass that describes its layout in class attributes
(folder, image folder, split file, the published class and image counts, the files
``download_splits`` fetches) and overrides ``read_records`` when it has no CoOp split
file. The class methods need only ``--root``, so the doctor runs exactly the checks a
training run does, without a config. ``__init__`` runs them, draws the few-shot
subset (``DATASET.NUM_SHOTS``), keeps all/base/new classes
(``DATASET.SUBSAMPLE_CLASSES``) and builds the Datum lists.

Nothing under ``--root`` is written except the few-shot cache folder (and ``ImageFolder``'s
split file, drawn once for a user's own images).
"""
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

from ..framework import DatasetBase
from .errors import DatasetError, download_command
from .fewshot import FEWSHOT_DIR, FewShotCache
from .records import Record, Splits, first_per_class, find_missing, read_split_file, subsample_classes, to_items
from .records import unreadable_images

LAYOUT_HELP = "README, section 'Datasets'"


def normalise_name(name: str) -> str:
    """``Food-101``, ``food_101`` and ``food101`` all become ``food101``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


class SplitDataset(DatasetBase):
    """A dataset under ``<root>/<dataset_dir>`` whose images are listed in a CoOp split file."""

    dataset_dir = ""  # folder under --root
    image_dir = "images"  # relative to dataset_dir; record paths are relative to it
    split_file = ""  # CoOp split JSON in dataset_dir
    has_val = True  # False: validate on the test split (CoOp's convention for ImageNet)
    test_only = False  # only a test split (ImageNet variants); NUM_SHOTS does not apply
    expected_classes = 0  # in the published dataset, checked by the doctor
    expected_sizes: Dict[str, int] = {}  # images per split in the published dataset
    downloads: Dict[str, str] = {}  # file in dataset_dir -> Google Drive file id
    folder_aliases: Tuple[str, ...] = ()  # other names users give the folder (the doctor suggests a rename)
    image_dir_aliases: Tuple[str, ...] = ()  # other names archives give ``image_dir`` (a rename is suggested)

    def __init__(self, cfg):
        cls = self.reader(cfg)
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = cls.folder(root)
        self.image_dir = cls.image_folder(root)
        train, val, test = self._subsets(cls, cfg, root, cls.load_records(root))
        # Decode every image a run will read to its end (the few-shot sets and the test set; a
        # full training set only one per class), so that a bad file stops the run here, all
        # listed, rather than in the final test after the whole training.
        few_shot = cfg.DATASET.NUM_SHOTS >= 1 and train is not None
        cls.require_readable(root, train, val, test, every_image=(train, val, test) if few_shot else (test,))
        test_items = to_items(test, self.image_dir)
        train_items = test_items if train is None else to_items(train, self.image_dir)
        if cls.test_only:
            val_items = None
        else:
            val_items = test_items if val is None else to_items(val, self.image_dir)
        super().__init__(train_x=train_items, val=val_items, test=test_items)

    @classmethod
    def reader(cls, cfg):
        """The class whose layout this run reads (a reader configured by ``cfg`` returns a subclass)."""
        return cls

    def _subsets(self, cls, cfg, root: str, splits: Splits):
        """``(train, val, test)`` records after few-shot sampling and class subsampling.

        ``train`` is None for test-only datasets, ``val`` None where the dataset has none.
        """
        subsample = cfg.DATASET.SUBSAMPLE_CLASSES
        if cls.test_only:
            (test,) = subsample_classes(splits["test"], subsample=subsample)
            return None, None, test
        train, val = splits["train"], splits["val"] if cls.has_val else None
        if cfg.DATASET.NUM_SHOTS >= 1:
            cache = FewShotCache(cls.__name__, self.dataset_dir, root, cls.doctor_arguments())
            # .get: a config extended by another tool's extend_cfg may not have our key
            with_replacement = cfg.DATASET.get("FEWSHOT_WITH_REPLACEMENT", False)
            train, val = cache.load_or_create(train, val, cfg.DATASET.NUM_SHOTS, cfg.SEED, with_replacement)
        return subsample_classes(train, val, splits["test"], subsample=subsample)

    # ---- where things are -------------------------------------------------------
    @classmethod
    def folder(cls, root: str) -> str:
        return osp.join(root, cls.dataset_dir)

    @classmethod
    def image_folder(cls, root: str) -> str:
        return osp.normpath(osp.join(cls.folder(root), cls.image_dir))

    @classmethod
    def expected_folders(cls) -> Tuple[str, ...]:
        return (cls.image_dir,) if cls.image_dir else ()

    @classmethod
    def expected_files(cls) -> Tuple[str, ...]:
        return (cls.split_file,) if cls.split_file else ()

    @classmethod
    def matches(cls, name: str) -> bool:
        """Whether ``name`` (Dassl name, folder name, config name, any case) means this dataset."""
        names = (cls.__name__, cls.dataset_dir, *cls.folder_aliases)
        return normalise_name(name) in {normalise_name(n) for n in names}

    # ---- reading and checking, from --root alone ----------------------------------
    @classmethod
    def load_records(cls, root: str) -> Splits:
        """All records by split; raises the first layout problem as a DatasetError."""
        problems = cls.layout_problems(root)
        if problems:
            raise problems[0]
        splits = cls.read_records(root)
        missing = cls.missing_images(root, splits)
        if missing:
            raise cls.missing_images_error(root, missing, sum(len(s) for s in splits.values()))
        return splits

    @classmethod
    def read_records(cls, root: str) -> Splits:
        path = osp.join(cls.folder(root), cls.split_file)
        try:
            return read_split_file(path)
        except ValueError as e:
            raise cls.error(root, f"malformed split file ({e})", path, cls.file_fix(root, cls.split_file, again=True))

    @classmethod
    def missing_images(cls, root: str, splits: Splits) -> List[str]:
        """Listed images with no file (readers that list folders override this with ``[]``)."""
        return find_missing(cls.image_folder(root), [path for split in splits.values() for path, _, _ in split])

    @classmethod
    def validate_download(cls, filename: str, path: str) -> None:
        """Raise ValueError unless ``path`` is a good copy of the downloadable ``filename``."""
        read_split_file(path)

    @classmethod
    def layout_problems(cls, root: str) -> List[DatasetError]:
        dataset_dir = cls.folder(root)
        if not osp.isdir(dataset_dir):
            return [cls.folder_error(root)]
        problems = []
        for rel in cls.expected_folders():
            path = osp.join(dataset_dir, rel)
            if not osp.isdir(path):
                fix = _misplaced_hint(dataset_dir, path, osp.isdir) or cls.renamed_image_dir_hint(dataset_dir, rel) or (
                    f"extract the dataset so that this folder exists ({LAYOUT_HELP})"
                )
                problems.append(cls.error(root, "folder not found", path, fix))
        for rel in cls.expected_files():
            path = osp.join(dataset_dir, rel)
            if not osp.isfile(path):
                fix = _misplaced_hint(dataset_dir, path, osp.isfile) or cls.file_fix(root, rel)
                problems.append(cls.error(root, "file not found", path, fix))
        return problems

    @classmethod
    def renamed_image_dir_hint(cls, dataset_dir: str, rel: str) -> Optional[str]:
        """'rename X to Y' when the image folder is there under a name an archive gives it."""
        if rel != cls.image_dir:
            return None
        for alias in cls.image_dir_aliases:
            candidate = osp.join(dataset_dir, alias)
            if osp.isdir(candidate):
                return f"rename {candidate} to {osp.join(dataset_dir, rel)}"
        return None

    @classmethod
    def require_readable(
        cls, root: str, *splits: Optional[Sequence[Record]], every_image: Sequence[Optional[Sequence[Record]]] = ()
    ) -> None:
        """Decode the first image of every class in every split, and every image of the splits also
        passed in ``every_image``."""
        image_dir = cls.image_folder(root)
        whole = [split for split in every_image if split]
        chosen = [split if any(split is w for w in whole) else first_per_class(split) for split in splits if split]
        paths = list(dict.fromkeys(osp.join(image_dir, path) for split in chosen for path, _, _ in split))
        bad = unreadable_images(paths, decode=True)
        if bad:
            raise cls.unreadable_error(root, bad)

    # ---- messages -------------------------------------------------------------
    @classmethod
    def doctor_arguments(cls) -> str:
        """The doctor's flags that check this dataset ("": ``--dataset <name>``)."""
        return ""

    @classmethod
    def content_problems(cls, root: str, splits: Splits) -> List[DatasetError]:
        """Problems with what the records hold that the checks above miss (the doctor lists them all)."""
        return []

    @classmethod
    def error(cls, root: str, problem: str, path: str, fix: str) -> DatasetError:
        return DatasetError(cls.__name__, problem, path, fix, root, cls.doctor_arguments())

    @classmethod
    def folder_error(cls, root: str) -> DatasetError:
        path = cls.folder(root)
        if osp.islink(path):
            return cls.error(root, "broken symbolic link", path, f"point it at the dataset (it points to {os.readlink(path)})")
        renamed = cls.renamed_folder(root)
        if renamed and osp.basename(renamed) == cls.image_dir:  # e.g. imagenet-a/ extracted straight into --root
            return cls.error(root, "dataset folder not found", path, f"create it and move {renamed} into it")
        if renamed:
            return cls.error(root, "dataset folder not found", path, f"rename {renamed} to {path}")
        return cls.error(root, "dataset folder not found", path, f"create it and put the dataset there ({LAYOUT_HELP})")

    @classmethod
    def renamed_folder(cls, root: str) -> Optional[str]:
        """A folder in ``root`` that is this dataset under another name (``Caltech101``, ``food101``, ...)."""
        if not osp.isdir(root):
            return None
        for entry in sorted(os.listdir(root)):
            path = osp.join(root, entry)
            if entry != cls.dataset_dir and osp.isdir(path) and cls.matches(entry):
                return path
        return None

    @classmethod
    def file_fix(cls, root: str, filename: str, again: bool = False) -> str:
        if filename in cls.downloads:
            force = " --force" if again else ""
            return f"download it with `{download_command(root, cls.__name__)}{force}`"
        return f"it comes with the dataset's archive: extract it again ({LAYOUT_HELP})"

    @classmethod
    def missing_images_error(cls, root: str, missing: List[str], total: int) -> DatasetError:
        return cls.error(
            root,
            f"{len(missing)} of {total} listed images are missing, the first is",
            osp.join(cls.image_folder(root), missing[0]),
            "extract the dataset's full image archive into the image folder "
            f"({LAYOUT_HELP}); if the images are there under other names, the list file is not CoOp's",
        )

    @classmethod
    def unreadable_error(cls, root: str, bad: List[Tuple[str, str]]) -> DatasetError:
        path, reason = bad[0]
        if len(bad) == 1:
            return cls.error(
                root, f"unreadable image ({reason})", path,
                "replace it with the file from the dataset's archive (extract the archive again)",
            )
        listed = ", ".join(f"{p} ({r})" for p, r in bad)
        return cls.error(
            root, f"{len(bad)} unreadable images", listed,
            "replace them with the files from the dataset's archive (extract the archive again)",
        )


def _misplaced_hint(dataset_dir: str, expected: str, kind) -> Optional[str]:
    """'move X to Y' when what ``expected`` names sits nearby: next to the dataset folder or
    up to two levels inside it (an archive extracted one folder too deep)."""
    name = osp.basename(expected)
    parents = [osp.dirname(dataset_dir), dataset_dir]
    for sub in _subfolders(dataset_dir):
        parents += [sub, *_subfolders(sub)]
    for parent in parents:
        candidate = osp.join(parent, name)
        if candidate != expected and kind(candidate):
            return f"move {candidate} to {expected}"
    return None


def _subfolders(path: str) -> List[str]:
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return []
    return [e.path for e in entries if e.is_dir() and e.name != FEWSHOT_DIR]
