"""Files and folders written so that no reader and no kill ever sees half of one.

Everything is written under a temporary name beside its final name (same folder, so the same
file system) and then renamed into place in one step: a reader sees the old file or the new one,
never a mix, and a kill leaves the old file plus a temporary file. Temporary files are named
``<final name>.partial-<random>`` (``PARTIAL_MARK``), the names the resume's clean-up
(``framework.checkpoint_set.remove_partial_files``) removes. They get the mode a plain ``open``
would give (0666 less the umask), not ``mkstemp``'s 0600, and by default their data is synced to
disk before the rename, so a power loss cannot leave the new name on an empty file.

A leaf: it imports nothing of this package (torch only inside ``save_torch``).
"""
import io
import json
import os
import os.path as osp
import shutil
import tempfile
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

__all__ = ["PARTIAL_MARK", "atomic_write", "write_bytes", "write_text", "write_json", "save_torch",
           "torch_bytes", "atomic_folder"]

#: what marks a temporary file of an atomic write: ``<final name>.partial-<random>``
PARTIAL_MARK = ".partial-"

_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(write: Callable[[str], Any], path: str, fsync: bool = True, mark: str = PARTIAL_MARK) -> None:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, then rename it to ``path``.

    The folder is created if missing. Whatever ``write`` raises (an ``OSError`` of a full disk, a
    failed check of the content) propagates, with the temporary file removed and ``path`` as it
    was. ``fsync``: sync the data before the rename; ``mark``: what follows the final name in the
    temporary one."""
    directory = osp.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=osp.basename(path) + mark, dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual mode
        if fsync:
            _fsync(tmp)  # the data is on disk before the name points at it
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def write_bytes(data: bytes, path: str, fsync: bool = True) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(write, path, fsync)


def write_text(text: str, path: str, encoding: Optional[str] = None, fsync: bool = True) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding=encoding) as f:
            f.write(text)

    atomic_write(write, path, fsync)


def write_json(obj: Any, path: str, indent: Optional[int] = None, encoding: Optional[str] = None,
               fsync: bool = True) -> None:
    """``json.dump(obj, f, indent=indent)`` into ``path``, atomically (the same text)."""
    write_text(json.dumps(obj, indent=indent), path, encoding, fsync)


def torch_bytes(obj: Any) -> bytes:
    """``torch.save`` into memory: the size is known before anything touches the disk."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_torch(obj: Any, path: str, serialise_first: bool = False, fsync: bool = True) -> None:
    """``torch.save(obj, path)``, atomically. The archive inside the file is named after ``path``'s
    file name (torch names it after the temporary file's name up to its last dot).

    ``serialise_first``: pickle into memory, then write the bytes, so a full disk or a file-size
    limit is an ``OSError`` of the write, never an error in the middle of pickling (torch then
    names the archive ``archive``, as for any buffer)."""
    if serialise_first:
        write_bytes(torch_bytes(obj), path, fsync)
        return
    import torch

    atomic_write(lambda tmp: torch.save(obj, tmp), path, fsync)


@contextmanager
def atomic_folder(path: str, prefix: Optional[str] = None, complete_marker: Optional[str] = None) -> Iterator[str]:
    """``with atomic_folder(path) as tmp:`` fill the folder ``tmp``, which becomes ``path`` when the
    block ends without an error (one rename, the usual folder mode); on an error it is removed.

    ``prefix``: the temporary folder's name up to its random part (default ``<name>.partial-``).
    ``complete_marker``: a file every finished ``path`` holds; if the rename fails and ``path``
    holds it, another process finished the same folder at the same moment: that is no error."""
    parent = osp.dirname(osp.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=prefix or osp.basename(path) + PARTIAL_MARK, dir=parent)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp creates 0700; give the folder the usual mode
        try:
            os.rename(tmp, path)
        except OSError:
            if complete_marker is None or not osp.exists(osp.join(path, complete_marker)):
                raise
    finally:
        if osp.exists(tmp):
            shutil.rmtree(tmp)
