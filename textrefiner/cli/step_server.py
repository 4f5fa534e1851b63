"""A step server: a process that has imported torch, CLIP and the trainers once, and forks a child for
each ``python -m textrefiner.cli.train ...`` (or ``textrefiner.cli.shared``) a sweep asks it to run.

Every sweep step used to be a new Python process that spent about 4 s (on a 2-core CPU) importing
torch, torchvision and the trainers before its first batch; a testbed run of the paper starts a few
hundred. The server (``protocols/step_server.py`` starts one per sweep worker thread) pays that once:
each step is a ``fork()`` of the server, so it starts with the modules already imported and is
otherwise a fresh process (own memory, own random state, own exit status), as isolated from the
other steps as a new ``python -m`` would be. The server itself never runs a tensor operation, and it
only serves while it has one thread: forking a process whose OpenMP pool exists can hang the child
(GNU libgomp), and importing torch starts that pool when ``OMP_NUM_THREADS`` is above 1 -- such a
server says so at start and the sweep starts those steps as processes of their own. A testbed sweep
runs one job per core with one thread each, the case the server is for.

Protocol, over the Unix socket whose descriptor is the one argument: the client sends one request
line ``{"argv": [module, arg, ...], "env": {...}}`` with the step's log file descriptor attached
(``SCM_RIGHTS``); the child runs ``module`` as ``python -m`` would (``runpy``, ``sys.argv``, the
request's environment) with its stdout and stderr on that descriptor; the server answers one line
``{"code": N}`` (N as ``subprocess`` reports it: negative for a signal). End of input ends the server;
so does its client's death (``PR_SET_PDEATHSIG``, ``cli/parent.py``), and a step dies with the server.
"""
import json
import os
import signal
import socket
import sys
import threading
import traceback

from .parent import PARENT_ENV, die_with_parent

#: the modules every step needs, imported once here (the step's own module runs anew as ``__main__``)
PRELOAD = ("textrefiner.cli.train", "textrefiner.cli.shared", "textrefiner.trainers")
#: the modules a request may run
ALLOWED = ("textrefiner.cli.train", "textrefiner.cli.shared")
MAX_REQUEST = 1 << 22


def _threads() -> int:
    """This process's threads (Linux), at least Python's."""
    try:
        return max(threading.active_count(), len(os.listdir("/proc/self/task")))
    except OSError:
        return threading.active_count()


def _read_request(sock: socket.socket):
    """(request dict, log fd) or (None, None) at end of input."""
    data, fds, _, _ = socket.recv_fds(sock, MAX_REQUEST, 1)
    if not data:
        return None, None
    while not data.endswith(b"\n"):
        more = sock.recv(MAX_REQUEST)
        if not more:
            return None, None
        data += more
    return json.loads(data), (fds[0] if fds else None)


def _child(sock: socket.socket, request: dict, log_fd: int) -> None:
    """In the forked child: become ``python -m module args`` writing to ``log_fd``; never returns."""
    code = 1
    try:
        sock.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[PARENT_ENV] = str(os.getppid())  # the step dies with this server (cli/parent.py)
        module, *args = request["argv"]
        import importlib.util
        import runpy

        sys.argv = [importlib.util.find_spec(module).origin, *args]
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF if code >= 0 else 1)


def serve(sock: socket.socket) -> None:
    while True:
        request, log_fd = _read_request(sock)
        if request is None:
            return
        if request.get("argv", [None])[0] not in ALLOWED or log_fd is None:
            if log_fd is not None:
                os.close(log_fd)
            sock.sendall(json.dumps({"code": None, "error": "bad request"}).encode() + b"\n")
            continue
        if _threads() > 1:
            sock.sendall(json.dumps({"code": None, "error": "the server has threads: cannot fork"}).encode() + b"\n")
            os.close(log_fd)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(sock, request, log_fd)
        os.close(log_fd)
        _, status = os.waitpid(pid, 0)
        sock.sendall(json.dumps({"code": os.waitstatus_to_exitcode(status)}).encode() + b"\n")


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the step; the server goes with its client
    die_with_parent()
    sock = socket.socket(fileno=int(sys.argv[1]))
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
    threads = _threads()
    if threads > 1:  # torch started its OpenMP pool on import (OMP_NUM_THREADS > 1): forking it is unsafe
        sock.sendall(json.dumps({"ready": False, "why": f"{threads} threads after importing torch"}).encode() + b"\n")
        return
    sock.sendall(b'{"ready": true}\n')
    serve(sock)


if __name__ == "__main__":
    main()
