"""Read checkpoint, teacher and weights files as data, never as code.

``torch.load`` unpickles, and a pickle can name any function to call (``os.system`` included).
Every file this package reads goes through ``load_file``: torch's ``weights_only`` unpickler, which
builds tensors, numbers, strings and containers only, plus an explicit allow-list of exactly the
classes Dassl's checkpoints pickle (found by loading files real Dassl's ``save_model`` writes, for
each optimizer and LR scheduler its ``build_optimizer`` / ``build_lr_scheduler`` can make): a
warm-up scheduler's state holds its successor scheduler object, and that holds its optimizer.

Anything else is refused with one line naming the class and the file. A user who trusts such a
file opts in by listing it (or a folder above it) in ``TEXTREFINER_TRUSTED_FILES`` (paths separated
by ``os.pathsep``); there is no silent fallback to the full unpickler.
"""
import collections
import os
import pickle
import re
from typing import Any, Iterable, List

import torch

from .errors import UserError

__all__ = ["TRUST_ENV", "UnsafeFileError", "UnreadableFileError", "load_file", "trusted", "ALLOWED_CLASS_NAMES",
           "non_finite"]

TRUST_ENV = "TEXTREFINER_TRUSTED_FILES"


class UnsafeFileError(UserError):
    """The file pickles a class outside the allow-list; loading it could run code."""


class UnreadableFileError(UserError):
    """The file is empty, truncated, a folder, or not something ``torch.save`` wrote."""


def _defaultdict_as_dict(default_factory=None, *items) -> dict:
    """An optimizer's ``state`` is a ``defaultdict(dict)``, which the weights-only unpickler cannot
    fill; read as a plain dict (the factory, ``dict``, is never called)."""
    return {}


def _release_globals() -> List[Any]:
    """What Dassl's checkpoints pickle besides tensors and plain containers."""
    from torch.optim import SGD, Adam, AdamW, RMSprop
    from torch.optim.lr_scheduler import CosineAnnealingLR, MultiStepLR, StepLR

    allowed = [SGD, Adam, AdamW, RMSprop, CosineAnnealingLR, StepLR, MultiStepLR, collections.Counter, dict,
               (_defaultdict_as_dict, "collections.defaultdict")]
    try:  # Dassl's own RAdam, where Dassl is installed (without it the class cannot be built anyway)
        from dassl.optim.radam import RAdam

        allowed.append(RAdam)
    except Exception:
        pass
    return allowed


#: the allow-list by the names the files use (for messages and tests)
ALLOWED_CLASS_NAMES = (
    "torch.optim.sgd.SGD", "torch.optim.adam.Adam", "torch.optim.adamw.AdamW", "torch.optim.rmsprop.RMSprop",
    "torch.optim.lr_scheduler.CosineAnnealingLR", "torch.optim.lr_scheduler.StepLR",
    "torch.optim.lr_scheduler.MultiStepLR", "collections.Counter", "collections.defaultdict", "builtins.dict",
    "dassl.optim.radam.RAdam",
)


def _entries(value: str) -> Iterable[str]:
    return (os.path.realpath(os.path.expanduser(p)) for p in value.split(os.pathsep) if p.strip())


def trusted(path: str) -> bool:
    """Whether the user listed ``path`` (or a folder above it) in ``TEXTREFINER_TRUSTED_FILES``."""
    real = os.path.realpath(path)
    return any(real == entry or real.startswith(entry.rstrip(os.sep) + os.sep)
               for entry in _entries(os.environ.get(TRUST_ENV, "")))


def _refused_names(path: str, error: Exception) -> List[str]:
    """The classes or functions the file names outside the allow-list (empty: it is not a pickle of ours)."""
    names: List[str] = []
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is not None:
        try:
            names = [n for n in finder(path) if n not in ALLOWED_CLASS_NAMES]
        except Exception:  # not a zip checkpoint: fall back to the unpickler's message
            names = []
    if not names:
        names = re.findall(r"GLOBAL ([\w.]+)", str(error))
    return list(dict.fromkeys(names))


def _safe_globals(allowed):
    context = getattr(torch.serialization, "safe_globals", None)
    if context is not None:
        return context(allowed)
    import contextlib  # torch < 2.5: no allow-listing, tensors-only files still load

    return contextlib.nullcontext()


def load_file(path: str, what: str = "checkpoint") -> Any:
    """``torch.load(path)`` on the CPU as data only; ``what`` names the file in messages
    ("checkpoint", "PromptKD teacher", "CLIP weights", ...).

    Raises FileNotFoundError when there is no such file, ``UnreadableFileError`` when it cannot be
    read as one, ``UnsafeFileError`` when it pickles anything outside the allow-list.
    """
    if os.path.isdir(path):
        raise UnreadableFileError(f"{path} is a folder, not a {what} file: give the file itself")
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what[0].upper() + what[1:]} not found at "{path}"')
    if os.path.getsize(path) == 0:
        raise UnreadableFileError(f"{path} is empty (0 bytes), not a {what}: copy it again from its source "
                                  "or retrain it")
    if trusted(path):
        print(f"Loading {path} with the full unpickler ({TRUST_ENV} lists it): it can run code")
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with _safe_globals(_release_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        names = _refused_names(path, e)
        if names:
            raise UnsafeFileError(
                f"{path} pickles {', '.join(names)}, which a {what} does not need (allowed: tensors, numbers, "
                f"strings, containers and the optimizers and LR schedulers Dassl saves); loading it could run code, "
                f"so it was not loaded. If you trust this file, add it to {TRUST_ENV} (e.g. "
                f"{TRUST_ENV}={path}) and rerun"
            ) from None
        raise _unreadable(path, what, e) from None
    except PermissionError:
        raise
    except (RuntimeError, EOFError, OSError, ValueError, UnicodeDecodeError, KeyError, IndexError, TypeError) as e:
        raise _unreadable(path, what, e) from None


def non_finite(state: Any) -> List[str]:
    """Keys of the floating-point tensors of a state_dict that hold NaN or inf (a diverged run's file)."""
    return [k for k, v in state.items()
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _unreadable(path: str, what: str, error: Exception) -> UnreadableFileError:
    detail = " ".join(str(error).split())[:100] or type(error).__name__
    if "Weights only load failed" in detail:  # torch's advice to unpickle everything; not ours to give
        detail = "not a torch checkpoint"
    if "central directory" in detail or isinstance(error, (EOFError, OSError)):
        why = "it is truncated (an interrupted copy or download?)"
    else:
        why = f"it is not a file torch.save wrote ({detail})"
    return UnreadableFileError(f"{path} cannot be read as a {what}: {why}; copy it again from its source or "
                               "retrain it")
