"""A sweep's ``shared`` mode: the jobs of a (protocol, dataset, shots, seed) whose runs can share the
frozen image tower (``trainers/lockstep.py``: CoOp, CoOp_TextRefiner and ZeroshotCLIP variants with the
same data, input pipeline, backbone, epochs, ...) run as one group: step by step (the training steps
together, then the evaluations together), each step of the group in one process
(``protocols.steps.run_steps_shared``). A job that cannot share with its group runs as a normal job,
with one line saying why. Finished steps are skipped; a group rerun after an interruption keeps the
finished runs and resumes the unfinished ones from their checkpoints (exactly: the runs that stopped
at the same epoch continue together from the random state their checkpoints saved).
"""
import os
import os.path as osp
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import UserError
from ..protocols import Job
from ..protocols.identity import SettingsConflict
from ..protocols.steps import ModelNotReady, run_steps_shared
from .runner import HEADER, JobOutcome, _last_line, _lock


def group_jobs(jobs: Sequence[Job], say: Callable[[str], None] = print) -> Tuple[List[List[Job]], List[Job]]:
    """(groups of two or more jobs that share, the jobs that run alone); one line per job left alone."""
    from ..trainers.lockstep import unsharable  # the trainers (torch): only when a sweep shares

    by_key: Dict[tuple, List[Job]] = {}
    for job in jobs:
        by_key.setdefault((job.protocol, job.dataset, job.shots, job.seed, len(job.steps)), []).append(job)
    groups, alone = [], []
    for members in by_key.values():
        parts: List[Tuple[dict, List[Job]]] = []
        for job in members:
            settings = job.steps[0].expected[1]
            for reference, part in parts:
                if unsharable(reference, settings) is None:
                    part.append(job)
                    break
            else:
                if parts:
                    say(f"{job.label}: runs alone, not shared: it {unsharable(parts[0][0], settings)}")
                parts.append((settings, [job]))
        for _, part in parts:
            if len(part) > 1:
                groups.append(part)
            else:
                alone.append(part[0])
    return groups, alone


def group_log(log_dir: str, group: Sequence[Job]) -> str:
    job = group[0]
    return osp.join(log_dir, f"shared-{job.protocol}-{job.dataset}-shots{job.shots}-seed{job.seed}-"
                             f"{job.setup.cfg}-{len(group)}runs.log")


def run_group(group: Sequence[Job], log: str, env: Optional[dict] = None) -> List[JobOutcome]:
    """Run the steps of ``group`` not done yet, step by step, each step of all jobs in one process."""
    os.makedirs(osp.dirname(log) or ".", exist_ok=True)
    outcomes = {job.name: JobOutcome(job.name, job.label, "ok", log=log) for job in group}
    start = time.time()
    with open(log, "a") as out:
        if not _lock(out):
            return [JobOutcome(job.name, job.label, "failed", log=log, failed_step="lock",
                               message="another sweep is running this group and holds its log") for job in group]
        print(f"{HEADER}{time.strftime('%Y-%m-%d %H:%M:%S')} shared group of {len(group)} runs: "
              f"{', '.join(job.label for job in group)} (process {os.getpid()})", file=out, flush=True)
        for index in range(len(group[0].steps)):
            running = [job for job in group if outcomes[job.name].status == "ok"]
            steps = [job.steps[index] for job in running]
            was_done = [step.done for step in steps]
            try:
                code = run_steps_shared(steps, out, env)
                message = ""
            except (ModelNotReady, SettingsConflict, UserError) as e:
                code, message = 1, str(e)
                print(e, file=out, flush=True)
            for job, step, done_before in zip(running, steps, was_done):
                outcome = outcomes[job.name]
                if done_before:
                    continue
                if not step.done:
                    outcome.status, outcome.failed_step = "failed", step.key.kind
                    out.flush()
                    outcome.message = message or (f"the shared run exited with status {code}: {_last_line(log)}"
                                                  if code else f"no {step.output_dir}/result.json")
                else:
                    outcome.steps_run.append(step.key.kind)
    seconds = round(time.time() - start, 1)
    for outcome in outcomes.values():
        outcome.seconds, outcome.shared_by = seconds, len(group)
    return [outcomes[job.name] for job in group]
