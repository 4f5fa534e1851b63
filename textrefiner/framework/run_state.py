"""The random-number state a training run needs to continue exactly where it stopped.

A checkpoint holds the model, optimizer and scheduler; a resumed run also needs the
Python, NumPy and torch generators (the training sampler's shuffle and the
augmentations draw from them, and every DataLoader iterator draws its worker seed
from torch's), any generator a loader or its sampler owns, and CUDA's. Captured at
the end of an epoch and restored at resume, the next epoch then draws the same
numbers as in an uninterrupted run. Everything is stored as tensors, strings and
numbers so checkpoints stay loadable with ``torch.load(weights_only=True)``.
"""
import random
from typing import Iterable, List, Optional

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state"]


def _loader_generators(loaders: Iterable) -> List[torch.Generator]:
    """Generators owned by the loaders (``generator=``) and their samplers, in a fixed order."""
    found = []
    for loader in loaders:
        if loader is None:
            continue
        for owner in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            gen = getattr(owner, "generator", None)
            if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
                found.append(gen)
    return found


def capture_rng_state(loaders: Iterable = ()) -> dict:
    """Every generator's state, as plain tensors and numbers."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {
            "name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
            "has_gauss": int(np_has_gauss), "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "loaders": [g.get_state() for g in _loader_generators(loaders)],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict, loaders: Iterable = ()) -> Optional[str]:
    """Put every generator back; returns a note when something could not be restored."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["gauss"]))
    torch.set_rng_state(state["torch"])
    notes = []
    generators = _loader_generators(loaders)
    if len(generators) == len(state["loaders"]):
        for gen, saved in zip(generators, state["loaders"]):
            gen.set_state(saved)
    else:
        notes.append(f"the data loaders own {len(generators)} generators, the checkpoint {len(state['loaders'])}")
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            notes.append(f"{torch.cuda.device_count()} CUDA devices now, {len(cuda)} when saved")
    return "; ".join(notes) or None
