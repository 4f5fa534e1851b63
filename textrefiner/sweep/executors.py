"""Where the jobs of a sweep run: on this machine one after another or one per GPU, or through
submitit (a SLURM cluster, or submitit's local executor that runs the same path here)."""
import os
import queue
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Sequence

from ..protocols import Job
from ..protocols.progress import LogFollower, duration
from ..resources import child_env
from .runner import JobOutcome, log_path, run_job


class Progress:
    """Prints ``[i/N] job: what happened`` lines; i is the job's place in the whole grid. While a
    job runs, its epochs (``follow``); after each job that ran, an ETA for the jobs left: their
    count times the mean time of the jobs that ran, divided by how many run at once."""

    def __init__(self, jobs: Sequence[Job], parallel: int = 1):
        self.number = {job.name: i for i, job in enumerate(jobs, 1)}
        self.total = len(jobs)
        self.parallel = max(1, parallel)
        self._done = 0
        self._ran_seconds: List[float] = []
        self._lock = threading.Lock()

    def say(self, job_name: str, label: str, text: str) -> None:
        with self._lock:
            print(f"[{self.number[job_name]}/{self.total}] {label}: {text}", flush=True)

    def started(self, job: Job, where: str = "", log: str = "") -> None:
        text = f"running{' on ' + where if where else ''}{'; log: ' + log if log else ''}"
        self.say(job.name, job.label, text)

    def finished(self, outcome: JobOutcome) -> None:
        self._done += 1
        if outcome.status == "failed":
            text = f"FAILED at {outcome.failed_step} ({outcome.message}); log: {outcome.log}"
        elif outcome.status == "skipped":
            text = "skipped (already done)"
        else:
            self._ran_seconds.append(outcome.seconds / max(1, outcome.shared_by))  # a shared group's time, per job
            text = f"ok in {outcome.seconds:.0f} s ({', '.join(outcome.steps_run)}){self.eta()}"
        self.say(outcome.name, outcome.label, text)

    def eta(self) -> str:
        left = self.total - self._done
        if not left or not self._ran_seconds:
            return ""
        seconds = left * sum(self._ran_seconds) / len(self._ran_seconds) / self.parallel
        finish = time.strftime("%H:%M", time.localtime(time.time() + seconds))
        return f"; {left} jobs left, ETA {duration(seconds)} (about {finish})"

    def follow(self, job: Job, log: str) -> LogFollower:
        """While ``job`` runs: its epochs, read from its log, as ``[i/N] job: <step> epoch e/E, ETA ...`` lines."""
        return LogFollower(log, lambda text: self.say(job.name, job.label, text))


def cpu_share(parallel: int) -> Dict[str, str]:
    """The thread count each of ``parallel`` CPU jobs gets (cores / parallel) unless the user set
    OMP_NUM_THREADS; empty for one job at a time."""
    if parallel <= 1 or os.environ.get("OMP_NUM_THREADS"):
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // parallel))}


def run_locally(jobs: Sequence[Job], log_dir: str, progress: Progress, gpus: Sequence[str] = (),
                parallel: int = 1) -> List[JobOutcome]:
    """One job at a time, or with ``gpus`` one job per GPU at a time (each subprocess sees only
    its GPU through CUDA_VISIBLE_DEVICES), or without them ``parallel`` jobs at once on the CPU, each
    with an equal share of the cores as its threads (unless OMP_NUM_THREADS is set: PyTorch's default,
    a thread per core in every job, oversubscribes the cores many times over). A failing job does not
    stop the others."""
    free = queue.Queue()
    slots = list(gpus) or [None] * max(1, parallel)
    for slot in slots:
        free.put(slot)
    threads = {} if gpus else cpu_share(parallel)

    def work(job: Job) -> JobOutcome:
        gpu = free.get()
        try:
            progress.started(job, f"GPU {gpu}" if gpu is not None else "", log_path(log_dir, job))
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)} if gpu is not None else (
                {**os.environ, **threads} if threads else None)
            with progress.follow(job, log_path(log_dir, job)):
                outcome = run_job(job, log_path(log_dir, job), env)
        finally:
            free.put(gpu)
        progress.finished(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        futures = [pool.submit(work, job) for job in jobs]
        try:
            return [f.result() for f in futures]
        except KeyboardInterrupt:
            for f in futures:  # jobs not started yet; running ones got the interrupt too
                f.cancel()
            raise


def run_with_submitit(jobs: Sequence[Job], log_dir: str, progress: Progress, cluster: str,
                      parameters: Optional[Dict] = None) -> List[JobOutcome]:
    """Submit every job (a SLURM array with ``cluster="slurm"``; processes on this machine, all at
    once, with ``cluster="local"``) and collect the outcomes as they finish."""
    try:
        import submitit
    except ImportError:
        raise RuntimeError(
            "This executor needs submitit: pip install submitit (or pip install -e '.[sweep]')"
        ) from None
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise RuntimeError("--executor slurm needs SLURM's sbatch, which this machine lacks: start the sweep on "
                           "the cluster's login node, or run here with --executor local (--gpus 0 1 ...)")
    # submitit's workers unpickle run_job, so they must import this package; they inherit our environment
    os.environ["PYTHONPATH"] = child_env()["PYTHONPATH"]
    executor = submitit.AutoExecutor(folder=os.path.join(log_dir, "submitit"), cluster=cluster)
    defaults = {"timeout_min": 24 * 60, "name": "textrefiner-sweep"}
    if cluster == "slurm":
        defaults["gpus_per_node"] = 1
    executor.update_parameters(**{**defaults, **(parameters or {})})
    submitted = executor.map_array(run_job, list(jobs), [log_path(log_dir, job) for job in jobs])
    by_id: Dict[str, Job] = {}
    followers = {}
    for job, handle in zip(jobs, submitted):
        by_id[handle.job_id] = job
        progress.started(job, f"{cluster} job {handle.job_id}", log_path(log_dir, job))
        followers[handle.job_id] = progress.follow(job, log_path(log_dir, job)).start()
    outcomes = []
    for handle in submitit.helpers.as_completed(submitted, poll_frequency=2):
        job = by_id[handle.job_id]
        followers.pop(handle.job_id).stop()
        try:
            outcome = handle.result()
        except Exception as e:  # the job died outside run_job: timeout, preemption, node failure
            outcome = JobOutcome(job.name, job.label, "failed", log=str(handle.paths.stderr),
                                 failed_step="submitit", message=str(e).strip().splitlines()[0][:200])
        progress.finished(outcome)
        outcomes.append(outcome)
    return outcomes


#: executor name -> how to run the pending jobs of a sweep
EXECUTORS: Dict[str, Callable[..., List[JobOutcome]]] = {
    "local": lambda jobs, log_dir, progress, settings: run_locally(jobs, log_dir, progress, settings.gpus,
                                                                 settings.parallel),
    "submitit-local": lambda jobs, log_dir, progress, settings: run_with_submitit(
        jobs, log_dir, progress, "local", settings.slurm),
    "slurm": lambda jobs, log_dir, progress, settings: run_with_submitit(
        jobs, log_dir, progress, "slurm", settings.slurm),
}
