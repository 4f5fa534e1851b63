"""Find the finished runs of an output tree: folders laid out as in ``layout.py`` holding
``result.json``, or, from the upstream scripts, a ``log.txt`` with a final result."""
import os
import os.path as osp
from dataclasses import dataclass
from typing import Iterable, List, Optional

from .layout import RunKey, parse_run_dir
from .record import RESULT_FILE, SETTINGS_FILE, read_result
from .upstream import log_record

#: evaluation-only runs: their result follows ``=> result``; training runs' follows ``Finish training``
EVALUATION_KINDS = ("base2new_test", "xd_test")


@dataclass(frozen=True)
class Run:
    key: RunKey
    record: dict
    path: str

    @property
    def method(self) -> tuple:
        """(trainer, config name with its run tag): what a table compares."""
        return self.key.trainer, self.key.setting


def collect_runs(output_root: str, kinds: Optional[Iterable[str]] = None) -> List[Run]:
    """Every run under ``output_root`` laid out as in ``layout.LAYOUT`` (of the given kinds)."""
    if not osp.isdir(output_root):
        raise FileNotFoundError(f"{output_root} is not a folder: pass the output root the launchers wrote into")
    kinds = set(kinds) if kinds else None
    runs = []
    for folder, subfolders, files in os.walk(output_root):
        subfolders.sort()
        key = parse_run_dir(osp.relpath(folder, output_root))
        if key is None or (kinds is not None and key.kind not in kinds):
            continue
        if RESULT_FILE in files:
            record = read_result(osp.join(folder, RESULT_FILE))
        elif SETTINGS_FILE in files:  # started by our launchers, which always finish with result.json
            record = None
        else:
            record = log_record(folder, training=key.kind not in EVALUATION_KINDS)
        if record is not None:
            runs.append(Run(key, record, folder))
    return runs
