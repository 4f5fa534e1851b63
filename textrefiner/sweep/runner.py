"""Run one job (its steps in order) with its output in a per-job log; report what happened.

``run_job`` is what every executor runs, locally or inside a SLURM job through submitit,
so it only returns plain data and never raises for a failing step.

A job's log is written only by the sweep that holds the job's lock: an exclusive ``flock`` on the
log file itself, held while the job runs (the kernel drops it when the process ends, so a killed
sweep leaves no stale lock). A second sweep started on the same job at the same time writes
nothing and reports the job as failed at ``lock``, naming the process that holds it.
"""
import os
import os.path as osp
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional, TextIO

from ..errors import UserError
from ..protocols import Job, ModelNotReady, run_step
from ..protocols.identity import SettingsConflict

try:
    import fcntl
except ImportError:  # not a POSIX system: no job locks
    fcntl = None

#: the first words of the line that opens each attempt in a job's log
HEADER = "===== "


@dataclass
class JobOutcome:
    name: str
    label: str
    #: "skipped" (already done), "ok" or "failed"
    status: str
    log: str = ""
    #: the steps that ran train.py this time
    steps_run: List[str] = field(default_factory=list)
    failed_step: Optional[str] = None
    message: str = ""
    seconds: float = 0.0
    #: how many jobs ran in the process behind ``seconds`` (a shared group's size; 1 for a job alone)
    shared_by: int = 1

    def as_dict(self) -> dict:
        return asdict(self)


def log_path(log_dir: str, job: Job) -> str:
    """``<log_dir>/<job>.log``; a tagged job's name, so its log, ends in its tag (its folders differ
    from the untagged job's)."""
    return osp.join(log_dir, f"{job.name}.log")


def skipped(job: Job) -> JobOutcome:
    return JobOutcome(job.name, job.label, "skipped", message="already done")


def _last_line(path: str) -> str:
    """The last non-empty line of a log: for a crash, the exception."""
    with open(path, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    return lines[-1][:200] if lines else ""


def _lock(out: TextIO) -> bool:
    """Take the job's lock (``out`` is its log, opened for appending); False if another process holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _owner(log: str) -> str:
    """Who opened the last attempt in ``log`` (its header line), for the message of a refused lock."""
    try:
        with open(log, errors="replace") as f:
            headers = [line.strip() for line in f if line.startswith(HEADER)]
    except OSError:
        headers = []
    found = re.fullmatch(rf"{HEADER}(\S+ \S+) .* \(process (\d+) on (\S+)\)", headers[-1]) if headers else None
    return f"another sweep (process {found[2]} on {found[3]}, since {found[1]})" if found else "another sweep"


def run_job(job: Job, log: str, env: Optional[dict] = None) -> JobOutcome:
    """Run the steps of ``job`` that are not done yet; the log gets one section per attempt.
    If another sweep holds the job's lock, nothing is written or run: the job fails at ``lock``."""
    os.makedirs(osp.dirname(log) or ".", exist_ok=True)
    outcome = JobOutcome(job.name, job.label, "ok", log=log)
    start = time.time()
    with open(log, "a") as out:  # appending writes nothing until the lock is ours
        if not _lock(out):
            return JobOutcome(job.name, job.label, "failed", log=log, failed_step="lock", message=(
                f"{_owner(log)} is running this job and holds its log: wait for it to finish or stop it, "
                "then rerun this sweep"))
        print(f"{HEADER}{time.strftime('%Y-%m-%d %H:%M:%S')} {job.label} (process {os.getpid()} on "
              f"{socket.gethostname()})", file=out, flush=True)
        for step in job.steps:
            try:
                was_done = step.done
                code = run_step(step, out, env)
            except (ModelNotReady, SettingsConflict, UserError) as e:
                was_done = False
                code, outcome.message = 1, str(e)
                print(e, file=out)
            if not was_done:
                outcome.steps_run.append(step.key.kind)
            if code == 0 and not step.done:
                code, outcome.message = 1, f"train.py ended without writing {step.output_dir}/result.json"
            if code != 0:
                outcome.status, outcome.failed_step = "failed", step.key.kind
                out.flush()
                outcome.message = outcome.message or f"train.py exited with status {code}: {_last_line(log)}"
                print(f"FAILED: {outcome.message}", file=out)
                break
    outcome.seconds = round(time.time() - start, 1)
    return outcome
