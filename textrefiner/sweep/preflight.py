"""Before a sweep's first job: everything the whole grid needs, checked at once, so a missing
dataset or CLIP weights file stops the sweep with one list instead of failing every job in turn.

First, always (``check_configs``): the config ``train.py`` would build for each step, with the
checks ``train.py`` runs before it writes anything (``run_config/``: unknown keys with the
closest valid one, values of the wrong type, values outside their choices or ranges). A
mistake there, e.g. ``opts: {OPTIM.MAX_EPOCH: -1}``, would fail every job: it stops the sweep
with one ``UserError`` instead.

Checked: each dataset's folder and split or list files (what ``python -m textrefiner.data.doctor``
checks first, without reading images), the CLIP weights each step's config names (asking the one
backbone resolver, ``backbones/resolver.py``, so every name train.py accepts is known here: OpenAI
names, ``testbed`` and any other registered name, weights files, ``random:<arch>``; and a PromptKD
training's teacher CLIP), a PromptKD training's teacher file (where its config and seed put it), and folders holding a run made with other settings
(``protocols/identity.py``).
"""
import os.path as osp
from typing import List, Sequence

from ..errors import UserError
from ..protocols import Job


def check_configs(jobs: Sequence[Job], opts_source: str = "the sweep's opts", variants: str = "") -> None:
    """Build each step's config as train.py does and run train.py's input checks on it; the first
    mistake is a UserError naming the step and where the overrides came from (``opts_source``).
    Steps that differ only in their seed (and so their folder) are checked once. ``variants``: where
    the sweep's variants come from (each job's run tag is a variant's name); two variants that build
    the same config for a step would be one run in two folders, and are refused."""
    # imported here: building a config imports the framework (torch)
    from ..results.record import config_hash
    from ..run_config import build_run_config, check_cfg_values

    checked = set()
    made_by = {}  # (step without its tag, config hash) -> the variant that builds it
    for job in jobs:
        for step in job.steps:
            key = step.key
            group = (key.kind, key.dataset, key.shots, key.trainer, key.cfg, key.tag, step.opts)
            if group in checked:
                continue
            checked.add(group)
            source = f"variant {key.tag} of {variants}, on top of {opts_source}" if variants else opts_source
            try:
                # merge_config (inside build_run_config) and check_cfg_values: the checks train.py runs
                cfg = build_run_config(step.flags + step.opts)
                check_cfg_values(cfg)
            except UserError as e:
                message = " ".join(str(e).split())
                if " in the command line" in message:  # merge_config's word for train.py's KEY VALUE pairs
                    message = message.replace(" in the command line", f" in {source}")
                else:
                    message += f" (with {source})"
                raise UserError(f"{message}; the config of {key.kind} {key.dataset} {key.trainer} {key.cfg} "
                                "would fail in train.py: nothing started") from None
            if variants:
                same = made_by.setdefault((key.kind, key.dataset, key.shots, key.trainer, key.cfg, config_hash(cfg)),
                                          key.tag)
                if same != key.tag:
                    raise UserError(f"variants {same} and {key.tag} of {variants} build the same config for "
                                    f"{key.trainer} {key.cfg} (one run in two folders): change or drop one of them")


def dataset_problems(data_root: str, datasets: Sequence[str]) -> List[str]:
    """One line per problem of the CoOp-layout datasets named (others, e.g. synthetic, make their own data)."""
    from ..data.catalog import COOP_DATASETS

    lines = []
    for name in datasets:
        reader = next((r for r in COOP_DATASETS if r.matches(name)), None)
        if reader is not None:
            lines += [p.line() for p in reader.layout_problems(data_root)]
    return lines


def image_folder_problems(data_root: str, steps) -> List[str]:
    """One line per problem of the ``ImageFolder`` datasets (your own images) the steps read."""
    from ..data.image_folder import ImageFolder

    keys = [f"DATASET.IMAGE_FOLDER.{key}" for key in ("DIR", "CSV", "CLASSNAMES")]
    folders = sorted({tuple(step.expected[1].get(key, "") for key in keys)
                      for step in steps if step.expected[1].get("DATASET.NAME") == "ImageFolder"})
    return [p.line() for folder in folders if folder[0]
            for p in ImageFolder.configured(*folder).layout_problems(data_root)]


