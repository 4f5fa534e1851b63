"""Variants of a CoOp-host trainer run together, the frozen image tower computed once for all.

CoOp, CoOp_TextRefiner (any ``TRAINER.TEXTREFINER`` settings, ``ENABLED False`` included) and
ZeroshotCLIP do not prompt CLIP's image tower: for one batch its output is the same in every
variant. ``run_lockstep`` builds the variants of one (dataset, split, seed) on one CLIP and one data
manager, then

* trains them in lockstep on one data stream: per batch the image tower runs once (its blocks before
  the last once, the last block once per output kind: the global feature, and the local tokens when a
  variant needs them), then each variant does its own text side, loss, backward and optimizer step;
* evaluates every variant from one computation of the evaluation split's image features.

Each variant writes what it writes alone (its folder, checkpoints, log.txt, result.json) and its
numbers are those of its alone run on the same batches, bit for bit in fp32: the variants are built
from the random state an alone run builds from, and ``TRAIN.SEEDED_DATA_STREAM`` (required here) makes
the batches a function of the seed alone. Variants that differ in anything else than the text side,
its losses and its optimiser (``unsharable``) cannot share and are refused.
"""
import contextlib
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, TextIO, Tuple

import torch

from textrefiner.errors import UserError
from textrefiner.framework import AverageMeter, MetricMeter, build_trainer, set_random_seed
from textrefiner.framework.run_state import capture_rng_state, restore_rng_state
from textrefiner.hosts.encoders import ImageEncoder

from .base import PromptTrainer

#: trainers whose image tower is CLIP's, unprompted: their variants can share it. MaPLe, IVLP,
#: PromptSRC, PromptKD prompt the image tower and CoCoOp conditions its prompts on it per image
#: (only the evaluation of identical trainers could share there; not done)
SHARABLE_TRAINERS = ("CoOp", "CoOp_TextRefiner", "ZeroshotCLIP")
#: the keys (a name ending in "." or "_" is a prefix) in which variants run together may differ: the
#: text side, its losses, its optimiser, where each variant writes. Everything else (backbone, input
#: size and transforms, dataset, split, shots, batch size, epochs, seed, data stream, precision) must agree
VARIANT_KEYS = (
    "TRAINER.NAME", "TRAINER.TEXTREFINER.", "TRAINER.COOP.N_CTX", "TRAINER.COOP.CSC", "TRAINER.COOP.CTX_INIT",
    "TRAINER.COOP.CLASS_TOKEN_POSITION", "TRAINER.COOP.TEXT_CHUNK_SIZE", "OPTIM.NAME", "OPTIM.LR",
    "OPTIM.WEIGHT_DECAY", "OPTIM.MOMENTUM", "OPTIM.SGD_", "OPTIM.RMSPROP_", "OPTIM.ADAM_", "OPTIM.STAGED_LR",
    "OPTIM.NEW_LAYERS", "OPTIM.BASE_LR_MULT", "OPTIM.LR_SCHEDULER", "OPTIM.STEPSIZE", "OPTIM.GAMMA",
    "OPTIM.WARMUP_", "OUTPUT_DIR", "MODEL.INIT_WEIGHTS", "RESUME", "TRAIN.CHECKPOINT_FREQ", "TRAIN.PRINT_FREQ",
    "TEST.FINAL_MODEL", "TRAIN.EXTEND_EPOCHS",
)
#: the key the shared path needs True in every variant
STREAM_KEY = "TRAIN.SEEDED_DATA_STREAM"


def flat(cfg, prefix: str = "") -> Dict[str, object]:
    """A config (or a nested dict) as ``{"A.B": value}``."""
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def is_variant_key(key: str) -> bool:
    return any(key == k or (k.endswith((".", "_")) and key.startswith(k)) for k in VARIANT_KEYS)


def unsharable(reference: Dict[str, object], other: Dict[str, object]) -> Optional[str]:
    """Why a run with the flat settings ``other`` cannot share the image tower with one with ``reference``
    (None: it can): a trainer prompts the image tower, or a key outside ``VARIANT_KEYS`` differs."""
    for settings in (reference, other):
        trainer = settings.get("TRAINER.NAME")
        if trainer not in SHARABLE_TRAINERS:
            return f"is {trainer}, whose image tower is prompted or per-image (only {', '.join(SHARABLE_TRAINERS)} share)"
    keys = sorted(k for k in set(reference) | set(other) if not is_variant_key(k) and reference.get(k) != other.get(k))
    if keys:
        shown = ", ".join(f"{k} {other.get(k)!r} (not {reference.get(k)!r})" for k in keys[:3])
        return f"differs in {shown}{' and more' if len(keys) > 3 else ''}, which one image tower pass cannot serve"
    return None


