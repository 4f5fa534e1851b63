"""One protocol step = one ``train.py`` run into its layout folder (``results/layout.py``).

The launchers in ``scripts/<host>/`` run one step; the sweep runs jobs made of steps
(``jobs.py``); both go through ``run_step``, so they behave the same:

* a step whose folder holds ``result.json`` made with the step's settings is done and
  skipped; one made with other settings is refused (``identity.py``: a run tag or overwrite);
* a folder without it (a crash, an interruption) is run again into the same folder:
  ``train.py`` resumes training from the checkpoints there; an evaluation simply reruns;
* an evaluation loads the model its training produced, chosen from that training's
  ``result.json``: ``model-best.pth.tar`` when the config kept the best validation model
  (``TEST.FINAL_MODEL best_val``, as the shipped configs do), else the last epoch
  (``--load-epoch``); a training folder made by the upstream scripts (log.txt and
  checkpoints, no result.json) is used as it is (``results/upstream.py``);
* an evaluation takes the training's settings from that ``result.json`` (``evaluated.py``):
  training-only keys the test step was not given come from the training, and keys that
  change what is evaluated must agree (else it refuses, naming the ``KEY VALUE`` pairs to
  pass). Its overwrite replaces the evaluation's folder, never the model's.
"""

import json
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import FrozenSet, List, Optional, Sequence, TextIO, Tuple

from ..config import KEY_ALIASES
from ..resources import child_env, config_path
from ..results.benchmarks import SHOTS, XD_SOURCE
from ..results.layout import RunKey, run_dir
from ..results.record import HASH_KEY, RESULT_FILE, SETTINGS_KEY, read_result
from ..results.upstream import upstream_record
from .evaluated import adopted, as_options, mismatch_message, model_mismatches
from .identity import (
    SETTINGS_FILE, SettingsConflict, expected_settings, find_conflict, recorded, same_settings, write_settings,
)
from . import step_server
from .hosts import host_of

#: how a step starts training: the installed entry point, so steps run from any folder
TRAIN_COMMAND = (sys.executable, "-m", "textrefiner.cli.train")
#: how variants that share the frozen image tower run together (``textrefiner/cli/shared.py``)
SHARED_COMMAND = (sys.executable, "-m", "textrefiner.cli.shared")
#: config keys every step sets from its own arguments; an override would mislabel the output folder
PROTOCOL_KEYS = {
    "DATASET.NUM_SHOTS": "set the number of shots with SHOTS=K (launchers) or shots (sweep)",
    "DATASET.SUBSAMPLE_CLASSES": "the base-to-novel steps set it (base for training, new for testing)",
}


#: trainers with nothing to train (zero-shot CLIP): every step of theirs is an evaluation of the
#: pretrained model (``--eval-only``, no model folder), so base-to-novel's two steps score the base
#: and the new classes and the tables get a zero-shot row like any other method's
EVALUATION_ONLY_TRAINERS = ("ZeroshotCLIP",)


class ModelNotReady(RuntimeError):
    """An evaluation step was asked for before the training it evaluates finished."""


class ModelMismatch(SettingsConflict):
    """An evaluation step's config gives other values than its model's training to keys that change
    what is evaluated (the model's structure, its backbone, its input)."""


def dataset_config(dataset: str) -> str:
    return config_path("datasets", f"{dataset}.yaml")


def trainer_config(trainer: str, cfg: str) -> str:
    return config_path("trainers", trainer, f"{cfg}.yaml")


def check_opts(opts: Sequence[str]) -> None:
    if len(opts) % 2:
        raise ValueError(f"Config overrides come in KEY VALUE pairs; got an odd number: {' '.join(opts)}")
    for key in opts[::2]:
        if key in PROTOCOL_KEYS:
            raise ValueError(f"Do not override {key}: {PROTOCOL_KEYS[key]}")


def check_tag(tag: str) -> None:
    """A run tag is one folder name: letters, digits and . _ + - only, and not seed<N> (a seed's folder)."""
    if not re.fullmatch(r"[A-Za-z0-9._+-]+", tag) or re.fullmatch(r"seed_?\d+|\.+", tag):
        raise ValueError(f"Run tag {tag!r}: use letters, digits and . _ + - only, not dots alone, and not seed<N>")


