"""This repository's trainers at the top level, where CoOp-family users look for them.

A thin re-export: the trainers live in the installed library (``textrefiner.trainers``),
and this folder is not installed, so it never clashes with a checkout's own ``trainers``.
"""
from textrefiner.trainers import *  # noqa: F401,F403
from textrefiner.trainers import __all__  # noqa: F401
