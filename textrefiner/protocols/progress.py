"""Epoch-level progress of a step while it runs, read from the log its output goes to.

The demo and the sweep send each step's output to a log file; a ``LogFollower`` reads what is
appended to that file (from where it stood when the follower started, so an earlier attempt in the
same log never counts) and reports Dassl's epoch lines (``results/logs.py``) as one short line,
``base2new_train epoch 3/10, ETA 2 min``: at most one per epoch and one per ``every`` seconds.
Each follower reports through its own callback, which prints whole lines (the sweep's under its
lock, with the job's number and name), so the lines of jobs running side by side never mix.
A log it cannot read yet or any more is simply not reported on: progress never fails a job.
"""
import os
import re
import threading
import time
from typing import Callable, Optional

from ..results.logs import epoch_line

#: seconds between two looks at the log
POLL = 1.0
#: seconds at least between two progress lines of one step (the first is reported at once)
EVERY = 10.0
#: run_step's line before each step it runs (``steps.py``): the step a log's epoch lines belong to
_STEP_LINE = re.compile(r"^Run (\w+); output to ")


def duration(seconds: float) -> str:
    """A time left, in the unit that reads: seconds under a minute, minutes under an hour, else hours."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 3570:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


class LogFollower:
    """Report the epochs a log gains while the follower runs (``with LogFollower(path, print): ...``)."""

    def __init__(self, path: str, report: Callable[[str], None], every: Optional[float] = None,
                 poll: Optional[float] = None):
        self.path, self.report = path, report
        self.every = EVERY if every is None else every
        self.poll = POLL if poll is None else poll
        self.offset = 0
        self.step = ""
        self._partial = b""
        #: the epoch last reported and when; the epoch last seen; when each epoch seen began (first line seen)
        self._last_epoch = None
        self._last_time = float("-inf")
        self._seen_epoch = None
        self._began = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"progress {os.path.basename(path)}")

    def start(self) -> "LogFollower":
        try:
            self.offset = os.path.getsize(self.path)
        except OSError:  # not written yet: everything it gets is new
            self.offset = 0
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following; nothing read after the step ended is reported (the step's own line says how it ended)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> "LogFollower":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self.read()

    def read(self) -> None:
        """Read what the log gained since the last look; report a new epoch if one began."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        self.offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            step = _STEP_LINE.match(line)
            if step:  # a new step: its epochs count afresh
                self.step, self._last_epoch, self._seen_epoch, self._began = step.group(1), None, None, {}
                continue
            progress = epoch_line(line)
            if progress is None:
                continue
            now = time.monotonic()
            if progress.epoch != self._seen_epoch:  # a new epoch began now
                self._seen_epoch = progress.epoch
                self._began.setdefault(progress.epoch, now)
            if progress.epoch == self._last_epoch or now - self._last_time < self.every or self._stop.is_set():
                continue
            self._last_epoch, self._last_time = progress.epoch, now
            where = f"{self.step} " if self.step else ""
            self.report(f"{where}epoch {progress.epoch}/{progress.max_epoch}, ETA {duration(self._eta(progress))}")

    def _eta(self, progress) -> float:
        """The training time left: the mean time of the epochs seen so far (validation included) times
        the epochs left, this one included; in the first epoch seen, Dassl's own estimate."""
        first = min(self._began)
        if progress.epoch == first:
            return progress.eta_seconds
        per_epoch = (self._began[progress.epoch] - self._began[first]) / (progress.epoch - first)
        return per_epoch * (progress.max_epoch - progress.epoch + 1)