@dataclass(frozen=True)
class Setup:
    """What the steps of one protocol run share: trainer, config name, data and output roots."""

    trainer: str
    cfg: str
    data: str = "data"
    output: str = "output"
    #: trailing ``KEY VALUE`` config overrides for train.py
    opts: Tuple[str, ...] = ()
    #: run tag: a folder of its own for these settings (an ablation), before ``seed<S>``
    tag: str = ""
    #: replace a run made with other settings instead of refusing
    overwrite: bool = False

    def __post_init__(self):
        check_opts(self.opts)
        if self.tag:
            check_tag(self.tag)
        trainer_config(self.trainer, self.cfg)  # a typo fails before anything runs


@dataclass(frozen=True)
class Step:
    key: RunKey
    output_dir: str
    flags: Tuple[str, ...]
    opts: Tuple[str, ...]
    #: for an evaluation: the training step whose model it loads
    evaluates: Optional["Step"] = None
    #: replace a run made with other settings instead of refusing (an evaluation: its own folder only)
    overwrite: bool = False
    #: the config keys the user's ``KEY VALUE`` pairs give (an evaluation never replaces them)
    given_keys: FrozenSet[str] = frozenset()

    def _trained_settings(self, or_evaluated: bool = False) -> Optional[dict]:
        """For an evaluation: the settings its model was trained with (None: unknown or not trained);
        ``or_evaluated``: with the model's folder gone, those this evaluation recorded when it ran."""
        record = self.evaluates.record if self.evaluates is not None else None
        if record is None and or_evaluated and self.evaluates is not None:
            record = recorded(self.output_dir)
        settings = record.get(SETTINGS_KEY) if record else None
        return settings if isinstance(settings, dict) else None

    @property
    def adopted(self) -> Tuple[str, ...]:
        """For an evaluation: ``KEY VALUE`` pairs of the training-only keys it takes from its model's training."""
        trained = self._trained_settings(or_evaluated=True)
        if trained is None:
            return ()
        return as_options(adopted(trained, expected_settings(self.flags + self.opts)[1], self.given_keys))

    @property
    def all_opts(self) -> Tuple[str, ...]:
        """The ``KEY VALUE`` pairs train.py gets: the step's, then what an evaluation takes from its training."""
        return self.opts + self.adopted

    @property
    def expected(self):
        """(config hash, settings) of the config train.py will build for this step."""
        return expected_settings(self.flags + self.all_opts)

    def check_model(self) -> None:
        """For an evaluation of a finished training: refuse if a key that changes what is evaluated differs."""
        trained = self._trained_settings()
        if trained is None:
            return
        changes = model_mismatches(trained, expected_settings(self.flags + self.opts)[1])
        if changes:
            raise ModelMismatch(mismatch_message(self.evaluates.output_dir, changes))

    @property
    def record(self) -> Optional[dict]:
        """This folder's result.json, else what an upstream run left (log.txt and checkpoints).
        A folder a launcher started (it holds run_settings.json) is finished only with result.json."""
        path = osp.join(self.output_dir, RESULT_FILE)
        if osp.isfile(path):
            return read_result(path)
        if osp.isfile(osp.join(self.output_dir, SETTINGS_FILE)):
            return None
        return upstream_record(self.output_dir, self.evaluates is None)

    @property
    def done(self) -> bool:
        """Finished with this step's settings (a record without a hash cannot tell: trusted)."""
        record = self.record
        return (record is not None and (record.get(HASH_KEY) is None or same_settings(record, self.expected))
                and self.other_model(record) is None)

    def other_model(self, record: Optional[dict]) -> Optional[str]:
        """For an evaluation: the model folder ``record`` evaluated when that model was trained on
        another dataset than this step's model (two cross-dataset sources' models of one trainer,
        config and shots share an evaluation folder); None otherwise, or when it cannot tell (a
        model folder moved or deleted since)."""
        if self.evaluates is None or not record or not record.get("model_dir"):
            return None
        there, here = record["model_dir"], self.evaluates.output_dir
        if osp.abspath(there) == osp.abspath(here):
            return None
        theirs, ours = recorded(there), self.evaluates.record
        if not theirs or not ours or not theirs.get("dataset") or not ours.get("dataset"):
            return None
        return there if theirs["dataset"] != ours["dataset"] else None

    def conflict(self) -> Optional[str]:
        """Why this step must not run into its folder (another setting's run is there), or None."""
        other = self.other_model(recorded(self.output_dir))
        if other is not None:
            return (f"{self.output_dir} holds the evaluation of the model in {other}, trained on another dataset "
                    f"than {self.evaluates.output_dir}: give this evaluation a folder of its own (TAG=NAME, "
                    "--tag NAME in a sweep), or OVERWRITE=1 to replace that evaluation (both models are kept)")
        model_dir = self.evaluates.output_dir if self.evaluates is not None else ""
        return find_conflict(self.output_dir, self.expected, model_dir)

    def model_flags(self) -> List[str]:
        if self.evaluates is None:
            return []
        train = self.evaluates
        record = train.record
        if record is None:
            raise ModelNotReady(
                f"{train.output_dir} holds no {RESULT_FILE}: the training this step evaluates has not finished. "
                f"Run the {train.key.kind} step for {train.key.dataset} seed {train.key.seed} first "
                f"(scripts/<host>/{train.key.kind}.sh, or a sweep)."
            )
        self.check_model()
        flags = ["--eval-only", "--model-dir", train.output_dir]
        if record["final_model"] != "best_val":
            flags += ["--load-epoch", str(record["max_epoch"])]
        return flags

    def command(self) -> List[str]:
        return [*TRAIN_COMMAND, *self.flags, *self.model_flags(), *self.all_opts]


