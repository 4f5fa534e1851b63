"""Dataset doctor: check the datasets under ``--root`` and print one line per problem with its fix.

    python -m textrefiner.data.doctor --root DATA [--dataset NAME ...] [--sample N] [--shots K]
    python -m textrefiner.data.doctor --root DATA --image-folder DIR [--csv FILE] [--classnames FILE]

For each of the 15 CoOp datasets (or each one named) it runs the checks a training run
makes (folders, split or list files, every listed image present) and then those a run
cannot afford: the class count and the images per split against the published
dataset, the files ``download_splits`` fetches, and a sample of images per split read
through to the last byte. ``--image-folder`` checks your own dataset (``DATASET.NAME
ImageFolder``, its keys ``DATASET.IMAGE_FOLDER.*`` as flags): empty class folders, classes
too small to split, images the saved split does not list. ``--shots K`` also reports the
classes with fewer than K training images. Datasets with no folder are listed as absent.
Nothing is written. Exit status 0 when every dataset present (and every one named) is fine.
"""
import argparse
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import List, Optional

from .base import LAYOUT_HELP
from .catalog import COOP_DATASETS, add_dataset_arguments
from .errors import DatasetError
from .fewshot import short_classes
from .image_folder import ImageFolder
from .records import Splits, evenly_spaced, unreadable_images

DEFAULT_SAMPLE = 20  # images read per split
MAX_IMAGE_LINES = 10  # unreadable images listed one per line, per dataset


@dataclass
class Report:
    dataset: str
    status: str  # "OK", "PROBLEM" or "absent"
    summary: str = ""
    problems: List[DatasetError] = field(default_factory=list)


def check(reader, root: str, sample: int = DEFAULT_SAMPLE, named: bool = False, shots: int = 0) -> Report:
    """Every problem of one dataset; ``named``: an absent dataset is a problem, not just absent;
    ``shots``: classes with fewer training images are problems."""
    name = reader.__name__
    folder = reader.folder(root)
    if not (osp.isdir(folder) or osp.islink(folder) or reader.renamed_folder(root) or named):
        return Report(name, "absent", f"no folder {folder}")
    problems = reader.layout_problems(root)
    if problems:
        return Report(name, "PROBLEM", problems=problems)
    try:
        splits = reader.read_records(root)
    except DatasetError as e:
        return Report(name, "PROBLEM", problems=[e])
    missing = reader.missing_images(root, splits)
    if missing:
        problems.append(reader.missing_images_error(root, missing, sum(len(s) for s in splits.values())))
    problems += reader.content_problems(root, splits)
    problems += shots_problems(reader, root, splits, shots)
    problems += count_problems(reader, root, splits)
    problems += download_problems(reader, root)
    read, image_problems = sample_problems(reader, root, splits, sample, set(missing))
    problems += image_problems
    sizes = format_counts({key: len(records) for key, records in splits.items()})
    summary = f"{class_count(splits)} classes; {sizes}; {read} images read"
    return Report(name, "PROBLEM" if problems else "OK", summary, problems)


def class_count(splits: Splits) -> int:
    return len({label for records in splits.values() for _, label, _ in records})


def shots_problems(reader, root: str, splits: Splits, shots: int) -> List[DatasetError]:
    """The classes with fewer than ``shots`` training images (a ``shots``-shot run stops on them)."""
    if shots < 1 or reader.test_only:
        return []
    short = short_classes(splits["train"], shots)
    if not short:
        return []
    listed = ", ".join(f"{name!r} ({count})" for name, count in short[:5]) + (
        f" and {len(short) - 5} more" if len(short) > 5 else "")
    return [reader.error(
        root, f"{len(short)} classes have fewer than {shots} training images: {listed}", reader.folder(root),
        f"add images to them, use at most {min(count for _, count in short)} shots, or set "
        "DATASET.FEWSHOT_WITH_REPLACEMENT True to repeat images",
    )]


