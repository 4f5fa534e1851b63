"""Fetch CoOp's split files and ImageNet's ``classnames.txt`` from Google Drive with gdown.

    python -m textrefiner.data.download_splits --root DATA [--dataset NAME ...] [--force]

The files are the ones CoOp's DATASETS.md links: ``split_zhou_<Name>.json`` for the nine
split-file datasets and ``classnames.txt`` for ImageNet and its four variants (one
download, copied to each). A download is checked before it is moved into place, in
one rename: a split file must be JSON with train/val/test lists of
``[path, label, class name]``, ``classnames.txt`` must name 1000 classes; a quota or
login page in place of the file is caught there and never reaches the dataset folder. A valid
file already in place is kept unless ``--force``. Without ``--dataset`` only datasets
whose folder exists are served; a named dataset gets its folder created.
"""
import argparse
import functools
import os
import os.path as osp
import shutil
import sys
from typing import Callable, Dict, List, Optional, Tuple

from ..atomic import atomic_write
from .catalog import COOP_DATASETS, add_dataset_arguments

#: what marks a download not yet checked and moved into place: ``<file>.download-<random>``
DOWNLOAD_MARK = ".download-"


class DownloadFailed(Exception):
    """A file could not be fetched or was not the expected file; the message says what to do."""


class Offline(DownloadFailed):
    """Google Drive cannot be reached: no point trying the other files."""


def drive_url(file_id: str) -> str:
    return f"https://drive.google.com/uc?id={file_id}"


def _gdown_refusals(gdown) -> tuple:
    """The exceptions gdown raises when Drive refuses a file: ``DownloadError`` (gdown >= 6),
    ``FileURLRetrievalError`` (gdown 4.7 - 5.x); older releases print and return None instead."""
    names = ("DownloadError", "FileURLRetrievalError")
    exceptions = getattr(gdown, "exceptions", None)
    found = tuple(getattr(exceptions, n) for n in names if isinstance(getattr(exceptions, n, None), type))
    return found or (RuntimeError,)


def fetch(file_id: str, dest: str, validate: Callable[[str], None]) -> None:
    """Download one file to ``dest`` through a temporary name beside it, checked before the rename."""
    try:
        import gdown  # here, so that --help and the doctor's hints work without it
    except ImportError as e:
        raise DownloadFailed("gdown is not installed: `pip install gdown`") from e

    by_hand = f"download {drive_url(file_id)} in a browser and save it as {dest}"

    def download(tmp: str) -> None:
        os.remove(tmp)  # gdown creates it: no file afterwards means it wrote nothing
        try:
            result = gdown.download(id=file_id, output=tmp, quiet=True)
        except OSError as e:  # requests' connection errors are OSErrors
            raise Offline(f"cannot reach Google Drive ({e}). If this machine is offline, {by_hand}") from e
        except _gdown_refusals(gdown) as e:
            raise DownloadFailed(f"Google Drive refused the download ({e}); try again later, or {by_hand}") from e
        if result is None or not osp.isfile(tmp):
            raise DownloadFailed(f"gdown returned no file; try again later, or {by_hand}")
        try:
            validate(tmp)
        except (ValueError, UnicodeDecodeError) as e:
            raise DownloadFailed(
                f"the download is not the expected file ({e}); Google Drive may have sent a quota page: "
                f"try again later, or {by_hand}"
            ) from e

    atomic_write(download, dest, mark=DOWNLOAD_MARK)


def copy_into_place(source: str, dest: str) -> None:
    atomic_write(lambda tmp: shutil.copyfile(source, tmp), dest, mark=DOWNLOAD_MARK)


def needs_download(dest: str, validate: Callable[[str], None], force: bool) -> bool:
    if force or not osp.isfile(dest):
        return True
    try:
        validate(dest)
    except (ValueError, UnicodeDecodeError) as e:
        print(f"replacing {dest}: {e}")
        return True
    print(f"kept     {dest} (already in place and valid)")
    return False


def plan(root: str, readers, named: bool) -> List[Tuple[str, str, str, Callable[[str], None]]]:
    """``(dataset, Drive id, destination, check)`` for each file to serve; named datasets get their folder."""
    jobs = []
    for reader in readers:
        folder = reader.folder(root)
        if not reader.downloads:
            if named:
                print(f"{reader.__name__} has nothing to download: its lists come with the dataset's archive")
            continue
        if not osp.isdir(folder):
            if not named:
                continue
            os.makedirs(folder)
        for filename, file_id in reader.downloads.items():
            validate = functools.partial(reader.validate_download, filename)
            jobs.append((reader.__name__, file_id, osp.join(folder, filename), validate))
    return jobs


def download(jobs, force: bool) -> int:
    """Put every planned file in place; returns the number of files not fetched."""
    placed: Dict[str, str] = {}  # Drive id -> a checked copy already on disk
    failed = 0
    for index, (dataset, file_id, dest, validate) in enumerate(jobs):
        if not needs_download(dest, validate, force):
            placed.setdefault(file_id, dest)
            continue
        try:
            if file_id in placed:
                copy_into_place(placed[file_id], dest)
            else:
                fetch(file_id, dest, validate)
        except DownloadFailed as e:
            print(f"FAILED   {dataset}: {osp.basename(dest)}: {e}")
            failed += 1
            if isinstance(e, Offline):
                left = [job for job in jobs[index + 1:] if not osp.isfile(job[2])]
                for name, left_id, left_dest, _ in left:
                    print(f"not done {name}: {drive_url(left_id)} -> {left_dest}")
                return failed + len(left)
            continue
        placed[file_id] = dest
        print(f"saved    {dest}")
    return failed


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_dataset_arguments(parser)
    parser.add_argument("--force", action="store_true", help="download again even when a valid file is in place")
    args = parser.parse_args(argv)
    root = osp.abspath(osp.expanduser(args.root))
    readers = list(args.datasets or COOP_DATASETS)
    if not args.datasets and not any(osp.isdir(r.folder(root)) for r in readers):
        print(f"No dataset folder under {root}; name the datasets with --dataset to create their folders")
        return 1
    failed = download(plan(root, readers, named=bool(args.datasets)), args.force)
    print("Done." if not failed else f"{failed} file(s) not fetched; see the lines above.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
