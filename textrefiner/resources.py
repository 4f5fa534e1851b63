"""Where the shipped configs are, in a checkout and in an installed package.

A wheel carries ``configs/`` as package data (``textrefiner/configs``); a checkout (or an
editable install) reads the repository's ``configs/`` beside the package. Launchers,
the sweep and the demo find config files only through ``config_path``, so they work
from any folder.

    python -m textrefiner.resources            # prints the configs folder
    python -m textrefiner.resources trainers/CoOp_TextRefiner/vit_b16_ep10_ctxv1.yaml
"""
import os
import os.path as osp
import sys

PACKAGE_DIR = osp.dirname(osp.abspath(__file__))
#: the folder that holds the ``textrefiner`` package (put it on PYTHONPATH for child processes)
PACKAGE_PARENT = osp.dirname(PACKAGE_DIR)


def config_dir() -> str:
    """The folder holding ``trainers/``, ``datasets/`` and ``sweeps/`` configs."""
    installed = osp.join(PACKAGE_DIR, "configs")
    return installed if osp.isdir(installed) else osp.join(PACKAGE_PARENT, "configs")


def config_path(*parts: str) -> str:
    """Path of a shipped config file; a missing one fails naming what the folder holds."""
    path = osp.join(config_dir(), *parts)
    if not osp.isfile(path):
        folder = osp.dirname(path)
        while not osp.isdir(folder):  # an unknown trainer: list the trainers instead
            folder = osp.dirname(folder)
        found = sorted(f[:-5] if f.endswith(".yaml") else f for f in os.listdir(folder))
        raise FileNotFoundError(f"{path} not found; {folder} has: {', '.join(found) or 'nothing'}")
    return path


def child_env(env=None) -> dict:
    """``env`` (default: this process's) with this package importable by child processes."""
    env = dict(os.environ if env is None else env)
    paths = env.get("PYTHONPATH", "").split(os.pathsep) if env.get("PYTHONPATH") else []
    if PACKAGE_PARENT not in paths:
        env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT] + paths)
    return env


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        print(config_path(*argv) if argv else config_dir())
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None


if __name__ == "__main__":
    main()
