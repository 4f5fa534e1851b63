"""CoOp's ``train.py`` command line: train, evaluate, or resume one run.

    python train.py --root DATA --seed 1 --trainer CoOp_TextRefiner \
        --dataset-config-file configs/datasets/oxford_pets.yaml \
        --config-file configs/trainers/CoOp_TextRefiner/vit_b16_ep10_ctxv1.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base

Config precedence (as CoOp): Dassl defaults + project keys < dataset YAML < trainer
YAML < command-line flags < trailing ``KEY VALUE`` pairs.

A mistake in the input (a config typo, a bad value, a folder of another run, a bad
image) stops with one ``Error:`` line naming the fix and exit status 1, before
anything is written where possible; ``--debug`` or ``TEXTREFINER_DEBUG=1`` adds the
traceback. Any other exception is a bug: its traceback also goes into ``log.txt``.
Only one run at a time writes into an output folder (``train.lock``).
"""
import argparse
import errno
import os
import platform
import signal
import sys
import traceback
import warnings
from typing import List, Optional

import torch

from textrefiner import __version__
from textrefiner.checkpoints import UpstreamCheckpointError
from textrefiner.config import ConfigError
from textrefiner.data.errors import DatasetError
from textrefiner.errors import UserError, WeightsNotFoundError
from textrefiner.framework import (
    FRAMEWORK, build_trainer, log_only, logging_to_file, set_random_seed, setup_logger, teardown_logger,
)
from textrefiner.run_config import build_parser, check_cfg_values, config_warnings, register_plugins, setup_cfg

from .output_guard import OutputLock, refuse_foreign_outputs
from .parent import die_with_parent



# Errors whose message already says what to do: printed as one line, no traceback.
USER_ERRORS = (UserError, WeightsNotFoundError, DatasetError, ConfigError, UpstreamCheckpointError)
# Operating-system errors that are the user's to fix (permissions, a full disk), not bugs.
_USER_ERRNOS = {errno.EACCES: "not writable", errno.EPERM: "not writable", errno.EROFS: "on a read-only file system",
                errno.ENOSPC: "on a full disk", errno.EDQUOT: "over the disk quota",
                errno.EFBIG: "over the file-size limit (ulimit -f)",
                errno.ENOTDIR: "a file stands where a folder should be"}


def check_args(args) -> None:
    """Flags that must go together or name existing things."""
    if args.eval_only and args.model_dir and not os.path.isdir(args.model_dir):
        raise UserError(f"--model-dir {args.model_dir} is not a folder: pass the output folder of a training run")
    if args.load_epoch is not None and not args.model_dir:
        raise UserError("--load-epoch needs --model-dir (the training run's output folder) and --eval-only")
    if args.model_dir and not args.eval_only:
        raise UserError("--model-dir is read only with --eval-only; to continue training a run use --resume DIR")
    if args.resume and not os.path.isdir(args.resume):
        raise UserError(f"--resume {args.resume} is not a folder: pass the output folder of the run to continue")


def print_args(args, cfg) -> None:
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def env_info() -> str:
    """A short environment summary (torch's full collect_env takes seconds)."""
    import numpy
    import PIL
    import torchvision

    lines = [
        f"textrefiner: {__version__} (framework: {FRAMEWORK})",
        f"Python: {sys.version.split()[0]} ({platform.platform()})",
        f"PyTorch: {torch.__version__}, torchvision: {torchvision.__version__}, "
        f"numpy: {numpy.__version__}, Pillow: {PIL.__version__}",
        f"CUDA available: {torch.cuda.is_available()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"CUDA: {torch.version.cuda}, GPUs: {[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}")
    lines.append(f"CPU threads: {torch.get_num_threads()}")
    return "\n".join(lines)


def _show_warning_on_stdout(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings go to stdout, which the logger copies into log.txt (precision fallbacks, fp16 traps)."""
    print(f"Warning: {category.__name__}: {message}", flush=True)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _user_os_error(error: OSError) -> Optional[str]:
    if isinstance(error, FileNotFoundError) and error.errno is None:
        return _one_line(error)  # raised by our code with a message naming the fix (the OS's carry an errno)
    what = _USER_ERRNOS.get(error.errno)
    if what is None:
        return None
    where = error.filename or "the output folder"
    return f"Cannot write {where}: {what} ({error.strerror}). Free space or fix the permissions, or use another --output-dir"


def _terminate(signum, frame) -> None:
    """SIGTERM (the sweep stopping, a scheduler's preemption): unwind so the lock goes and the log says so."""
    raise SystemExit(128 + signum)


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("TEXTREFINER_DEBUG", "") not in ("", "0")
    die_with_parent()
    previous, showwarning = signal.signal(signal.SIGTERM, _terminate), warnings.showwarning
    held: List[OutputLock] = []
    try:
        run(args, held)
    except (*USER_ERRORS, OSError) as e:
        message = _one_line(e) if isinstance(e, USER_ERRORS) else _user_os_error(e)
        if message is None:
            log_only(traceback.format_exc())
            raise
        if debug:
            traceback.print_exc()
        # into log.txt once the logger is set up; before that (bad flags or config) to stderr
        try:
            print(f"Error: {message}", file=sys.stdout if logging_to_file() else sys.stderr, flush=True)
        except OSError:  # a full disk refuses log.txt the line too: the console alone gets it
            print(f"Error: {message}", file=getattr(sys.stdout, "console", sys.stdout), flush=True)
        raise SystemExit(1) from None
    except SystemExit as e:
        if e.code not in (0, None):
            print(f"Stopped (exit status {e.code})", flush=True)
        raise
    except BaseException:
        log_only(traceback.format_exc())  # the console shows it as Python exits
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        warnings.showwarning = showwarning
        for lock in held:
            lock.release()
        try:
            teardown_logger()
        except OSError:  # the log's last buffered line on a full disk
            sys.stdout = getattr(sys.stdout, "console", sys.stdout)


def run(args: argparse.Namespace, held: Optional[List[OutputLock]] = None) -> None:
    """Check the input, take the output folder (its lock is appended to ``held``), train and/or evaluate."""
    register_plugins()
    check_args(args)
    cfg = setup_cfg(args)
    check_cfg_values(cfg)
    refuse_foreign_outputs(cfg.OUTPUT_DIR, cfg.TRAINER.NAME)
    lock = OutputLock(cfg.OUTPUT_DIR).acquire()
    if held is not None:
        held.append(lock)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    warnings.showwarning = _show_warning_on_stdout
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print_args(args, cfg)
    for warning in config_warnings(cfg):
        print(f"Warning: {warning}")
    print("Collecting env info ...")
    print(f"** System info **\n{env_info()}\n")
    trainer = build_trainer(cfg)
    if args.eval_only:
        if not args.model_dir and trainer.get_model_names():
            print(f"Warning: --eval-only without --model-dir evaluates an untrained {cfg.TRAINER.NAME} (its "
                  "learnable parts at their initial values); result.json records \"untrained\": true")
            trainer.untrained = True
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


if __name__ == "__main__":
    main()
