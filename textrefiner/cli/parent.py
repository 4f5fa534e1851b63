"""A train.py started by the sweep or a launcher dies with it.

Killing the sweep (even with ``kill -9``) must not leave its ``train.py`` running:
a rerun would start a second writer into the same folder (the lock stops that, but
the orphan still holds the GPU). The parent exports ``TEXTREFINER_PARENT_PID``;
the child asks Linux to send it SIGTERM when that parent exits (``PR_SET_PDEATHSIG``,
set in the child itself because ``preexec_fn`` is unsafe in the sweep's threads).
Elsewhere this is a no-op.
"""
import ctypes
import ctypes.util
import os
import signal
import sys

PARENT_ENV = "TEXTREFINER_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if str(os.getppid()) != parent:  # the parent died before prctl took effect
        raise SystemExit(128 + signal.SIGTERM)