def count_problems(reader, root: str, splits: Splits) -> List[DatasetError]:
    if reader.split_file:
        source = osp.join(reader.folder(root), reader.split_file)
        fix = f"it is not CoOp's split file: {reader.file_fix(root, reader.split_file, again=True)}"
    else:
        source = reader.image_folder(root)
        fix = f"the image folders or list files are incomplete: extract the dataset's archive again ({LAYOUT_HELP})"
    problems = []
    classes = class_count(splits)
    if reader.expected_classes and classes != reader.expected_classes:
        problems.append(reader.error(root, f"{classes} classes, expected {reader.expected_classes}", source, fix))
    found = {key: len(splits.get(key, ())) for key in reader.expected_sizes}
    if found != reader.expected_sizes:
        problem = f"images per split {format_counts(found)}, expected {format_counts(reader.expected_sizes)}"
        problems.append(reader.error(root, problem, source, fix))
    return problems


def format_counts(counts) -> str:
    return ", ".join(f"{key} {count:,}" for key, count in counts.items())


def download_problems(reader, root: str) -> List[DatasetError]:
    problems = []
    for filename in reader.downloads:
        path = osp.join(reader.folder(root), filename)
        try:
            reader.validate_download(filename, path)
        except (ValueError, UnicodeDecodeError) as e:
            problems.append(reader.error(root, f"not CoOp's {filename} ({e})", path, reader.file_fix(root, filename, True)))
    return problems


def sample_problems(reader, root: str, splits: Splits, sample: int, missing: set):
    """``(images read, problems)`` for a sample of each split, images known missing left out."""
    image_dir = reader.image_folder(root)
    paths = [
        osp.join(image_dir, path)
        for records in splits.values()
        for path, _, _ in evenly_spaced(records, sample)
        if path not in missing
    ]
    bad = unreadable_images(paths, decode=True)
    problems = [reader.unreadable_error(root, [item]) for item in bad[:MAX_IMAGE_LINES]]
    if len(bad) > MAX_IMAGE_LINES:
        problems.append(reader.unreadable_error(root, bad[MAX_IMAGE_LINES:]))
    return len(paths), problems


def print_report(report: Report) -> None:
    if report.status == "PROBLEM":
        for problem in report.problems:
            print(f"PROBLEM  {problem.line()}")
    else:
        print(f"{report.status:<8} {report.dataset}: {report.summary}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_dataset_arguments(parser)
    parser.add_argument(
        "--sample", type=int, default=DEFAULT_SAMPLE,
        help=f"images read through per split (default {DEFAULT_SAMPLE}; -1 reads every image)",
    )
    parser.add_argument("--shots", type=int, default=0,
                        help="also report classes with fewer training images than this (the SHOTS of your runs)")
    parser.add_argument("--image-folder", metavar="DIR", default="",
                        help="check your own dataset: DATASET.IMAGE_FOLDER.DIR, the folder under --root")
    parser.add_argument("--csv", default="", help="with --image-folder: DATASET.IMAGE_FOLDER.CSV")
    parser.add_argument("--classnames", default="", help="with --image-folder: DATASET.IMAGE_FOLDER.CLASSNAMES")
    args = parser.parse_args(argv)
    root = osp.abspath(osp.expanduser(args.root))
    if not osp.isdir(root):
        print(f"PROBLEM  --root {root} is not a folder. Fix: pass the folder that holds the dataset folders")
        return 1
    if (args.csv or args.classnames) and not args.image_folder:
        parser.error("--csv and --classnames describe an --image-folder DIR: pass it too")
    named = list(args.datasets) + ([ImageFolder.configured(args.image_folder, args.csv, args.classnames)]
                                   if args.image_folder else [])
    readers = named or COOP_DATASETS
    reports = [check(reader, root, args.sample, named=bool(named), shots=args.shots) for reader in readers]
    for report in reports:
        print_report(report)
    counts = {status: sum(r.status == status for r in reports) for status in ("OK", "PROBLEM", "absent")}
    print(f"Summary for {root}: {counts['OK']} OK, {counts['PROBLEM']} with problems, {counts['absent']} absent")
    if counts["OK"] + counts["PROBLEM"] == 0:
        print(f"No dataset found: --root should hold folders such as caltech-101/ and oxford_pets/ ({LAYOUT_HELP})")
        return 1
    return 1 if counts["PROBLEM"] else 0


if __name__ == "__main__":
    sys.exit(main())