def weights_problem(name: str, path: str, what: str = "CLIP weights", path_key: str = "MODEL.BACKBONE.PATH") -> str:
    """Why the CLIP weights ``name`` (``path``: the value of ``path_key``) cannot be loaded on this
    machine, or "" (names the resolver refuses were refused by ``check_configs`` already)."""
    from ..backbones.resolver import resolve  # imported here: it imports torch

    problem = resolve(name, path).missing().replace("MODEL.BACKBONE.PATH", path_key)
    if not problem:
        return ""
    where = " (after -- in the sweep command)" if path_key in problem else ""
    return f"{what} {name}: {problem}{where}"


#: (what, name key, path key) of the CLIP every step loads, and of a PromptKD training's teacher
BACKBONE_KEYS = ("CLIP weights", "MODEL.BACKBONE.NAME", "MODEL.BACKBONE.PATH")
TEACHER_KEYS = ("teacher CLIP weights", "TRAINER.PROMPTKD.TEACHER_NAME", "TRAINER.PROMPTKD.TEACHER_PATH")


def backbones(step) -> set:
    """(what, name, path, path key) of every CLIP a step loads through the backbone resolver: its
    backbone, and for a PromptKD training its teacher's."""
    settings = step.expected[1]
    keys = [BACKBONE_KEYS]
    if str(settings.get("TRAINER.NAME", "")).startswith("PromptKD") and step.evaluates is None:
        keys.append(TEACHER_KEYS)
    return {(what, settings.get(name, ""), settings.get(path, ""), path) for what, name, path in keys}


def teacher_file_problems(steps, teacher_clips_missing: set) -> List[str]:
    """One line per PromptKD training whose teacher file (``TEACHER_PROMPTS file``) is not there: the
    file its config names for its seed (``{seed}`` in TEACHER_DIR). A teacher whose CLIP weights are
    missing is left to that problem's line."""
    # imported here: building a config imports the framework (torch)
    from ..run_config import build_run_config
    from ..trainers.promptkd import teacher_file

    lines = {}
    for step in steps:
        s = step.expected[1]
        if not (str(s.get("TRAINER.NAME", "")).startswith("PromptKD") and step.evaluates is None
                and s.get("TRAINER.PROMPTKD.TEACHER_PROMPTS") == "file"):
            continue
        if (s.get(TEACHER_KEYS[1], ""), s.get(TEACHER_KEYS[2], "")) in teacher_clips_missing:
            continue
        path = teacher_file(build_run_config(step.flags + step.all_opts))  # TEACHER_DIR is a path: not in s
        if not osp.isfile(path):
            dataset, seed = step.key.dataset, step.key.seed
            lines[path] = (f"PromptKD teacher {path} (for {dataset} seed {seed}): no such file; train it first "
                           f"(TEACHER_DIR=... bash scripts/promptkd/train_teacher.sh {dataset} {seed}, or "
                           "protocols.teacher.train_teacher) or point TRAINER.PROMPTKD.TEACHER_DIR at it")
    return list(lines.values())


def preflight(jobs: Sequence[Job], data_root: str) -> List[str]:
    """Every problem that would make a pending step of ``jobs`` fail, one line each."""
    pending = [step for job in jobs for step in job.steps if not step.done]
    # an xd job's source is its training step's dataset (ImageNet, or the source the sweep was given)
    datasets = sorted({step.key.dataset for step in pending})
    problems = dataset_problems(data_root, datasets) + image_folder_problems(data_root, pending)
    weights = sorted(set().union(*(backbones(step) for step in pending)))
    found = [(what, name, path, weights_problem(name, path, what, key)) for what, name, path, key in weights]
    problems += [p for _, _, _, p in found if p]
    problems += teacher_file_problems(pending, {(name, path) for what, name, path, p in found
                                                if p and what == TEACHER_KEYS[0]})
    conflicts = [None if step.overwrite else step.conflict() for step in pending]
    problems += [f"settings: {c}" for c in dict.fromkeys(conflicts) if c]  # siblings repeat one message
    return problems
