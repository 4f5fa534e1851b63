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


def finish_without_training(step, accuracy: float = 50.0) -> dict:
    """Write the result.json train.py would write for ``step`` (its settings), without training."""
    import json

    os.makedirs(step.output_dir, exist_ok=True)
    record = {"config_hash": step.expected[0], "settings": step.expected[1], "final_model": "best_val",
              "max_epoch": 1, "accuracy": accuracy}
    with open(os.path.join(step.output_dir, "result.json"), "w") as f:
        json.dump(record, f)
    return record
