"""One trainer in one precision, end to end: train a few steps, save, load, evaluate.

The trainer is built in-process exactly as ``train.py`` builds it (the framework's
``build_trainer`` on a config merged from the shipped YAMLs, seed first), on the
Synthetic dataset, and stepped by its own ``forward_backward`` on batches drawn once
for every trainer and precision, so that precisions differ only in their numerics.
The evaluation is the trainer's own ``test`` loop; its logits are captured per batch.
"""
import copy
import io
import math
import statistics
import tempfile
import traceback
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

import textrefiner.trainers.base as trainer_base
from textrefiner.config import get_cfg
from textrefiner.framework import TRAINER_REGISTRY, DataManager, build_trainer, set_random_seed

from . import rounding
from .workloads import peak_memory_mb, seconds

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC_YAML = REPO / "configs" / "datasets" / "synthetic.yaml"
NEVER_LAST_BATCH = 1 << 30  # batch count that keeps step_lr_at_epoch_end from stepping the schedule
#: the two ways a row's logits are held against fp32's: a fixed tolerance on the whole difference
#: (CUDA: its kernels are the ones our users train with), or ``rounding``'s bounds on its two parts
#: (CPU: what holds on any CPU, with or without native bf16)
TOLERANCE, BOUNDS = "tolerance", "rounding bounds"


@dataclass(frozen=True)
class TrainerSpec:
    """A row of the check: a registered trainer name, its config under configs/trainers/, extra opts.

    ``{student}`` and ``{teacher}`` in opts stand for the check's backbones (``random:ViT-B/16``
    and ``random:ViT-L/14``, ``random:tiny`` for both in quick mode); ``quick_opts`` apply in
    quick mode only (the tiny CLIP has 2 blocks, fewer than the prompt depths of the configs).
    """

    name: str
    config: str
    opts: Sequence = ()
    quick_opts: Sequence = ()
    train: bool = True  # False: evaluation only (nothing is trained or saved)


TEACHER = ("TRAINER.PROMPTKD.TEACHER_NAME", "{teacher}")
ON_TEACHER = ("MODEL.BACKBONE.NAME", "{teacher}")
MAPLE_DEPTH = ("TRAINER.MAPLE.PROMPT_DEPTH", 2)
PROMPTKD_QUICK = ("TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", 2, "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_TEXT", 2,
                  "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_VISION", 2, "TRAINER.PROMPTKD.TEACHER_NAME", "random:tiny-wide")