def _step(setup: Setup, kind: str, dataset: str, seed: int, shots: int, protocol_opts: Sequence,
          evaluates: Optional[Step] = None, source: str = XD_SOURCE) -> Step:
    key = RunKey(kind, dataset, shots, setup.trainer, setup.cfg, seed, setup.tag)
    output_dir = run_dir(setup.output, key, source)
    flags = (
        "--root", setup.data, "--seed", str(seed), "--trainer", setup.trainer,
        "--dataset-config-file", dataset_config(dataset),
        "--config-file", trainer_config(setup.trainer, setup.cfg),
        "--output-dir", output_dir,
    )
    if setup.trainer in EVALUATION_ONLY_TRAINERS:
        flags += ("--eval-only",)
        evaluates = None
    host = host_of(setup.trainer)
    host_opts = host.step_opts(kind, dataset) if host else ()
    return Step(key, output_dir, flags, tuple(map(str, (*protocol_opts, *host_opts))) + tuple(setup.opts), evaluates,
                setup.overwrite, frozenset(KEY_ALIASES.get(k, k) for k in setup.opts[::2]))


def base2new_train(setup: Setup, dataset: str, seed: int, shots: int = SHOTS) -> Step:
    """Train on the base classes; the final test scores the base classes."""
    opts = ("DATASET.NUM_SHOTS", shots, "DATASET.SUBSAMPLE_CLASSES", "base")
    return _step(setup, "base2new_train", dataset, seed, shots, opts)


def base2new_test(setup: Setup, dataset: str, seed: int, shots: int = SHOTS) -> Step:
    """Evaluate the base-trained model on the new classes."""
    opts = ("DATASET.NUM_SHOTS", shots, "DATASET.SUBSAMPLE_CLASSES", "new")
    return _step(setup, "base2new_test", dataset, seed, shots, opts, base2new_train(setup, dataset, seed, shots))


def xd_train(setup: Setup, seed: int, shots: int = SHOTS, source: str = XD_SOURCE) -> Step:
    """Train on the source dataset, all classes: ImageNet, the source of the paper's cross-dataset and
    domain generalisation, unless another is given (the testbed's: ``testbed_shapes``)."""
    return _step(setup, "xd_train", source, seed, shots, ("DATASET.NUM_SHOTS", shots), source=source)


def xd_test(setup: Setup, dataset: str, seed: int, shots: int = SHOTS, source: str = XD_SOURCE) -> Step:
    """Evaluate the source's model on a target dataset (all its classes, full test set)."""
    return _step(setup, "xd_test", dataset, seed, shots, (), xd_train(setup, seed, shots, source))


def xd_train_target(setup: Setup, dataset: str, seed: int, shots: int = SHOTS) -> Step:
    """Cross-dataset for hosts that train per target (PromptKD): train on the target's (unlabelled)
    images of all classes with the ImageNet teacher; the final test scores the target."""
    return _step(setup, "xd_train", dataset, seed, shots, ("DATASET.NUM_SHOTS", shots))


