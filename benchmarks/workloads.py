"""What the benchmark runs: the project's own trainers built without a dataset, synthetic
batches, and the meters (time, peak memory, time per phase, data loading).

Trainers are built by their own ``build_model`` (host, TextRefiner head, freezing,
optimizers from the shipped config) on ONE shared CLIP, and trained by their own
``forward_backward``, so the step measured is the step ``train.py`` runs, minus data loading.
"""
import io
import os
import random
import sys
import time
from collections import defaultdict
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List

import torch

from textrefiner.config import get_cfg
from textrefiner.framework import TRAINER_REGISTRY, TrainerBase, build_transform
from textrefiner.precision import Precision

from .release_style import make_release_style, release_eval_batch

REPO = Path(__file__).resolve().parents[1]
CONFIG = "vit_b16_ep10_ctxv1.yaml"  # the shipped CoOp / CoOp_TextRefiner configs ("a photo of a", SGD)
MAPLE_CONFIG = "vit_b16_c2_ep5_batch4_2ctx.yaml"  # the shipped MaPLe / MaPLe_TextRefiner base-to-novel configs

# Common one-token words for synthetic class names.
WORDS = (
    "red blue green small large old young wild black white striped spotted house sea river mountain "
    "dog cat bird fish horse car truck boat plane train tree flower leaf stone bridge tower garden "
    "kitchen table chair lamp clock phone guitar piano ball shoe hat coat bag cup bottle bread apple"
).split()


@dataclass(frozen=True)
class Variant:
    label: str
    trainer: str  # registered trainer name
    release_style: bool = False
    chunk_size: int = 0  # TRAINER.COOP.TEXT_CHUNK_SIZE and TRAINER.MAPLE.TEXT_CHUNK_SIZE
    config: str = CONFIG  # file name under configs/trainers/<trainer>/


COOP = Variant("CoOp", "CoOp")
REFINER = Variant("CoOp_TextRefiner", "CoOp_TextRefiner")
RELEASE = Variant("CoOp_TextRefiner, release-style", "CoOp_TextRefiner", release_style=True)
MAPLE = Variant("MaPLe", "MaPLe", config=MAPLE_CONFIG)
MAPLE_REFINER = Variant("MaPLe_TextRefiner", "MaPLe_TextRefiner", config=MAPLE_CONFIG)


def class_names(count: int, max_words: int, seed: int = 0) -> List[str]:
    """``count`` distinct names of 1..max_words words (the first one has ``max_words``)."""
    rng = random.Random(seed)
    names = []
    while len(names) < count:
        n_words = max_words if not names else rng.randint(1, max_words)
        name = " ".join(rng.choice(WORDS) for _ in range(n_words)) + f" {len(names)}"
        names.append(name)
    return names


def make_cfg(variant: Variant, backbone: str, prec: str, layers: int = 0):
    """The variant's shipped config on ``backbone``; ``layers``: the backbone's transformer depth,
    which caps MaPLe's prompt depth (9 in the config; the tiny test CLIP has fewer blocks)."""
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / "trainers" / variant.trainer / variant.config))
    cfg.MODEL.BACKBONE.NAME = backbone
    cfg.TRAINER.NAME = variant.trainer
    cfg.TRAINER.COOP.PREC = cfg.TRAINER.MAPLE.PREC = cfg.TRAINER.COCOOP.PREC = prec
    cfg.TRAINER.COOP.TEXT_CHUNK_SIZE = cfg.TRAINER.MAPLE.TEXT_CHUNK_SIZE = variant.chunk_size
    if layers:
        cfg.TRAINER.MAPLE.PROMPT_DEPTH = min(cfg.TRAINER.MAPLE.PROMPT_DEPTH, layers)
    cfg.freeze()
    return cfg


def build_trainer(variant: Variant, clip_model, backbone: str, classnames: List[str], device: torch.device, prec: str):
    """The registered trainer, built by its own ``build_model`` on ``clip_model``, without data.

    Only the framework's ``TrainerBase`` state is initialised (registered models,
    optimizers, schedulers); the data manager is a stand-in holding the class names.
    """
    cls = TRAINER_REGISTRY.get(variant.trainer)
    trainer = cls.__new__(cls)
    TrainerBase.__init__(trainer)
    layers = min(clip_model.transformer.layers, clip_model.visual.transformer.layers)
    trainer.cfg = make_cfg(variant, backbone, prec, layers)
    trainer.device = device
    trainer.dm = SimpleNamespace(dataset=SimpleNamespace(classnames=list(classnames)))
    trainer.precision = Precision(prec, device)
    trainer.load_clip = lambda: clip_model
    with redirect_stdout(io.StringIO()):
        trainer.build_model()
    trainer.batch_idx, trainer.num_batches = 0, sys.maxsize  # never the epoch's last batch: no lr step
    if variant.release_style:
        make_release_style(trainer, clip_model)
    return trainer


def synthetic_batch(size: int, n_classes: int, resolution: int, device: torch.device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "img": torch.randn(size, 3, resolution, resolution, generator=g).to(device),
        "label": torch.randint(n_classes, (size,), generator=g).to(device),
    }


