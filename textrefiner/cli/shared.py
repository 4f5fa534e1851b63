"""Run several ``train.py`` runs of CoOp-host variants in one process, the frozen image tower shared.

    python -m textrefiner.cli.shared '[["--root", "data", "--seed", "1", "--trainer", "CoOp_TextRefiner",
        "--output-dir", "out/m10", ..., "TRAIN.SEEDED_DATA_STREAM", "True", "TRAINER.TEXTREFINER.CACHE_SIZE", "10"],
        [...another variant...]]'

The argument is a JSON list of train.py argument lists (the sweep's shared mode writes it). Every run
is checked as train.py checks it, takes its output folder's lock and writes its own log.txt,
checkpoints and result.json, exactly what it writes alone; runs with ``--eval-only`` are evaluated
(from the test features computed once). They train in lockstep (``textrefiner.trainers.lockstep``):
all must be CoOp, CoOp_TextRefiner or ZeroshotCLIP runs of one dataset, split, seed and input
pipeline with ``TRAIN.SEEDED_DATA_STREAM True``; otherwise nothing runs and one line says which run
cannot share and why. This console gets one line per group event; each run's lines go to its log.
Exit status: 0 if every run finished, 1 if any failed (each named with its error).
"""
import json
import os
import sys
import time
from typing import List, Optional

from textrefiner.framework import setup_logger
from textrefiner.run_config import build_parser, check_cfg_values, register_plugins, setup_cfg
from textrefiner.trainers.lockstep import Variant, run_lockstep

from .output_guard import OutputLock, refuse_foreign_outputs
from .parent import die_with_parent
from .train import USER_ERRORS, _one_line, check_args, env_info, print_args


def log_file(output_dir: str):
    """The run's log.txt (named as train.py names it), written to without echoing on the console."""
    console = sys.stdout
    sys.stdout = open(os.devnull, "w")
    try:
        setup_logger(output_dir)
        return sys.stdout
    finally:
        sys.stdout = console


def prepare(argv: List[str], held: List[OutputLock]) -> Variant:
    args = build_parser().parse_args(argv)
    check_args(args)
    cfg = setup_cfg(args)
    check_cfg_values(cfg)
    refuse_foreign_outputs(cfg.OUTPUT_DIR, cfg.TRAINER.NAME)
    held.append(OutputLock(cfg.OUTPUT_DIR).acquire())
    out = log_file(cfg.OUTPUT_DIR)
    console, sys.stdout = sys.stdout, out
    try:
        if cfg.SEED >= 0:
            print(f"Setting fixed seed: {cfg.SEED}")
        print("Shared run: the frozen image tower is computed once for every variant of this group "
              "(python -m textrefiner.cli.shared)")
        print_args(args, cfg)
        print(f"** System info **\n{env_info()}\n")
    finally:
        sys.stdout = console
    return Variant(cfg, out, eval_only=args.eval_only, model_dir=args.model_dir or "", load_epoch=args.load_epoch)


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} shared: {text}", flush=True)


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if argv[:1] in (["-h"], ["--help"]) else 2)
    die_with_parent()
    register_plugins()
    held: List[OutputLock] = []
    variants: List[Variant] = []
    try:
        runs = json.loads(argv[0])
        for run in runs:
            variants.append(prepare([str(a) for a in run], held))
        failed = run_lockstep(variants, say)
    except USER_ERRORS as e:
        print(f"Error: {_one_line(e)}", flush=True)
        raise SystemExit(1) from None
    finally:
        for v in variants:
            v.out.close()
        for lock in held:
            lock.release()
    for v in failed:
        print(f"FAILED {v.name}: {v.error}", flush=True)
    say(f"{len(variants) - len(failed)} of {len(variants)} run(s) finished")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