def few_shot(setup: Setup, dataset: str, shots: int, seed: int) -> Step:
    """Train on ``shots`` images per class of all classes; the final test scores all classes."""
    return _step(setup, "few_shot", dataset, seed, shots, ("DATASET.NUM_SHOTS", shots))


def run_step(step: Step, log: Optional[TextIO] = None, env: Optional[dict] = None) -> int:
    """Run ``step`` unless done; train.py's output goes to ``log`` (default: this terminal).
    Returns train.py's exit status (0 for a skipped step); raises ModelNotReady, ModelMismatch (an
    evaluation whose model was built with other values of keys that change what is evaluated), and
    SettingsConflict for a folder made with other settings (unless the step may overwrite it)."""
    command = prepare_step(step, log or sys.stdout)
    if command is None:
        return 0
    return _run(command, log, env)


def run_steps_shared(steps: Sequence[Step], log: Optional[TextIO] = None, env: Optional[dict] = None) -> int:
    """Run the ``steps`` not done yet (variants of a CoOp-host trainer for one dataset, split and seed) in
    one process that computes the frozen image tower once for all (``textrefiner.cli.shared``); each step
    is checked and prepared as ``run_step`` does. Returns that process's exit status (0: all finished)."""
    out = log or sys.stdout
    commands = [command for command in (prepare_step(step, out) for step in steps) if command is not None]
    if len(commands) < 2:
        return _run(commands[0], log, env) if commands else 0
    runs = [command[len(TRAIN_COMMAND):] for command in commands]
    print(f"$ {shlex.join(SHARED_COMMAND)} '<the {len(runs)} train.py runs above>'", file=out, flush=True)
    return _run([*SHARED_COMMAND, json.dumps(runs)], log, env)


#: glibc's malloc returns every block over its (adaptive, at most 32 MiB) mmap threshold to the system when
#: freed and trims the heap's top: a run that allocates and frees a batch's activations step after step then
#: zero-fills fresh pages for each (a testbed CoCoOp epoch: 3 million page faults, a fifth of its time in the
#: kernel). Kept up to 1 GiB, freed blocks are reused: 0.80-0.86x the time, 5-11% more memory (docs/speed.md).
#: Set in the environment of the runs a sweep or launcher starts, unless the user set them.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def _run(command: List[str], log: Optional[TextIO], env: Optional[dict]) -> int:
    # the child exits when this process does (textrefiner/cli/parent.py): no orphan writers. Its
    # output reaches a log line by line (unbuffered), so the log can be followed (progress.py)
    env = {**MALLOC_SETTINGS, **child_env(env), "TEXTREFINER_PARENT_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1"}
    if log is not None:
        log.flush()  # what this process wrote comes before the step's lines
    code = step_server.run(command, log, env)  # forked from a process that imported torch once (a log only)
    if code is not None:
        return code
    return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT if log else None, env=env).returncode


def prepare_step(step: Step, out: TextIO) -> Optional[List[str]]:
    """Check ``step`` and make its folder ready (``run_step``'s rules); its train.py command, or None if done."""
    step.check_model()
    if step.done:
        print(f"Skip: {step.output_dir} already holds {RESULT_FILE} made with the same settings", file=out, flush=True)
        return None
    conflict = step.conflict()
    if conflict and not step.overwrite:
        raise SettingsConflict(conflict)
    if conflict and (not same_settings(recorded(step.output_dir), step.expected)
                     or step.other_model(recorded(step.output_dir)) is not None):
        kept = f"; the model in {step.evaluates.output_dir} is kept" if step.evaluates is not None else ""
        print(f"Overwrite: deleting {step.output_dir} (a run made with other settings{kept})", file=out, flush=True)
        shutil.rmtree(step.output_dir)
    command = step.command()
    if step.adopted:
        print(f"Note: evaluating the model in {step.evaluates.output_dir} with the settings it was trained with: "
              f"{shlex.join(step.adopted)} (from its {RESULT_FILE})", file=out)
    if osp.isdir(step.output_dir):
        how = "resuming from its checkpoints" if step.evaluates is None else "evaluating again"
        print(f"{step.output_dir} exists without {RESULT_FILE} (interrupted or failed): {how}", file=out)
    else:
        print(f"Run {step.key.kind}; output to {step.output_dir}", file=out)
    print("$ " + shlex.join(command), file=out, flush=True)
    try:
        write_settings(step.output_dir, step.expected)
    except OSError:
        pass  # the folder cannot be made: train.py fails on it with its own message
    return command
