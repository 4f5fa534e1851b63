"""Utilities with the names and behaviour of ``dassl.utils`` (logger, seeds, files, meters)."""
import errno
import json
import os
import os.path as osp
import random
import sys
import time
import warnings
from collections import defaultdict
from typing import Any, Dict, List

import numpy as np
import torch
from PIL import Image

__all__ = [
    "Logger", "setup_logger", "teardown_logger", "log_only", "logging_to_file", "mkdir_if_missing", "check_isfile", "read_json", "write_json",
    "set_random_seed", "read_image", "collect_env_info", "listdir_nohidden", "tolist_if_not",
    "check_availability", "count_num_param", "AverageMeter", "MetricMeter",
]


class Logger:
    """Tee: everything written to stdout also goes to a log file, line by line (a run killed at any
    moment keeps every line it printed), synced to disk on every flush()."""

    def __init__(self, fpath: str, file=None):
        self.console = sys.stdout
        mkdir_if_missing(osp.dirname(fpath))
        self.file = file if file is not None else open(fpath, "w", buffering=1)
        self.fpath = fpath

    def write(self, msg: str) -> None:
        # the file first: a line anyone has seen on the console is already in the log
        try:
            self.file.write(msg)
        except UnicodeEncodeError:  # a path that is not UTF-8 (legal on Linux): its bytes as \x escapes
            msg = printable(msg)
            self.file.write(msg)
        self.console.write(msg)

    def flush(self) -> None:
        self.console.flush()
        self.file.flush()
        os.fsync(self.file.fileno())

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of a non-UTF-8 path (surrogate escapes) written as ``\\xNN``."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no path decoding made
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _create_new(fpath: str):
    """Open ``fpath`` for writing only if no file has that name (atomic: two runs never share one)."""
    return open(fpath, "x", buffering=1)


def setup_logger(output: str = None) -> None:
    """Tee stdout to ``<output>/log.txt``; when that exists the log is ``log.txt-<timestamp>``
    (Dassl's name), with ``-002``, ``-003``, ... added if runs start in the same second (names still
    sort by age, which ``parse_test_res.py`` relies on)."""
    if output is None:
        return
    fpath = output if output.endswith((".txt", ".log")) else osp.join(output, "log.txt")
    mkdir_if_missing(osp.dirname(fpath))
    stamp = fpath + time.strftime("-%Y-%m-%d-%H-%M-%S")
    for candidate in [fpath, stamp] + [f"{stamp}-{n:03d}" for n in range(2, 1000)]:
        try:
            file = _create_new(candidate)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"Too many logs named {stamp}-*; clean up {osp.dirname(fpath)}")
    teardown_logger()
    sys.stdout = Logger(candidate, file)


def teardown_logger() -> None:
    """Close the log file set up by ``setup_logger`` and write to the console alone again."""
    if isinstance(sys.stdout, Logger):
        sys.stdout.close()
        sys.stdout = sys.stdout.console


def logging_to_file() -> bool:
    return isinstance(sys.stdout, Logger)


def log_only(text: str) -> None:
    """Write ``text`` to the log file but not the console (a traceback the console already shows)."""
    if isinstance(sys.stdout, Logger) and not sys.stdout.file.closed:
        sys.stdout.file.write(text)
        sys.stdout.file.flush()


def mkdir_if_missing(dirname: str) -> None:
    if dirname and not osp.exists(dirname):
        try:
            os.makedirs(dirname)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise


def check_isfile(fpath: str) -> bool:
    isfile = osp.isfile(fpath)
    if not isfile:
        warnings.warn(f'No file found at "{fpath}"')
    return isfile


def read_json(fpath: str) -> Any:
    with open(fpath, "r") as f:
        return json.load(f)


def write_json(obj: Any, fpath: str) -> None:
    mkdir_if_missing(osp.dirname(fpath))
    with open(fpath, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def set_random_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def read_image(path: str) -> Image.Image:
    """Read an image as RGB; a missing or corrupt file raises an error naming the path."""
    if not osp.exists(path):
        raise FileNotFoundError(
            f"Image not found: {path} (check the dataset layout with `python -m textrefiner.data.doctor --root DATA`)"
        )
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as e:
        raise OSError(f"Cannot read image {path}: {e}. Re-extract or remove this file.") from e


def collect_env_info() -> str:
    from torch.utils.collect_env import get_pretty_env_info
    import PIL

    info = get_pretty_env_info()
    info += f"\n        Pillow ({PIL.__version__})"
    return info


def listdir_nohidden(path: str, sort: bool = False) -> List[str]:
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def tolist_if_not(x):
    return x if isinstance(x, list) else [x]


def check_availability(requested: str, available: List[str]) -> None:
    if requested not in available:
        raise ValueError(f"The requested one is expected to belong to {available}, but got [{requested}]")


def count_num_param(model=None, params=None) -> int:
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in params)


class AverageMeter:
    """Running value and average of a scalar."""

    def __init__(self, ema: bool = False):
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        self.val = 0.0
        self.avg = 0.0
        self.sum = 0.0
        self.count = 0

    def update(self, val, n: int = 1) -> None:
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.avg * 0.9 + self.val * 0.1 if self.ema else self.sum / self.count


class MetricMeter:
    """A set of named AverageMeters, printed as ``name val (avg)``."""

    def __init__(self, delimiter: str = " "):
        self.meters: Dict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict: Dict[str, float]) -> None:
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("Input to MetricMeter.update() must be a dictionary")
        for k, v in input_dict.items():
            self.meters[k].update(v.item() if isinstance(v, torch.Tensor) else v)

    def __str__(self) -> str:
        return self.delimiter.join(f"{k} {m.val:.4f} ({m.avg:.4f})" for k, m in self.meters.items())
