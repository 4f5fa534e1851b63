"""Where each protocol step writes its run, and reading those folders back.

One template per step, relative to the output root (``output/`` by default). The
training runs share CoCoOp's base-to-novel tail ``<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>``;
the cross-dataset evaluations keep CoCoOp's and MaPLe's ``evaluation/`` layout exactly, so
tools written for those repositories read our outputs unchanged::

    base2new/train_base/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>   train on base classes (+ base test)
    base2new/test_new/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>     evaluate that model on new classes
    xd/imagenet/shots_<K>/<Trainer>/<cfg>/seed<S>                     train on ImageNet, all classes
    evaluation/<Trainer>/<cfg>_<K>shots/<dataset>/seed<S>             evaluate the xd model on a target
    few_shot/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>              train and test on all classes

Dataset names are the config names (``configs/datasets/<dataset>.yaml``).
"""
import os
import os.path as osp
import re
from dataclasses import dataclass
from typing import Dict, Optional, Pattern

_TRAIN_TAIL = "{dataset}/shots_{shots}/{trainer}/{cfg}/seed{seed}"

LAYOUT: Dict[str, str] = {
    "base2new_train": "base2new/train_base/" + _TRAIN_TAIL,
    "base2new_test": "base2new/test_new/" + _TRAIN_TAIL,
    "xd_train": "xd/" + _TRAIN_TAIL,
    "xd_test": "evaluation/{trainer}/{cfg}_{shots}shots/{dataset}/seed{seed}",
    "few_shot": "few_shot/" + _TRAIN_TAIL,
}

_NUMERIC_FIELDS = ("shots", "seed")


@dataclass(frozen=True)
class RunKey:
    """What a run folder's path says about the run."""

    kind: str
    dataset: str
    shots: int
    trainer: str
    cfg: str
    seed: int


def run_dir(output_root: str, key: RunKey) -> str:
    return osp.join(output_root, *LAYOUT[key.kind].format(**vars(key)).split("/"))


def _pattern(template: str) -> Pattern:
    # split() with a capturing group alternates literal text and field names
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(
        re.escape(part) if i % 2 == 0 else (rf"(?P<{part}>\d+)" if part in _NUMERIC_FIELDS else rf"(?P<{part}>[^/]+)")
        for i, part in enumerate(parts)
    )
    return re.compile(regex + r"\Z")


_PATTERNS = {kind: _pattern(template) for kind, template in LAYOUT.items()}


def parse_run_dir(relative_path: str) -> Optional[RunKey]:
    """The RunKey of a run folder given relative to the output root, or None if no template fits."""
    path = relative_path.replace(os.sep, "/").strip("/")
    for kind, pattern in _PATTERNS.items():
        match = pattern.match(path)
        if match:
            fields = match.groupdict()
            return RunKey(kind=kind, **{k: int(v) if k in _NUMERIC_FIELDS else v for k, v in fields.items()})
    return None
