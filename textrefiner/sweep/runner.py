"""Run one job (its steps in order) with its output in a per-job log; report what happened.

``run_job`` is what every executor runs, locally or inside a SLURM job through submitit,
so it only returns plain data and never raises for a failing step.
"""
import os
import os.path as osp
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from ..protocols import Job, ModelNotReady, run_step
from ..protocols.identity import SettingsConflict


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

    def as_dict(self) -> dict:
        return asdict(self)


def log_path(log_dir: str, job: Job) -> str:
    return osp.join(log_dir, f"{job.name}.log")


def skipped(job: Job) -> JobOutcome:
    return JobOutcome(job.name, job.label, "skipped", message="already done")


def _last_line(path: str) -> str:
    """The last non-empty line of a log: for a crash, the exception."""
    with open(path, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    return lines[-1][:200] if lines else ""


def run_job(job: Job, log: str, env: Optional[dict] = None) -> JobOutcome:
    """Run the steps of ``job`` that are not done yet; the log gets one section per attempt."""
    os.makedirs(osp.dirname(log) or ".", exist_ok=True)
    outcome = JobOutcome(job.name, job.label, "ok", log=log)
    start = time.time()
    with open(log, "a") as out:
        print(f"===== {time.strftime('%Y-%m-%d %H:%M:%S')} {job.label}", file=out, flush=True)
        for step in job.steps:
            was_done = step.done
            try:
                code = run_step(step, out, env)
            except (ModelNotReady, SettingsConflict) as e:
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
