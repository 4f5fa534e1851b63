"""What the launcher and sweep tests share: fast train.py overrides and a clean launcher environment."""
import os
import sys

from conftest import FAST_OPTS

# The launchers set DATASET.NUM_SHOTS themselves (from SHOTS) and refuse it as an override.
LAUNCH_OPTS = [str(x) for key, value in zip(FAST_OPTS[::2], FAST_OPTS[1::2]) if key != "DATASET.NUM_SHOTS"
               for x in (key, value)]
SHOTS = 2


def launcher_env(data_root: str, output_root) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TRAINER", "CFG")}
    return {**env, "DATA": data_root, "OUTPUT": str(output_root), "SHOTS": str(SHOTS), "PYTHON": sys.executable}
