"""Run one protocol step: what every ``scripts/<host>/<step>.sh`` calls (through scripts/protocol.sh).

    python -m textrefiner.protocols.launch HOST STEP ARG... [KEY VALUE ...]

    base2new_train DATASET SEED     base2new_test DATASET SEED
    xd_train SEED                   xd_test DATASET SEED
    xd_train DATASET SEED           (hosts that train per target: promptkd)
    few_shot DATASET SHOTS SEED

Environment (all optional):
    TRAINER   trainer name (default: the host's first, e.g. CoOp_TextRefiner)
    CFG       trainer config name, configs/trainers/<TRAINER>/<CFG>.yaml (default: the host's for the protocol)
    DATA      dataset root (default: ./data)
    OUTPUT    output root (default: ./output)
    SHOTS     shots per class for base2new and xd steps (default: 16; 0 = every training image)
    TEACHER_DIR  promptkd: root of the teachers in the PromptKD release's layout (default: ./teacher_model)
    PYTHON    interpreter scripts/protocol.sh starts (default: python)
The GPU is the user's choice: export CUDA_VISIBLE_DEVICES yourself before running a script.
"""
import os
import sys
from typing import List, Optional

from ..results.benchmarks import SHOTS
from .hosts import get_host
from .steps import (
    ModelNotReady, Setup, base2new_test, base2new_train, few_shot, run_step, xd_test, xd_train, xd_train_target,
)

#: step name -> (protocol, builder, positional arguments after the host and step)
STEPS = {
    "base2new_train": ("base2new", base2new_train, ("dataset", "seed")),
    "base2new_test": ("base2new", base2new_test, ("dataset", "seed")),
    "xd_train": ("xd", xd_train, ("seed",)),
    "xd_test": ("xd", xd_test, ("dataset", "seed")),
    "few_shot": ("few_shot", few_shot, ("dataset", "shots", "seed")),
}
#: cross-dataset for hosts that train one model per target
PER_TARGET_STEPS = {"xd_train": ("xd", xd_train_target, ("dataset", "seed"))}
_INTEGERS = ("seed", "shots")


def _fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def _arguments(host: str, step: str, argv: List[str], names) -> dict:
    usage = f"usage: bash scripts/{host}/{step}.sh {' '.join(n.upper() for n in names)} [KEY VALUE ...]"
    if len(argv) < len(names):
        _fail(usage)
    values = dict(zip(names, argv))
    for name in _INTEGERS:
        if name in values and not values[name].isdigit():
            _fail(f"{name.upper()} must be a whole number, got {values[name]!r}\n{usage}")
    return {n: int(v) if n in _INTEGERS else v for n, v in values.items()}


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[1] not in STEPS:
        _fail(f"usage: python -m textrefiner.protocols.launch HOST {{{','.join(STEPS)}}} ARG... [KEY VALUE ...]")
    host, step = get_host(argv[0]), argv[1]
    protocol, build, names = PER_TARGET_STEPS.get(step, STEPS[step]) if host.xd_per_target else STEPS[step]
    if host.xd_per_target and step == "xd_test":
        _fail(f"{host.name} trains one model per cross-dataset target and evaluates it there: "
              f"run bash scripts/{host.name}/xd_train.sh DATASET SEED")
    kwargs = _arguments(host.name, step, argv[2:], names)
    if "shots" not in names:
        kwargs["shots"] = int(os.environ.get("SHOTS") or SHOTS)
    try:
        setup = Setup(
            trainer=os.environ.get("TRAINER") or host.default_trainer,
            cfg=os.environ.get("CFG") or host.configs[protocol],
            data=os.environ.get("DATA") or "data",
            output=os.environ.get("OUTPUT") or "output",
            opts=tuple(argv[2 + len(names):]),
        )
        raise SystemExit(run_step(build(setup, **kwargs)))
    except (ValueError, FileNotFoundError, ModelNotReady) as e:
        _fail(f"{step}: {e}")


if __name__ == "__main__":
    main()
