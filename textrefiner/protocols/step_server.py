"""The client of the step server (``textrefiner/cli/step_server.py``): a sweep's steps forked from a
process that imported torch and the trainers once, instead of a new Python process each.

``run(command, log, env)`` runs a ``python -m textrefiner.cli.train|shared ...`` command with its
output in ``log`` (an open file) and returns its exit status, as ``subprocess.run`` would; ``None``
when it cannot (no server on this platform, or the server would not start or died): the caller then
starts the command as a process of its own. Each thread has its own server (a sweep runs one job per
worker thread), started on its first step with that step's environment and restarted when a step
brings another environment (the thread count, the malloc settings and CUDA's devices are read when
torch loads, so one server serves one environment). A server that cannot serve an environment (more
than one thread per step, see the server) or dies is not asked again for it: those steps start as
processes of their own. ``TEXTREFINER_STEP_SERVER=0`` turns it off.
"""
import json
import os
import socket
import subprocess
import sys
import threading
from typing import List, Optional, TextIO

from ..resources import child_env

#: set to 0 to start every step as a process of its own
SWITCH = "TEXTREFINER_STEP_SERVER"
#: the modules the server runs (``python -m`` these)
SERVED = ("textrefiner.cli.train", "textrefiner.cli.shared")
#: seconds a new server may take to import torch and the trainers
START_TIMEOUT = 300

_local = threading.local()


def available() -> bool:
    return (sys.platform.startswith("linux") and hasattr(socket, "send_fds") and hasattr(os, "fork")
            and os.environ.get(SWITCH, "1") not in ("0", ""))


class Server:
    """One step server process and its end of the socket."""

    def __init__(self, env: dict):
        self.env = env
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = ours
        self.reader = ours.makefile("rb")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "textrefiner.cli.step_server", str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()  # the server's end is the server's alone
        ours.settimeout(START_TIMEOUT)  # a server that never says ready is given up on
        try:
            self.ready = self._answer() == {"ready": True}
        except OSError:
            self.ready = False
        ours.settimeout(None)  # a step may run for hours

    def _answer(self) -> Optional[dict]:
        line = self.reader.readline()
        try:
            return json.loads(line) if line else None
        except ValueError:
            return None

    def run(self, argv: List[str], log: TextIO, env: dict) -> Optional[int]:
        log.flush()
        try:
            socket.send_fds(self.sock, [json.dumps({"argv": argv, "env": env}).encode() + b"\n"], [log.fileno()])
        except OSError:
            return None
        try:
            answer = self._answer()
        except OSError:
            return None
        return answer.get("code") if answer else None

    def close(self) -> None:
        try:
            self.sock.close()
            self.reader.close()
        finally:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


#: environments (as sorted items) a server refused or failed in: their steps start processes of their own
_refused = set()


def _server(env: dict) -> Optional[Server]:
    key = tuple(sorted(env.items()))
    if key in _refused:
        return None
    server = getattr(_local, "server", None)
    if server is not None and (server.env != env or server.process.poll() is not None):
        server.close()
        server = _local.server = None
    if server is None:
        try:
            server = Server(env)
        except OSError:  # cannot start a process or make a socket here
            _refused.add(key)
            return None
        if not server.ready:  # OMP_NUM_THREADS > 1 (see the server), or it could not start
            server.close()
            _refused.add(key)
            return None
        _local.server = server
    return server


def run(command: List[str], log: Optional[TextIO], env: dict) -> Optional[int]:
    """``command``'s exit status, run by this thread's server; None if the server cannot run it."""
    if (log is None or not available() or len(command) < 3 or command[0] != sys.executable
            or command[1] != "-m" or command[2] not in SERVED):
        return None
    try:
        log.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    env = child_env(env)
    server = _server(env)
    if server is None:
        return None
    code = server.run(command[2:], log, env)
    if code is None:  # the server died or refused: this step and the next start processes of their own
        server.close()
        _local.server = None
        _refused.add(tuple(sorted(env.items())))
    return code