def train_step(trainer, batch: dict) -> None:
    trainer.set_model_mode("train")
    trainer.forward_backward(batch)


def eval_text_features(trainer) -> torch.Tensor:
    """Once per evaluation, as ``PromptTrainer.test`` does it."""
    trainer.set_model_mode("eval")
    with torch.inference_mode(), trainer.precision.autocast():
        return trainer.classifier_text_features()


def eval_batch(variant: Variant, trainer, image: torch.Tensor, text_features: torch.Tensor) -> None:
    """One test batch: ours reuses ``text_features``; the release-style variant recomputes them."""
    trainer.set_model_mode("eval")
    if variant.release_style:
        release_eval_batch(trainer, image)
        return
    with torch.inference_mode(), trainer.precision.autocast():
        trainer.model(image, text_features=text_features)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


# ------------------------------------------------------------------------- memory
CPU_MEMORY_METHOD = (
    "peak resident memory during one training step minus the resident memory just before it "
    "(Linux VmHWM, reset through /proc/self/clear_refs), measured in a separate process whose "
    "glibc mmap threshold is fixed at 64 KiB so that freed tensors go back to the OS"
)
CUDA_MEMORY_METHOD = "torch.cuda.max_memory_allocated during one training step minus memory allocated before it"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory ``fn`` adds above what is in use when it starts, in MiB."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    before = _status_kb("VmRSS")
    fn()
    return (_status_kb("VmHWM") - before) / 1024


def cpu_memory_supported() -> bool:
    return os.path.exists("/proc/self/clear_refs") and os.access("/proc/self/clear_refs", os.W_OK)


# ------------------------------------------------------------------------ profile
class PhaseTimer:
    """Wall time spent inside chosen callables, summed per label (synchronised on CUDA)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.totals: Dict[str, float] = defaultdict(float)
        self._backward_start = 0.0

    def wrap(self, owner, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            synchronize(self.device)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                synchronize(self.device)
                self.totals[label] += time.perf_counter() - start

        setattr(owner, attribute, timed)

    def time_backward_of(self, module: torch.nn.Module, label: str) -> None:
        """Time from the gradient reaching ``module``'s output to its input gradient being done."""

        def started(*_):
            self._backward_start = time.perf_counter()

        def finished(*_):
            self.totals[label] += time.perf_counter() - self._backward_start

        module.register_full_backward_pre_hook(started)
        module.register_full_backward_hook(finished)


PHASES = (
    "image encoder forward (last-block tokens + CLS attention)",
    "prompt learner forward",
    "text encoder forward",
    "TextRefiner head forward (cache read, aggregation, alignment, losses, cache update)",
    "  of which cache update",
    "backward",
    "  of which text encoder",
    "optimizer step",
)
OTHER, TOTAL = "other (logits, cross-entropy, zero_grad, loss read-out)", "total step"


def profile_textrefiner_step(trainer, batch: dict, device: torch.device) -> Dict[str, float]:
    """Seconds per phase (``PHASES``, then OTHER and TOTAL) of one CoOp_TextRefiner training step.

    Instruments the trainer for good: profile a trainer that is not timed afterwards.
    """
    timer = PhaseTimer(device)
    model, refiner = trainer.model, trainer.refiner
    image, prompts, text, head, cache, backward, text_backward, step = PHASES
    timer.wrap(model, "encode_image", image)
    timer.wrap(model.prompt_learner, "forward", prompts)
    timer.wrap(model.text_encoder, "forward", text)
    timer.wrap(refiner, "forward", head)
    timer.wrap(refiner.cache, "update", cache)
    timer.wrap(trainer.precision, "backward", backward)
    timer.time_backward_of(model.text_encoder, text_backward)
    timer.wrap(trainer.precision, "step", step)
    total = seconds(lambda: train_step(trainer, batch), device)
    phases = {label: timer.totals.get(label, 0.0) for label in PHASES}
    phases[OTHER] = total - sum(t for label, t in phases.items() if not label.startswith(" "))
    phases[TOTAL] = total
    return phases


def data_loading_seconds(variant: Variant, backbone: str, batch: int, seed: int = 0) -> float:
    """JPEG decoding + the config's training transforms for one batch, in one worker."""
    from PIL import Image

    with redirect_stdout(io.StringIO()):
        transform = build_transform(make_cfg(variant, backbone, "fp32"), is_train=True)
    g = torch.Generator().manual_seed(seed)
    files = []
    for _ in range(batch):
        # Smooth content (upsampled noise) compresses like a photograph; 500x375 is a typical size.
        small = (torch.rand(3, 24, 32, generator=g) * 255).byte().permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(small).resize((500, 375), Image.BICUBIC).save(buffer, format="JPEG", quality=90)
        files.append(buffer.getvalue())
    start = time.perf_counter()
    for data in files:
        transform(Image.open(io.BytesIO(data)).convert("RGB"))
    return time.perf_counter() - start
