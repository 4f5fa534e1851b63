"""Where each protocol step writes its run, and reading those folders back.

One template per step, relative to the output root (``output/`` by default), the same
paths as the upstream scripts, so tools and trained models from those repositories work
unchanged::

    base2new/train_base/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>   train on base classes (CoCoOp, MaPLe)
    base2new/test_new/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>     evaluate that model on new classes
    <dataset>/<Trainer>/<cfg>_<K>shots/seed<S>                        train and test on all classes:
                                                                      few-shot (PromptSRC's few_shot.sh) and,
                                                                      with dataset imagenet (or the source
                                                                      the protocol was given, SOURCE=), the
                                                                      cross-dataset source (CoCoOp's and
                                                                      MaPLe's xd_train)
    evaluation/<Trainer>/<cfg>_<K>shots/<dataset>/seed<S>             evaluate the xd model on a target

The cross-dataset training IS a few-shot training on ImageNet, so upstream gives both one
template: ``xd_train`` has no entry of its own in ``LAYOUT`` and a folder of that shape
reads back as ``few_shot`` (the tables know that an ImageNet one is also the xd source).

A run tag (an ablation's own folder, ``TAG=`` in the launchers) is one more folder before
``seed<S>``, as CoOp's ``main.sh`` writes ``<cfg>_<K>shots/nctx<N>_csc<C>_ctp<P>/seed<S>``.

Dataset names are the config names (``configs/datasets/<dataset>.yaml``). Folders of this
package's earlier layout (``xd/<dataset>/shots_<K>/...``, ``few_shot/<dataset>/...``) are
still read back (``LEGACY_LAYOUT``), never written.

PromptKD's release scripts write the same templates with two differences, both read back:
``base2new_train.sh`` names the seed folder ``seed_<S>`` (and uses ``shots_0``, every training
image, which is just a shot count), and ``xd_train.sh`` trains one student per target into the
few-shot template with its cross-dataset config, ``<target>/PromptKD/<cfg>_cross_datasets_0shots/
seed<S>``: a folder of that template on a target other than ImageNet whose config name ends in
``_cross_datasets`` reads back as a cross-dataset training on that target (``xd_train``). What the
logs of PromptKD's base-to-novel trainings hold (Base and Novel in one log) is read by
``upstream.py``.
"""
import os
import os.path as osp
import re
from dataclasses import dataclass, replace
from typing import Dict, Optional, Pattern

from .benchmarks import XD_SOURCE

_BASE2NEW_TAIL = "{dataset}/shots_{shots}/{trainer}/{cfg}{tag}/seed{seed}"
_ALL_CLASSES = "{dataset}/{trainer}/{cfg}_{shots}shots{tag}/seed{seed}"

LAYOUT: Dict[str, str] = {
    "base2new_train": "base2new/train_base/" + _BASE2NEW_TAIL,
    "base2new_test": "base2new/test_new/" + _BASE2NEW_TAIL,
    # before few_shot: its paths would also fit few_shot's (dataset "evaluation", tag <dataset>)
    "xd_test": "evaluation/{trainer}/{cfg}_{shots}shots/{dataset}{tag}/seed{seed}",
    "few_shot": _ALL_CLASSES,
}
#: kinds that write into another kind's template
SAME_LAYOUT = {"xd_train": "few_shot"}
#: this package's layout before it took the upstream one: read back, and written only for cross-dataset
#: trainings on a target (``run_dir``)
LEGACY_LAYOUT: Dict[str, str] = {
    "xd_train": "xd/{dataset}/shots_{shots}/{trainer}/{cfg}{tag}/seed{seed}",
    "few_shot": "few_shot/{dataset}/shots_{shots}/{trainer}/{cfg}{tag}/seed{seed}",
}

_NUMERIC_FIELDS = ("shots", "seed")
#: how PromptKD's release scripts name a seed folder in base-to-novel (ours: ``seed<S>``)
PROMPTKD_SEED_FOLDER = re.compile(r"seed_\d+")
#: the config-name suffix of the releases' cross-dataset configs (MaPLe, PromptSRC, PromptKD)
CROSS_DATASET_CONFIG = "_cross_datasets"


@dataclass(frozen=True)
class RunKey:
    """What a run folder's path says about the run."""

    kind: str
    dataset: str
    shots: int
    trainer: str
    cfg: str
    seed: int
    #: the run tag: "" for the config's own settings, else the name of an ablation's folder
    tag: str = ""

    @property
    def setting(self) -> str:
        """The config name and tag: what tells one setting of a trainer from another."""
        return f"{self.cfg}/{self.tag}" if self.tag else self.cfg


def layout_kind(kind: str) -> str:
    """The kind whose template ``kind`` writes into."""
    return SAME_LAYOUT.get(kind, kind)


def run_dir(output_root: str, key: RunKey, source: str = XD_SOURCE) -> str:
    """The folder of ``key``'s run; ``source``: for a cross-dataset training, the protocol's source
    dataset (ImageNet unless the protocol was given another, e.g. the testbed's ``testbed_shapes``)."""
    fields = {**vars(key), "tag": f"/{key.tag}" if key.tag else ""}
    if key.kind == "xd_train" and key.dataset != source:
        # A cross-dataset training ON a target (PromptKD: one student per target) has no upstream
        # layout and must not read back as few-shot: it keeps the xd template, read back as xd_train.
        template = LEGACY_LAYOUT["xd_train"]
    else:
        template = LAYOUT[layout_kind(key.kind)]
    return osp.join(output_root, *template.format(**fields).split("/"))


def _pattern(template: str) -> Pattern:
    # split() with a capturing group alternates literal text and field names
    parts = re.split(r"\{(\w+)\}", template)
    regex = ""
    for i, part in enumerate(parts):
        if i % 2 == 0:
            regex += re.escape(part)
        elif part == "tag":
            regex += r"(?:/(?P<tag>[^/]+))?"
        elif part == "seed":  # seed<S>, and PromptKD's seed_<S>
            regex += r"_?(?P<seed>\d+)"
        else:
            regex += rf"(?P<{part}>\d+)" if part in _NUMERIC_FIELDS else rf"(?P<{part}>[^/]+)"
    return re.compile(regex + r"\Z")


_PATTERNS = [(kind, _pattern(t)) for kind, t in LAYOUT.items()]
_PATTERNS += [(kind, _pattern(t)) for kind, t in LEGACY_LAYOUT.items()]


def parse_run_dir(relative_path: str) -> Optional[RunKey]:
    """The RunKey of a run folder given relative to the output root, or None if no template fits."""
    path = relative_path.replace(os.sep, "/").strip("/")
    for kind, pattern in _PATTERNS:  # in order: xd_test before the few_shot template it would also fit
        match = pattern.match(path)
        if match:
            fields = {k: v for k, v in match.groupdict().items() if v is not None}
            key = RunKey(kind=kind, **{k: int(v) if k in _NUMERIC_FIELDS else v for k, v in fields.items()})
            if kind == "few_shot" and key.dataset != XD_SOURCE and key.cfg.endswith(CROSS_DATASET_CONFIG):
                key = replace(key, kind="xd_train")  # PromptKD's xd_train.sh: one student per target
            return key
    return None