# the check needs no teacher file: the teacher's prompts are drawn from a fixed seed
PROMPTKD_OFFLINE = ("TRAINER.PROMPTKD.TEACHER_PROMPTS", "init")
IVLP_QUICK = ("TRAINER.IVLP.PROMPT_DEPTH_TEXT", 2, "TRAINER.IVLP.PROMPT_DEPTH_VISION", 2)
PROMPTSRC_QUICK = ("TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2)

# Every trainer the check covers. One not registered (yet) is reported as such and skipped.
TRAINERS = (
    TrainerSpec("CoOp", "CoOp/vit_b16_ep10_ctxv1.yaml"),
    TrainerSpec("CoOp_TextRefiner", "CoOp_TextRefiner/vit_b16_ep10_ctxv1.yaml"),
    TrainerSpec("CoCoOp", "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"),
    TrainerSpec("CoCoOp_TextRefiner", "CoCoOp_TextRefiner/vit_b16_c4_ep10_batch1_ctxv1.yaml"),
    TrainerSpec("MaPLe", "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", quick_opts=MAPLE_DEPTH),
    TrainerSpec("MaPLe_TextRefiner", "MaPLe_TextRefiner/vit_b16_c2_ep5_batch4_2ctx.yaml", quick_opts=MAPLE_DEPTH),
    TrainerSpec("ZeroshotCLIP", "CoOp/vit_b16_ep10_ctxv1.yaml", train=False),
    TrainerSpec("PromptKD", "PromptKD/vit_b16_c2_ep20_batch8_4+4ctx.yaml", TEACHER + PROMPTKD_OFFLINE,
                quick_opts=PROMPTKD_QUICK),
    TrainerSpec("PromptKD_TextRefiner", "PromptKD_TextRefiner/vit_b16_c2_ep20_batch8_4+4ctx.yaml",
                TEACHER + PROMPTKD_OFFLINE, quick_opts=PROMPTKD_QUICK),
    # the teacher trainers on the teacher's backbone: PromptKD's IVLP teacher config and PromptSRC's
    TrainerSpec("IVLP", "IVLP/vit_b16_c2_ep20_batch8_4+4ctx.yaml", ON_TEACHER, quick_opts=IVLP_QUICK),
    TrainerSpec("PromptSRC", "PromptSRC/vit_l14_c2_ep20_batch8_4+4ctx.yaml", ON_TEACHER, quick_opts=PROMPTSRC_QUICK),
    TrainerSpec("PromptSRC_TextRefiner", "PromptSRC_TextRefiner/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
                quick_opts=PROMPTSRC_QUICK),
)


def base_opts(settings) -> List:
    """Opts every row shares. No warm-up: the configs' first epoch runs at lr 1e-5, which leaves
    fp16 prompts unchanged after a few steps; the check wants the configured lr's updates."""
    return [
        "MODEL.BACKBONE.NAME", settings.student,
        "USE_CUDA", settings.device.type == "cuda",
        "DATALOADER.NUM_WORKERS", 0,
        "DATALOADER.TRAIN_X.BATCH_SIZE", settings.batch,
        "DATALOADER.TEST.BATCH_SIZE", settings.test_batch,
        "OPTIM.WARMUP_EPOCH", 0,
    ]


def make_cfg(spec: TrainerSpec, prec: str, settings, output_dir: str):
    cfg = get_cfg()
    cfg.merge_from_file(str(SYNTHETIC_YAML))
    cfg.merge_from_file(str(REPO / "configs" / "trainers" / spec.config))
    cfg.DATASET.ROOT = settings.root
    cfg.OUTPUT_DIR = output_dir
    cfg.SEED = settings.seed
    cfg.TRAINER.NAME = spec.name
    host_key = getattr(TRAINER_REGISTRY.get(spec.name), "host_key", "COOP")
    opts = [*base_opts(settings), f"TRAINER.{host_key}.PREC", prec, *spec.opts]
    if settings.quick:
        opts += list(spec.quick_opts)
    backbones = dict(student=settings.student, teacher=settings.teacher)
    cfg.merge_from_list([str(x).format(**backbones) for x in opts])
    cfg.freeze()
    return cfg


def skip_reason(spec: TrainerSpec) -> str:
    if spec.name not in TRAINER_REGISTRY.registered_names():
        return "not registered"
    if not (REPO / "configs" / "trainers" / spec.config).is_file():
        return f"config configs/trainers/{spec.config} missing"
    return ""


@contextmanager
def shared_clip_loading():
    """Random CLIPs are the same in every build (fixed init seed): build each backbone once, copy it after."""
    cache: Dict[tuple, torch.nn.Module] = {}
    original = trainer_base.load_clip

    def cached(name, path=""):
        if (name, path) not in cache:
            cache[(name, path)] = original(name, path)
        return copy.deepcopy(cache[(name, path)])

    trainer_base.load_clip = cached
    try:
        yield
    finally:
        trainer_base.load_clip = original


def build(cfg, log: io.StringIO):
    """The trainer as train.py builds it (seed first); its prints go to ``log``."""
    with redirect_stdout(log), redirect_stderr(log):
        set_random_seed(cfg.SEED)
        return build_trainer(cfg)


def draw_batches(settings) -> tuple:
    """``settings.steps`` training batches (training transforms) and the first ``settings.eval_images``
    test images (test transforms) of Synthetic, on the CPU: decoded once for every row."""
    with tempfile.TemporaryDirectory() as out:
        cfg = make_cfg(TRAINERS[0], "fp32", settings, out)
        with redirect_stdout(io.StringIO()):
            set_random_seed(cfg.SEED)
            dm = DataManager(cfg)
    train = iter(dm.train_loader_x)
    train_batches = [next(train) for _ in range(settings.steps)]
    test_batches, count = [], 0
    for batch in dm.test_loader:
        if count >= settings.eval_images:
            break
        keep = settings.eval_images - count
        test_batches.append({k: v[:keep] for k, v in batch.items()})
        count += len(test_batches[-1]["img"])
    return train_batches, test_batches


def trainable_state(trainer) -> Dict[str, torch.Tensor]:
    """Float tensors of the modules an optimizer updates (not, e.g., PromptSRC's ``gpa`` running sums,
    which change at epoch ends only; not a module's extra state such as PromptKD's class names)."""
    return {
        f"{name}.{key}": value.detach().float().cpu().clone()
        for name in trainer.get_model_names()
        if trainer._optims[name] is not None
        for key, value in trainer._models[name].state_dict().items()
        if torch.is_tensor(value) and value.is_floating_point()
    }


def evaluate(trainer, test_batches: List[dict], log: io.StringIO):
    """The trainer's own test loop over ``test_batches``; returns (logits, accuracy %)."""
    trainer.test_loader = test_batches
    captured = []
    original = trainer.model_inference

    def capture(image):
        output = original(image)
        captured.append(output.detach().float().cpu())
        return output

    trainer.model_inference = capture
    try:
        with redirect_stdout(log), redirect_stderr(log):
            accuracy = trainer.test("test")
    finally:
        del trainer.model_inference
    return torch.cat(captured), float(accuracy)


def images_per_second(trainer, batch: int, device: torch.device, rounds: int) -> float:
    """Inference throughput at a large batch: text features once, then the image side (the paper's Fig. 3)."""
    size = trainer.cfg.INPUT.SIZE
    image = torch.randn(batch, 3, size[0], size[1], device=device)
    trainer.set_model_mode("eval")
    with torch.inference_mode():
        with trainer.precision.autocast():
            trainer._eval_text_features = trainer.classifier_text_features()
        try:
            seconds(lambda: trainer.model_inference(image), device)  # warm-up: kernels, autotuning
            times = [seconds(lambda: trainer.model_inference(image), device) for _ in range(rounds)]
        finally:
            trainer._eval_text_features = None
    return batch / statistics.median(times)


def logit_scale(trainer) -> float:
    """exp(logit_scale) of the model, the unit of a cosine similarity in its logits."""
    for name, tensor in list(trainer.model.named_parameters()) + list(trainer.model.named_buffers()):
        if name.split(".")[-1] == "logit_scale":
            return float(tensor.detach().float().exp())
    return 1.0


def train_steps(trainer, batches: List[dict], device: torch.device, row: dict) -> None:
    """The trainer's own steps on the shared batches; the last one also under the peak-memory meter."""
    times, losses = [], []
    for i, batch in enumerate(batches):
        trainer.set_model_mode("train")
        trainer.batch_idx, trainer.num_batches = i, NEVER_LAST_BATCH

        def step(batch=batch):
            losses.append(trainer.forward_backward(batch))

        if i == len(batches) - 1 and device.type == "cuda":
            row["peak_step_mb"] = peak_memory_mb(step, device)
        else:
            times.append(seconds(step, device))
    row["losses"] = losses
    row["losses_finite"] = all(math.isfinite(v) for step in losses for v in step.values())
    # the first step pays for lazy initialisation (kernels, autotuning, allocator)
    row["step_s"] = statistics.median(times[1:] or times) if times else None
    scaler = getattr(trainer.precision, "scaler", None)
    if scaler is not None:
        row["grad_scale"] = float(scaler.get_scale())


def moved(before: Dict[str, torch.Tensor], after: Dict[str, torch.Tensor]) -> dict:
    """Which trainable tensors changed; every registered module must have one, every cache must change."""
    changed = {k: not torch.equal(before[k], after[k]) for k in before}
    modules = {k.split(".", 1)[0] for k in changed}
    per_module = {m: sum(v for k, v in changed.items() if k.startswith(m + ".")) for m in sorted(modules)}
    cache = {k: v for k, v in changed.items() if "cache" in k.lower()}
    return dict(
        moved_per_module=per_module,
        unchanged_modules=[m for m, n in per_module.items() if n == 0],
        prompts_moved=bool(per_module) and all(per_module.values()),
        cache_moved=all(cache.values()) if cache else None,
    )


def compare(logits: torch.Tensor, reference: torch.Tensor, scale: float, tolerance: float) -> dict:
    """Logits against fp32's after the same steps. The criterion is relative to the spread of fp32's
    logits (what decides predictions); also in cosine units (|diff| / logit scale)."""
    diff = float((logits - reference).abs().max())
    spread = float(reference.max() - reference.min())
    relative = diff / spread if spread else float("inf")
    agree = float((logits.argmax(1) == reference.argmax(1)).float().mean())
    return dict(max_abs_diff=diff, max_cosine_diff=diff / scale, logit_spread=spread, relative_diff=relative,
                prediction_agreement=agree, tolerance=tolerance, within_tolerance=relative <= tolerance)


@dataclass(frozen=True)
class Reference:
    """fp32's logits on the check's test images: after the steps, and before any (None: nothing trains)."""

    trained: torch.Tensor
    untrained: Optional[torch.Tensor]


def check(spec: TrainerSpec, prec: str, settings, batches: tuple, reference: Optional[Reference]) -> tuple:
    """One row of the table, and, for fp32 (``reference`` None), the ``Reference`` of the other rows.
    Never raises."""
    row = dict(trainer=spec.name, prec=prec, config=spec.config, train=spec.train)
    batches, test_batches = batches
    log = io.StringIO()
    made = None
    try:
        with tempfile.TemporaryDirectory() as out, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cfg = make_cfg(spec, prec, settings, out)
            trainer = build(cfg, log)
            row["prec_ran"] = trainer.precision.name
            row["device"] = str(trainer.device)
            if spec.train:
                before = trainable_state(trainer)
                train_steps(trainer, batches, settings.device, row)
                row.update(moved(before, trainable_state(trainer)))
                trainer.save_model(len(batches) - 1, out)  # writes model.pth.tar-<steps>
            logits, row["accuracy"] = evaluate(trainer, test_batches, log)
            row["logits_finite"] = bool(torch.isfinite(logits).all())
            row["images_per_s"] = images_per_second(trainer, settings.throughput_batch, settings.device,
                                                    settings.throughput_rounds)
            scale = logit_scale(trainer)
            del trainer
            if spec.train:
                reloaded = build(cfg, log)
                reloaded.load_model(out, len(batches))
                again, _ = evaluate(reloaded, test_batches, log)
                row["reload_equal"] = torch.equal(again, logits)
                row["reload_max_abs_diff"] = float((again - logits).abs().max())
                del reloaded
            fp32_cfg = make_cfg(spec, "fp32", settings, out)
            if reference is None:
                untrained = evaluate(build(fp32_cfg, log), test_batches, log)[0] if spec.train else None
                made = Reference(logits, untrained)
            else:
                # the row's own weights evaluated in fp32: its forward rounding apart from its trajectory
                same_weights = build(fp32_cfg, log)
                if spec.train:
                    same_weights.load_model(out, len(batches))
                same_weights_fp32, _ = evaluate(same_weights, test_batches, log)
                del same_weights
                row["vs_fp32"] = compare(logits, reference.trained, scale, settings.tolerances[prec])
                row["vs_fp32"].update(rounding.split(row["prec_ran"], scale, logits, same_weights_fp32,
                                                     reference.trained, reference.untrained))
                row["vs_fp32"]["criterion"] = settings.criterion
            row["warnings"] = sorted({str(w.message) for w in caught if "PREC" in str(w.message)})
    except Exception as e:  # one broken row must not cost the rest of a scarce GPU window
        row["error"] = f"{type(e).__name__}: {e}"
        row["traceback"] = traceback.format_exc()[-4000:]
        row["log_tail"] = log.getvalue()[-2000:]
    return row, made


def passed(row: dict) -> bool:
    """Every check of a row holds (rows skipped by design pass; errors do not)."""
    if row.get("skipped"):
        return True
    if row.get("error"):
        return False
    ok = row["logits_finite"]
    if row["train"]:
        ok = ok and row["losses_finite"] and row["prompts_moved"] and row["cache_moved"] is not False
        ok = ok and row["reload_equal"]
    if "vs_fp32" in row:
        vs = row["vs_fp32"]
        ok = ok and (vs["within_bounds"] if vs.get("criterion") == BOUNDS else vs["within_tolerance"])
    return bool(ok)
