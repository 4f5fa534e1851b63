"""Run one protocol step: what every ``scripts/<host>/<step>.sh`` calls (through scripts/protocol.sh).

    python -m textrefiner.protocols.launch HOST STEP ARG... [KEY VALUE ...]
    textrefiner-launch HOST STEP ARG... [KEY VALUE ...]      (the same, as an installed command)

    base2new_train DATASET SEED     base2new_test DATASET SEED
    xd_train SEED                   xd_test DATASET SEED
    few_shot DATASET SHOTS [SEED]   without SEED: seeds 1, 2, 3 in turn (PromptSRC's few_shot.sh)
    xd_train DATASET SEED           (hosts that train per target: promptkd)
    train_teacher DATASET SEED      (DATASET "xd": the cross-dataset teacher; see teacher.py)

Environment (all optional):
    TRAINER   trainer name (default: the host's first, e.g. CoOp_TextRefiner)
    CFG       trainer config name, configs/trainers/<TRAINER>/<CFG>.yaml (default: the host's for the protocol)
    DATA      dataset root (default: ./data)
    OUTPUT    output root (default: ./output)
    SHOTS     shots per class for base2new and xd steps (default: 16; 0 = every training image)
    SOURCE    xd steps: the dataset the model is trained on (default: imagenet; the testbed's: testbed_shapes);
              xd_train writes <OUTPUT>/<SOURCE>/<TRAINER>/<CFG>_<SHOTS>shots/seed<S>, which xd_test evaluates
    TAG       run tag: these settings get their own folder, <cfg>/TAG/seed<S> (an ablation)
    OVERWRITE 1: replace a run made with other settings instead of refusing (deletes its folder; for a
              test step only the evaluation's folder, never the model it evaluates)
    PYTHON    interpreter scripts/protocol.sh starts (default: python)
    TEACHER_DIR        promptkd, train_teacher: root of the teachers in the PromptKD release's layout, which
                       PromptKD reads and train_teacher writes (default: ./teacher_model; teacher_layout.py)
    TEACHER_OVERWRITE  train_teacher: 1 replaces an existing teacher file (default: refuse)
A test step (base2new_test, xd_test) evaluates the model its training step made with that training's
settings (its result.json): of the training's KEY VALUE overrides, repeat only those that change what
is evaluated (backbone, input size, the model's prompts and TextRefiner head; protocols/evaluated.py).
The GPU is the user's choice: export CUDA_VISIBLE_DEVICES yourself before running a script.
"""
import os
import sys
from typing import List, Optional, Tuple

from ..results.benchmarks import SEEDS, SHOTS, XD_SOURCE
from .hosts import get_host
from .jobs import check_source
from .identity import SettingsConflict
from .steps import (
    ModelNotReady, Setup, base2new_test, base2new_train, few_shot, run_step, xd_test, xd_train, xd_train_target,
)
from ..teacher_layout import DEFAULT_TEACHER_DIR, teacher_dir_from_environment
from .teacher import TEACHER_CFG, TEACHER_TRAINER, train_teacher

PROG = "python -m textrefiner.protocols.launch"
#: step name -> (protocol, builder, positional arguments after the host and step)
STEPS = {
    "base2new_train": ("base2new", base2new_train, ("dataset", "seed")),
    "base2new_test": ("base2new", base2new_test, ("dataset", "seed")),
    "xd_train": ("xd", xd_train, ("seed",)),
    "xd_test": ("xd", xd_test, ("dataset", "seed")),
    "few_shot": ("few_shot", few_shot, ("dataset", "shots", "seed")),
    "train_teacher": ("teacher", train_teacher, ("dataset", "seed")),
}
#: cross-dataset for hosts that train one model per target
PER_TARGET_STEPS = {"xd_train": ("xd", xd_train_target, ("dataset", "seed"))}
_INTEGERS = ("seed", "shots")
#: steps whose SEED may be left out, as the upstream scripts of the same name loop over seeds
_SEED_LOOP = ("few_shot",)