class SharedBuild:
    """What the variants' trainers share while they are built: the first one's CLIP (cast to the common
    precision) and data loaders; each later variant builds its own modules from the random state the
    first one had right after loading CLIP, which is the state an alone run builds them from."""

    DATA = ("train_loader_x", "train_loader_u", "val_loader", "test_loader", "num_classes",
            "num_source_domains", "lab2cname", "dm")

    def __init__(self):
        self.clip = None
        self.rng = None
        self.data = None

    def keep_clip(self, model) -> None:
        self.clip, self.rng = model, capture_rng_state()

    def reuse_clip(self):
        restore_rng_state(self.rng)
        return self.clip

    def keep_data(self, trainer) -> None:
        self.data = {name: getattr(trainer, name) for name in self.DATA}

    def reuse_data(self, trainer) -> None:
        for name, value in self.data.items():
            setattr(trainer, name, value)


class FeatureLoader:
    """An evaluation loader's batches with the images replaced by the image tower's global features,
    computed once (on the first pass) for every variant that iterates it."""

    def __init__(self, loader, encoder: ImageEncoder, precision, device):
        self.loader, self.encoder, self.precision, self.device = loader, encoder, precision, device
        self.batches: Optional[List[dict]] = None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        if self.batches is None:
            batches = []
            with torch.inference_mode(), self.precision.autocast():
                for batch in self.loader:
                    features = self.encoder(batch["img"].to(self.device)).global_feature
                    batches.append({"img": features, "label": batch["label"]})
            self.batches = batches
        return iter(self.batches)


@dataclass
class Variant:
    """One run of the group: its config, how it runs (trained, or evaluated: ``eval_only`` with the
    model in ``model_dir``), and ``out``, where its printed lines go (its log.txt)."""

    cfg: object
    out: TextIO
    eval_only: bool = False
    model_dir: str = ""
    load_epoch: Optional[int] = None
    trainer: Optional[PromptTrainer] = None
    error: str = ""
    meters: Tuple = field(default_factory=tuple)

    @property
    def name(self) -> str:
        return self.cfg.OUTPUT_DIR


def check_group(variants: Sequence[Variant]) -> None:
    """Refuse, in one line, a group whose variants cannot share (``unsharable``) or lack the data-stream key."""
    reference = flat(variants[0].cfg)
    for v in variants:
        if not v.cfg.TRAIN.SEEDED_DATA_STREAM:
            raise UserError(f"{v.name}: shared runs need {STREAM_KEY} True in every variant (the batches must "
                            "depend on the seed only); add it to the run's KEY VALUE overrides")
        why = unsharable(reference, flat(v.cfg))
        if why:
            raise UserError(f"{v.name} cannot share the image tower with {variants[0].name}: it {why}; run it alone")


def run_lockstep(variants: Sequence[Variant], say: Callable[[str], None] = print) -> List[Variant]:
    """Build, train (those not ``eval_only``) and evaluate ``variants``; returns those that failed
    (their ``error`` says why, their log has the traceback). ``say`` gets the group's progress lines."""
    check_group(variants)
    seed = variants[0].cfg.SEED
    build = PromptTrainer.shared_build = SharedBuild()
    try:
        for v in variants:
            if seed >= 0:  # what train.py does before building; later variants get the state after CLIP
                set_random_seed(seed)
            _guarded(v, lambda: setattr(v, "trainer", build_trainer(v.cfg)))
    finally:
        PromptTrainer.shared_build = None
    built = [v for v in variants if not v.error]
    if not built:
        return list(variants)
    first = built[0].trainer
    encoder = ImageEncoder(build.clip.visual)
    features = {id(loader): FeatureLoader(loader, encoder, first.precision, first.device)
                for loader in (first.test_loader, first.val_loader) if loader is not None}
    for v in built:
        t = v.trainer
        t.given_image_features = True
        t.test_loader = features[id(t.test_loader)]
        if t.val_loader is not None:
            t.val_loader = features[id(t.val_loader)]
    training = [v for v in built if not v.eval_only]
    say(f"{len(variants)} variant(s) built on one CLIP: {len(training)} to train, "
        f"{len(built) - len(training)} to evaluate")
    if training:
        _train(training, encoder, say)
    for v in built:
        if v.eval_only and not v.error:
            _guarded(v, lambda: _evaluate(v))
            say(f"evaluated {v.name}" if not v.error else f"FAILED {v.name}: {v.error}")
    return [v for v in variants if v.error]


