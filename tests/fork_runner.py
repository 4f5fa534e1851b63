"""Run ``train.py``'s ``main`` many times fast, each run in a fresh fork of one clean process.

A forked copy of a process that has trained (torch's thread pools, tqdm's monitor thread) can
deadlock, and a new interpreter per run costs seconds of imports. So ``ForkRunner`` starts one
server process that imports the package and never computes; every run is a fork of it, exactly
like ``python train.py ARGS`` without the start-up. Faults are injected in the child:

* ``kill_at=k``: SIGKILL itself on reaching the k-th file operation of its checkpoint saves
  (``checkpoint._reached``: ``stage``, ``commit``, ``rename``, ``pointer``), as ``kill -9`` would;
* ``full_disk_after=n``: the (n+1)-th staged checkpoint file and every later write to log.txt
  fail with ENOSPC, as on a disk that fills up.

``run`` returns the exit status (``-9`` when killed) and, with ``steps``, the save steps reached.
"""
import errno
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]


class ForkRunner:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=REPO, start_new_session=True)

    def run(self, argv: List, log: Path, kill_at: int = 0, full_disk_after: int = -1,
            steps: bool = False, timeout: float = 300) -> Tuple[int, Optional[list]]:
        request = {"argv": [str(a) for a in argv], "log": str(log), "kill_at": kill_at,
                   "full_disk_after": full_disk_after, "steps": str(log) + ".steps" if steps else ""}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the server and the run it forked
            raise RuntimeError(f"no answer in {timeout} s (see {log})")
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"the fork server died (see {log})")
        code = json.loads(reply)["code"]
        recorded = json.loads(Path(request["steps"]).read_text()) if steps and code == 0 else None
        return code, recorded

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# ------------------------------------------------------------------------------------ the server
def _full_disk(after: int, checkpoint_module) -> None:
    real_open, count = open, [0]

    def refuse_log():
        logger = sys.stdout
        if hasattr(logger, "file"):
            real = logger.file

            class Full:
                closed = property(lambda self: real.closed)

                def write(self, text):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

                flush = write

                def fileno(self):
                    return real.fileno()

                def close(self):
                    real.close()

            logger.file = Full()

    def full_open(path, mode="r", *args, **kwargs):
        if "w" in mode and ".staged-" in str(path):
            count[0] += 1
            if count[0] > after:
                refuse_log()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, mode, *args, **kwargs)

    checkpoint_module.open = full_open


def _child(request: dict) -> int:
    fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)
    from textrefiner.cli.train import main
    from textrefiner.framework import checkpoint

    out = os.path.abspath(request["argv"][request["argv"].index("--output-dir") + 1])
    steps = []

    def reached(step, path):
        steps.append([step, os.path.relpath(path, out)])
        if len(steps) == request["kill_at"]:
            os.kill(os.getpid(), signal.SIGKILL)

    checkpoint._reached = reached
    if request["full_disk_after"] >= 0:
        _full_disk(request["full_disk_after"], checkpoint)
    try:
        main(request["argv"])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 99
    if request["steps"]:
        with open(request["steps"], "w") as f:
            json.dump(steps, f)
    sys.stdout.flush()
    return code


def serve() -> None:
    sys.path.insert(0, str(REPO))
    from textrefiner.run_config import register_plugins

    register_plugins()
    replies = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(request)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve()
