"""Find the finished runs of an output tree: folders laid out as in ``layout.py`` holding
``result.json``, or, from the upstream scripts, a ``log.txt`` with a final result (a base-to-novel
training by PromptKD's scripts, ``seed_<S>``, gives its Base and its Novel: ``upstream.py``)."""
import os
import os.path as osp
from dataclasses import dataclass, replace
from typing import Iterable, List, Optional

from .layout import PROMPTKD_SEED_FOLDER, RunKey, parse_run_dir
from .record import RESULT_FILE, SETTINGS_FILE, read_result
from .upstream import log_record, promptkd_base2new_records

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
    runs, novel = [], []
    for folder, subfolders, files in os.walk(output_root):
        subfolders.sort()
        key = parse_run_dir(osp.relpath(folder, output_root))
        if key is None:
            continue
        if RESULT_FILE in files:
            record = read_result(osp.join(folder, RESULT_FILE))
        elif SETTINGS_FILE in files:  # started by our launchers, which always finish with result.json
            record = None
        elif key.kind == "base2new_train" and PROMPTKD_SEED_FOLDER.fullmatch(osp.basename(folder)):
            records = promptkd_base2new_records(folder)  # PromptKD's release: Base and Novel in one log
            record = records and records[0]
            if records:
                novel.append(Run(replace(key, kind="base2new_test"), records[1], folder))
        else:
            record = log_record(folder, training=key.kind not in EVALUATION_KINDS)
        if record is not None:
            runs.append(Run(key, record, folder))
    found = {run.key for run in runs}
    runs += [run for run in novel if run.key not in found]  # an evaluation step's own folder wins
    return [run for run in runs if kinds is None or run.key.kind in kinds]
