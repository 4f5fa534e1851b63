"""Find the finished runs (folders holding result.json) of an output tree."""
import os
import os.path as osp
from dataclasses import dataclass
from typing import Iterable, List, Optional

from .layout import RunKey, parse_run_dir
from .record import RESULT_FILE, read_result


@dataclass(frozen=True)
class Run:
    key: RunKey
    record: dict
    path: str

    @property
    def method(self) -> tuple:
        """(trainer, config name): what a table compares."""
        return self.key.trainer, self.key.cfg


def collect_runs(output_root: str, kinds: Optional[Iterable[str]] = None) -> List[Run]:
    """Every run under ``output_root`` laid out as in ``layout.LAYOUT`` (of the given kinds)."""
    if not osp.isdir(output_root):
        raise FileNotFoundError(f"{output_root} is not a folder: pass the output root the launchers wrote into")
    kinds = set(kinds) if kinds else None
    runs = []
    for folder, subfolders, files in os.walk(output_root):
        subfolders.sort()
        if RESULT_FILE not in files:
            continue
        key = parse_run_dir(osp.relpath(folder, output_root))
        if key is not None and (kinds is None or key.kind in kinds):
            runs.append(Run(key, read_result(osp.join(folder, RESULT_FILE)), folder))
    return runs
