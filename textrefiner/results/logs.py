"""Read metrics from Dassl's ``log.txt`` files, as CoOp's ``parse_test_res.py`` does.

A metric counts only after an end signal: ``Finish training`` for training logs (the
validation results printed during training come before it) or ``=> result`` for
evaluation-only logs; the last match after the signal wins.

Reruns: Dassl's logger never overwrites a log. The first run of a folder writes
``log.txt``; every later run into the same folder writes ``log.txt-<YYYY-mm-dd-HH-MM-SS>``.
The result of a folder is read from the NEWEST log that holds one (a rerun that crashed
falls back to the previous complete run, and the newer incomplete logs are reported).

While a run trains, Dassl prints ``epoch [E/N] batch [B/M] ... eta H:MM:SS`` every
``TRAIN.PRINT_FREQ`` batches, and every batch when an epoch has fewer (so at least one line per
epoch); ``epoch_line`` reads one (the built-in engine prints the same line).
"""
import os
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

LOG_FILE = "log.txt"
#: Dassl's progress line; ``eta`` is datetime.timedelta's text ("1 day, 2:03:04" past a day)
EPOCH_LINE = re.compile(r"^epoch \[(\d+)/(\d+)\] batch \[(\d+)/(\d+)\] .*\beta (?:(\d+) days?, )?(\d+):(\d\d):(\d\d)\s*$")
END_OF_TRAINING = "Finish training"
START_OF_RESULT = "=> result"
#: what Dassl prints before each validation during training (TEST.FINAL_MODEL best_val)
VALIDATION = "Evaluate on the *val* set"


@dataclass
class LogResult:
    path: str
    value: float
    #: newer logs of the same folder that hold no result (crashed or interrupted reruns)
    incomplete: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class EpochLine:
    epoch: int
    max_epoch: int
    batch: int
    num_batches: int
    #: Dassl's estimate of the training time left, in seconds
    eta_seconds: int


def epoch_line(line: str) -> Optional[EpochLine]:
    """The progress a Dassl ``epoch [E/N] batch [B/M] ... eta`` line says, or None for any other line."""
    found = EPOCH_LINE.match(line.strip())
    if found is None:
        return None
    epoch, max_epoch, batch, num_batches, days, hours, minutes, seconds = (int(x or 0) for x in found.groups())
    return EpochLine(epoch, max_epoch, batch, num_batches, ((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def logs_newest_first(run_dir: str) -> List[str]:
    names = [n for n in os.listdir(run_dir) if n == LOG_FILE or n.startswith(LOG_FILE + "-")]
    # "log.txt" has the empty suffix, so it sorts as the oldest; timestamps sort chronologically
    names.sort(key=lambda n: n[len(LOG_FILE):], reverse=True)
    return [osp.join(run_dir, n) for n in names]


def read_metric(path: str, keyword: str, end_signal: str) -> Optional[float]:
    """The last ``* <keyword>: X%`` value after the line ``end_signal``, or None."""
    pattern = re.compile(rf"\* {re.escape(keyword)}: ([\.\deE+-]+)%")
    value, signalled = None, False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            signalled = signalled or line == end_signal
            match = pattern.search(line) if signalled else None
            if match:
                value = float(match.group(1))
    return value


def best_validation(path: str) -> Dict[str, float]:
    """The metrics of the validation (``Evaluate on the *val* set``) with the highest accuracy before
    ``Finish training``: the evaluation whose model Dassl keeps as ``model-best`` (the first of equals,
    as Dassl keeps it); empty if the log holds none."""
    metric = re.compile(r"\* (\w+): ([\.\deE+-]+)%")
    best, current = {}, None
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if line == END_OF_TRAINING:
                break
            if line.startswith("Evaluate on the "):
                current = {} if line == VALIDATION else None
            match = metric.match(line) if current is not None else None
            if match:
                current[match.group(1)] = float(match.group(2))
                if "accuracy" in current and current["accuracy"] > best.get("accuracy", -1.0):
                    best = current
    return dict(best)


def newest_result(run_dir: str, keyword: str, end_signal: str) -> Optional[LogResult]:
    incomplete = []
    for path in logs_newest_first(run_dir):
        value = read_metric(path, keyword, end_signal)
        if value is not None:
            return LogResult(path, value, incomplete)
        incomplete.append(path)
    return None


def seed_results(directory: str, keyword: str, end_signal: str) -> Tuple[List[LogResult], List[str]]:
    """One result per sub-folder (seed) of ``directory``; and the sub-folders without one."""
    found, missing = [], []
    for name in sorted(os.listdir(directory)):
        run_dir = osp.join(directory, name)
        if name.startswith(".") or not osp.isdir(run_dir):
            continue
        result = newest_result(run_dir, keyword, end_signal)
        if result is None:
            missing.append(run_dir)
        else:
            found.append(result)
    return found, missing