def _fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def _positional(step: str, argv: List[str], names: Tuple[str, ...]) -> Tuple[str, ...]:
    """The positional arguments ``argv`` gives: a few-shot step without a seed (the next argument
    is absent or a config key) runs every seed."""
    seed_given = len(argv) >= len(names) and argv[len(names) - 1].isdigit()
    return names if step not in _SEED_LOOP or seed_given else names[:-1]


def _arguments(host: str, step: str, argv: List[str], all_names: Tuple[str, ...], prog: str) -> dict:
    names = _positional(step, argv, all_names)
    shown = [f"[{n.upper()}]" if n == "seed" and step in _SEED_LOOP else n.upper() for n in all_names]
    command = f"bash scripts/{host}/{step}.sh" if prog == PROG else f"{prog} {host} {step}"
    usage = f"usage: {command} {' '.join(shown)} [KEY VALUE ...]"
    if len(argv) < len(names):
        _fail(usage)
    values = dict(zip(names, argv))
    for name in _INTEGERS:
        if name in values and not values[name].isdigit():
            _fail(f"{name.upper()} must be a whole number, got {values[name]!r}\n{usage}")
    return {n: int(v) if n in _INTEGERS else v for n, v in values.items()}


def _defaults(host, protocol: str) -> Tuple[str, str]:
    """(trainer, config name) a step runs unless TRAINER / CFG are set; the teacher step trains
    PromptKD's teacher (PromptSRC, its ViT-L/14 config) whichever host launched it."""
    if protocol == "teacher":
        return TEACHER_TRAINER, TEACHER_CFG
    return host.default_trainer, host.configs[protocol]


def _teacher_arguments() -> dict:
    return {
        "teacher_dir": teacher_dir_from_environment() or DEFAULT_TEACHER_DIR,
        "overwrite": os.environ.get("TEACHER_OVERWRITE", "") not in ("", "0"),
    }


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> None:
    """``prog``: how the user started it (the scripts' usage lines name their script instead)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(f"usage: {prog} HOST STEP ARG... [KEY VALUE ...]\n\n{__doc__}")
        raise SystemExit(0)
    if len(argv) < 2 or argv[1] not in STEPS:
        _fail(f"usage: {prog} HOST {{{','.join(STEPS)}}} ARG... [KEY VALUE ...]  (--help: the steps and variables)")
    host, step = get_host(argv[0]), argv[1]
    protocol, build, all_names = PER_TARGET_STEPS.get(step, STEPS[step]) if host.xd_per_target else STEPS[step]
    if host.xd_per_target and step == "xd_test":
        _fail(f"{host.name} trains one model per cross-dataset target and evaluates it there: "
              f"run bash scripts/{host.name}/xd_train.sh DATASET SEED")
    names = _positional(step, argv[2:], all_names)
    kwargs = _arguments(host.name, step, argv[2:], all_names, prog)
    if "shots" not in names:
        kwargs["shots"] = int(os.environ.get("SHOTS") or SHOTS)
    if protocol == "teacher":
        kwargs.update(_teacher_arguments())
    trainer, cfg = _defaults(host, protocol)
    try:
        source = os.environ.get("SOURCE") or XD_SOURCE
        if protocol == "xd":
            check_source(host, source)
            if not host.xd_per_target:
                kwargs["source"] = source
        setup = Setup(
            trainer=os.environ.get("TRAINER") or trainer,
            cfg=os.environ.get("CFG") or cfg,
            data=os.environ.get("DATA") or "data",
            output=os.environ.get("OUTPUT") or "output",
            opts=tuple(argv[2 + len(names):]),
            tag=os.environ.get("TAG", ""),
            overwrite=os.environ.get("OVERWRITE", "") not in ("", "0"),
        )
        seeds = [kwargs.pop("seed")] if "seed" in kwargs else list(SEEDS)
        codes = [run_step(build(setup, **kwargs, seed=seed)) for seed in seeds]
        raise SystemExit(next((c for c in codes if c), 0))
    except (ValueError, FileNotFoundError, FileExistsError, ModelNotReady, SettingsConflict) as e:
        _fail(f"{step}: {e}")


if __name__ == "__main__":
    main()
