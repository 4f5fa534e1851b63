"""The evaluation protocols as runnable steps and jobs: base-to-novel, cross-dataset /
domain generalisation, few-shot. Used by ``scripts/<host>/*.sh`` and ``python -m textrefiner.sweep``."""
from .hosts import HOSTS, Host, get_host  # noqa: F401
from .jobs import DEFAULT_DATASETS, DEFAULT_SHOTS, PROTOCOLS, Job  # noqa: F401
from .steps import ModelNotReady, Setup, Step, run_step  # noqa: F401