def _guarded(v: Variant, action: Callable[[], object]) -> None:
    """Run ``action`` printing to ``v``'s log; an exception fails this variant only."""
    if v.error:
        return
    with contextlib.redirect_stdout(v.out):
        try:
            action()
        except (Exception, SystemExit) as e:  # one variant's failure must not stop the others
            traceback.print_exc(file=v.out)
            v.error = " ".join(str(e).split())[:300] or type(e).__name__
            print(f"Error: {v.error}")
    # the log file's buffer only: a Logger's own flush also syncs to disk, once per variant and batch here
    getattr(v.out, "file", v.out).flush()


def _evaluate(v: Variant) -> None:
    t = v.trainer
    if not v.model_dir and t.get_model_names():
        print(f"Warning: --eval-only without --model-dir evaluates an untrained {v.cfg.TRAINER.NAME} (its "
              "learnable parts at their initial values); result.json records \"untrained\": true")
        t.untrained = True
    t.load_model(v.model_dir, epoch=v.load_epoch)
    t.test()


def _train(training: List[Variant], encoder: ImageEncoder, say: Callable[[str], None]) -> None:
    """Dassl's train(): before_train (re-seeding, resuming) per variant; then the variants that start at
    the same epoch run their epochs together, from the random state their before_train left (the same
    for all of them: the seed's, or the one their checkpoints of that epoch saved)."""
    states = {}
    for v in training:
        _guarded(v, v.trainer.before_train)
        states[id(v)] = capture_rng_state()
    for start in sorted({v.trainer.start_epoch for v in training if not v.error}):
        members = [v for v in training if not v.error and v.trainer.start_epoch == start]
        restore_rng_state(states[id(members[0])])
        max_epoch = members[0].trainer.max_epoch
        if start:
            say(f"{len(members)} variant(s) resume at epoch {start + 1}")
        for epoch in range(start, max_epoch):
            _epoch(members, epoch, encoder)
            members = [v for v in members if not v.error]
            say(f"epoch {epoch + 1}/{max_epoch} done for {len(members)} variant(s)")
        for v in members:
            _guarded(v, v.trainer.after_train)
            say(f"finished {v.name}" if not v.error else f"FAILED {v.name}: {v.error}")


def _epoch(members: List[Variant], epoch: int, encoder: ImageEncoder) -> None:
    """One epoch of every variant in ``members`` on one pass over the shared training loader."""
    first = members[0].trainer
    loader = first.train_loader_x
    for v in members:
        t = v.trainer
        t.epoch, t.num_batches = epoch, len(loader)
        v.meters = (MetricMeter(), AverageMeter(), AverageMeter())
        _guarded(v, lambda: (t.before_epoch(), t.set_model_mode("train")))
    end = time.time()
    for batch_idx, batch in enumerate(loader):
        data_time = time.time() - end
        alive = [v for v in members if not v.error]
        if not alive:
            return
        image = batch["img"].to(first.device)
        with torch.no_grad(), first.precision.autocast():  # frozen and unprompted: no graph needed
            visual = encoder.forward_modes(image, sorted({v.trainer.needs_local_tokens for v in alive}))
        for v in alive:
            t = v.trainer
            t.batch_idx, t.given_visual = batch_idx, visual[t.needs_local_tokens]
            try:
                _guarded(v, lambda: _step(v, batch, data_time, end))
            finally:
                t.given_visual = None
        end = time.time()
    for v in members:
        _guarded(v, v.trainer.after_epoch)


def _step(v: Variant, batch: dict, data_time: float, start: float) -> None:
    """The body of TrainerX.run_epoch for one batch: the step, meters, the progress line, scalars."""
    t = v.trainer
    losses, batch_time, data = v.meters
    data.update(data_time)
    summary = t.forward_backward(batch)
    batch_time.update(time.time() - start)
    losses.update(summary)
    freq = t.cfg.TRAIN.PRINT_FREQ
    if (t.batch_idx + 1) % freq == 0 or t.num_batches < freq:
        print(f"epoch [{t.epoch + 1}/{t.max_epoch}] batch [{t.batch_idx + 1}/{t.num_batches}] "
              f"time {batch_time.val:.3f} ({batch_time.avg:.3f}) data {data.val:.3f} ({data.avg:.3f}) "
              f"{losses} lr {t.get_current_lr():.4e} (image tower shared)")
    n_iter = t.epoch * t.num_batches + t.batch_idx
    for name, meter in losses.meters.items():
        t.write_scalar("train/" + name, meter.avg, n_iter)
    t.write_scalar("train/lr", t.get_current_lr(), n_iter)
