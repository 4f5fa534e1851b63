"""The installed commands (``console_scripts`` in setup.py): a wheel user's launchers and tools.

    textrefiner-train ...             train.py (CoOp's command line)
    textrefiner-table DIR ...         parse_test_res.py (per-seed results, --table, --paper)
    textrefiner-sweep ...             python -m textrefiner.sweep
    textrefiner-paper ARTIFACT ...    python -m textrefiner.paper (the paper's tables and figures)
    textrefiner-demo ...              python -m textrefiner.demo
    textrefiner-launch HOST STEP ...  bash scripts/HOST/STEP.sh (the same environment variables)

Each is ``main(argv) -> exit status``. The commands underneath end with ``SystemExit`` (a status,
or an ``Error: ...`` message that goes to stderr with status 1); here that becomes the returned
status, so the commands can also be called from Python without leaving it.
"""
import sys
from typing import Callable, List, Optional

Main = Callable[[Optional[List[str]]], object]


def _status(main: Main, argv: Optional[List[str]]) -> int:
    try:
        result = main(argv)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def train(argv: Optional[List[str]] = None) -> int:
    from .train import main
    return _status(main, argv)


def table(argv: Optional[List[str]] = None) -> int:
    from .parse_test_res import main
    return _status(main, argv)


def sweep(argv: Optional[List[str]] = None) -> int:
    from ..sweep.cli import main
    return _status(main, argv)


def paper(argv: Optional[List[str]] = None) -> int:
    from ..paper.cli import main
    return _status(main, argv)


def demo(argv: Optional[List[str]] = None) -> int:
    from ..demo import main
    return _status(main, argv)


def launch(argv: Optional[List[str]] = None) -> int:
    from ..protocols.launch import main
    return _status(lambda args: main(args, prog="textrefiner-launch"), argv)
