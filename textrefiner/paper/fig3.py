"""Figure 3 of the paper: evaluation images/s of every method, with and without TextRefiner.

What is measured is this project's evaluation (``PromptTrainer.test``): the classifier's text
features computed ONCE per evaluation (``classifier_text_features``: for a TextRefiner trainer that
includes the refinement from the frozen cache), then every test batch through ``model_inference``.
The paper's figure is "inference images/s on ImageNet", i.e. the whole test set evaluated, so the
once-per-evaluation text cost is amortised over ImageNet's 50,000 test images:

    images/s = 50000 / (text_once + n_batches * per_batch),  n_batches = ceil(50000 / batch)

Both parts are timed separately: warm-up rounds, then the fastest of the timed rounds, the methods
interleaved round by round, all in one process on one device (CUDA is synchronised around each
timing). The fastest, not the median: noise from the rest of the machine only ever adds time, and on
a shared 2-core machine the median of 3 rounds still put methods with identical computation 10-25%
apart. Trainers are built by their own ``build_model`` from their shipped ViT-B/16 configs on one
shared CLIP, without data (a stand-in data manager holding the class names):

* PromptSRC at evaluation is its IVLP model (``PromptSRCCLIP`` adds only training targets: the
  frozen 60-template text features), so its row is IVLP built with PromptSRC's prompt design;
* PromptKD at evaluation is the student: the teacher's text features are stored in it (here random
  unit vectors of the teacher's width; evaluation never runs the teacher);
* CoCoOp computes every image's own class prompts (no text features shared by a batch): on a CPU its
  per-batch time is measured on a few images and scaled to the batch (linear: one text-tower pass of
  all classes per image), and the row says so.

Worlds: ``paper`` (``random:ViT-B/16``: the architecture of the paper, random weights; speed does not
depend on the weights), ``testbed`` (the shipped testbed CLIP, 64 x 64 images) or any backbone name
(``ViT-B/16`` for OpenAI's weights). Both named worlds evaluate ImageNet's 1000 classes (synthetic
one-to-three-word names) in batches of 100, the ``DATALOADER.TEST.BATCH_SIZE`` of the CoOp-family
configs (Dassl's own default is 32); the testbed world thus differs from the paper's only in the CLIP.
``quick`` (CI): 100 classes, batches of 10.
"""
import csv
import io
import math
import os
import os.path as osp
import platform
import random
import time
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from textrefiner.backbones.resolver import embed_dim, load_clip
from textrefiner.config import get_cfg
from textrefiner.errors import UserError
from textrefiner.framework import TRAINER_REGISTRY, TrainerBase
from textrefiner.precision import Precision
from textrefiner.resources import config_path
from textrefiner.results.paper import PAPER_FILE
from textrefiner.run_config import register_plugins

#: Figure 3's methods, in the figure's order
METHODS = ("ZeroshotCLIP", "CoOp", "CoOp_TextRefiner", "CoCoOp", "CoCoOp_TextRefiner", "MaPLe", "MaPLe_TextRefiner",
           "PromptSRC", "PromptKD", "PromptKD_TextRefiner")
#: method -> (registered trainer built, shipped config under configs/trainers/<config trainer>/)
CONFIGS = {
    "ZeroshotCLIP": ("ZeroshotCLIP", "ZeroshotCLIP", "vit_b16.yaml"),
    "CoOp": ("CoOp", "CoOp", "vit_b16_ep10_ctxv1.yaml"),
    "CoOp_TextRefiner": ("CoOp_TextRefiner", "CoOp_TextRefiner", "vit_b16_ep10_ctxv1.yaml"),
    "CoCoOp": ("CoCoOp", "CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1.yaml"),
    "CoCoOp_TextRefiner": ("CoCoOp_TextRefiner", "CoCoOp_TextRefiner", "vit_b16_c4_ep10_batch1_ctxv1.yaml"),
    "MaPLe": ("MaPLe", "MaPLe", "vit_b16_c2_ep5_batch4_2ctx.yaml"),
    "MaPLe_TextRefiner": ("MaPLe_TextRefiner", "MaPLe_TextRefiner", "vit_b16_c2_ep5_batch4_2ctx.yaml"),
    "PromptSRC": ("IVLP", "PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx.yaml"),
    "PromptKD": ("PromptKD", "PromptKD", "vit_b16_c2_ep20_batch8_4+4ctx.yaml"),
    "PromptKD_TextRefiner": ("PromptKD_TextRefiner", "PromptKD_TextRefiner", "vit_b16_c2_ep20_batch8_4+4ctx.yaml"),
}
#: methods whose text side depends on the image (no text features shared by a batch)
IMAGE_CONDITIONED = ("CoCoOp", "CoCoOp_TextRefiner")
#: PromptSRC's keys that make its evaluated (IVLP) model
IVLP_KEYS = ("N_CTX_VISION", "N_CTX_TEXT", "CTX_INIT", "PREC", "PROMPT_DEPTH_VISION", "PROMPT_DEPTH_TEXT",
             "TEXT_CHUNK_SIZE")
DEPTH_KEYS = ("PROMPT_DEPTH", "PROMPT_DEPTH_VISION", "PROMPT_DEPTH_TEXT")
TR_SUFFIX = "_TextRefiner"

WORLDS = {"paper": "random:ViT-B/16", "testbed": "testbed"}
#: the student backbone -> PromptKD's teacher (whose width the stored teacher features have)
TEACHERS = {"random:ViT-B/16": "random:ViT-L/14", "ViT-B/16": "ViT-L/14"}
IMAGENET_CLASSES = 1000
IMAGENET_TEST_IMAGES = 50000
PAPER_BATCH = 100  # DATALOADER.TEST.BATCH_SIZE of the CoOp-family configs
PAPER_DEVICE = "one NVIDIA A800"
FILES = ("fig3.md", "fig3.csv", "fig3.png")
CSV_FIELDS = ("method", "images_per_s", "per_batch_s", "text_s", "classes", "batch", "timed_images", "test_images",
              "device", "precision", "backbone", "world", "quick", "warmup", "repeats", "note", "paper_images_per_s")

WORDS = (
    "red blue green small large old young wild black white striped spotted house sea river mountain dog cat "
    "bird fish horse car truck boat plane train tree flower leaf stone bridge tower garden kitchen table chair "
    "lamp clock phone guitar piano ball shoe hat coat bag cup bottle bread apple"
).split()


@dataclass(frozen=True)
class Setting:
    world: str
    backbone: str
    teacher: str
    classes: int
    batch: int
    conditioned_images: int  # images timed per batch for an image-conditioned method (scaled to ``batch``)
    warmup: int
    repeats: int
    quick: bool


def setting(world: str, quick: bool, device: torch.device) -> Setting:
    backbone = WORLDS.get(world, world)
    classes, batch = (100, 10) if quick else (IMAGENET_CLASSES, PAPER_BATCH)
    conditioned = batch if device.type == "cuda" and not quick else 1
    return Setting(world, backbone, TEACHERS.get(backbone, backbone), classes, batch, conditioned,
                   warmup=1, repeats=3 if quick else 5, quick=quick)


def class_names(count: int, seed: int = 0) -> List[str]:
    """``count`` distinct names of one to three common words, as ImageNet's are."""
    rng, names = random.Random(seed), {}
    while len(names) < count:
        names.setdefault(" ".join(rng.sample(WORDS, rng.choice((1, 2, 2, 3)))), None)
    return list(names)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    if osp.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    threads = torch.get_num_threads()
    return f"CPU ({model}, {threads} thread{'' if threads == 1 else 's'})"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(fn, device: torch.device):
    _synchronize(device)
    start = time.perf_counter()
    out = fn()
    _synchronize(device)
    return time.perf_counter() - start, out


def _effective_precision(prec: str, device: torch.device) -> str:
    with warnings.catch_warnings():  # fp16/amp on a CPU run in fp32: the row says fp32
        warnings.simplefilter("ignore")
        return Precision(prec, device).name


def method_cfg(method: str, s: Setting, layers: int, precision: Optional[str]):
    """The method's shipped config on the world's backbone (prompt depths capped by its layers)."""
    trainer, config_trainer, config = CONFIGS[method]
    cfg = get_cfg()
    cfg.merge_from_file(config_path("trainers", config_trainer, config))
    cfg.MODEL.BACKBONE.NAME = s.backbone
    cfg.DATASET.NAME = "ImageNet"
    cfg.TRAINER.NAME = trainer
    if method == "PromptSRC":
        for key in IVLP_KEYS:
            cfg.TRAINER.IVLP[key] = cfg.TRAINER.PROMPTSRC[key]
    if trainer.startswith("PromptKD"):
        cfg.TRAINER.PROMPTKD.TEACHER_NAME = s.teacher
    host = cfg.TRAINER[TRAINER_REGISTRY.get(trainer).host_key]
    for key in DEPTH_KEYS:
        if key in host:
            host[key] = min(host[key], layers)
    if precision:
        host.PREC = precision
    cfg.freeze()
    return cfg


def build(cfg, clip_model, names: Sequence[str], device: torch.device):
    """The method's registered trainer built by its own ``build_model`` on ``clip_model``, without data."""
    cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    trainer = cls.__new__(cls)
    TrainerBase.__init__(trainer)
    trainer.cfg, trainer.device = cfg, device
    trainer.dm = SimpleNamespace(dataset=SimpleNamespace(classnames=list(names)))
    trainer.train_classnames = trainer.eval_classnames = list(names)  # PromptKD's
    trainer._eval_text_features, trainer.loaded_from = None, ("", None)
    trainer.precision = Precision(_effective_precision(trainer.host_cfg.PREC, device), device)
    trainer.load_clip = lambda: clip_model
    with redirect_stdout(io.StringIO()):
        trainer.build_model()
    if hasattr(trainer.model, "teacher_text"):  # PromptKD: the teacher's features, as the student holds them
        g = torch.Generator().manual_seed(0)
        features = torch.randn(len(names), embed_dim(cfg.TRAINER.PROMPTKD.TEACHER_NAME), generator=g)
        trainer.model.teacher_text.store(names, features / features.norm(dim=-1, keepdim=True))
    trainer.set_model_mode("eval")
    return trainer


def _text_once(trainer):
    with torch.inference_mode(), trainer.precision.autocast():
        return trainer.classifier_text_features()


def _batch(trainer, image: torch.Tensor, text) -> None:
    trainer._eval_text_features = text
    with torch.inference_mode():
        trainer.model_inference(image)


def measure(world: str, device: Optional[str] = None, quick: bool = False, methods: Optional[Sequence[str]] = None,
            precision: Optional[str] = None) -> List[dict]:
    """One row per method: evaluation images/s over ImageNet's 50,000 test images (see the module).

    ``world``: "paper", "testbed" or a backbone name; ``device``: default CUDA when available;
    ``precision``: every method's PREC (default: each method's shipped config, fp16 falling back to
    fp32 on a CPU)."""
    methods = list(methods or METHODS)
    unknown = [m for m in methods if m not in CONFIGS]
    if unknown:
        raise UserError(f"Figure 3 has no method {', '.join(unknown)}: choose from {', '.join(METHODS)}")
    register_plugins()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    s = setting(world, quick, dev)
    names = class_names(s.classes)
    first = load_clip(s.backbone)
    layers = min(first.transformer.layers, first.visual.transformer.layers)
    clips: Dict[str, torch.nn.Module] = {}  # one CLIP per precision, shared by the methods
    trainers = {}
    for method in methods:
        cfg = method_cfg(method, s, layers, precision)
        prec = _effective_precision(cfg.TRAINER[TRAINER_REGISTRY.get(cfg.TRAINER.NAME).host_key].PREC, dev)
        if prec not in clips:
            clips[prec] = Precision(prec, dev).cast(first if not clips else load_clip(s.backbone)).to(dev)
        torch.manual_seed(0)
        trainers[method] = build(cfg, clips[prec], names, dev)
    resolution = next(iter(clips.values())).visual.input_resolution
    image = torch.randn(s.batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(1)).to(dev)
    timed = {m: s.conditioned_images if m in IMAGE_CONDITIONED else s.batch for m in methods}
    text_s: Dict[str, List[float]] = {m: [] for m in methods}
    batch_s: Dict[str, List[float]] = {m: [] for m in methods}
    for round_ in range(s.warmup + s.repeats):
        for method, trainer in trainers.items():
            t_text, text = _seconds(lambda: _text_once(trainer), dev)
            t_batch, _ = _seconds(lambda: _batch(trainer, image[:timed[method]], text), dev)
            if round_ >= s.warmup:
                text_s[method].append(t_text)
                batch_s[method].append(t_batch * s.batch / timed[method])
    n_batches = math.ceil(IMAGENET_TEST_IMAGES / s.batch)
    name = device_name(dev)
    rows = []
    for method, trainer in trainers.items():
        once, per_batch = min(text_s[method]), min(batch_s[method])
        note = "" if timed[method] == s.batch else \
            f"per batch scaled from {timed[method]} image(s) (each image has its own class prompts)"
        rows.append(dict(method=method, images_per_s=IMAGENET_TEST_IMAGES / (once + n_batches * per_batch),
                         per_batch_s=per_batch, text_s=once, classes=s.classes, batch=s.batch,
                         timed_images=timed[method], test_images=IMAGENET_TEST_IMAGES, device=name,
                         precision=trainer.precision.name, backbone=s.backbone, world=s.world, quick=s.quick,
                         warmup=s.warmup, repeats=s.repeats, note=note))
    return rows


# ----------------------------------------------------------------------------------- the claim
def tr_cost(rows: Sequence[dict]) -> Dict[str, Tuple[float, float, float]]:
    """host -> (images/s without TextRefiner, with it, with / without), for every host measured both ways."""
    speed = {r["method"]: r["images_per_s"] for r in rows}
    return {m[:-len(TR_SUFFIX)]: (speed[m[:-len(TR_SUFFIX)]], speed[m], speed[m] / speed[m[:-len(TR_SUFFIX)]])
            for m in speed if m.endswith(TR_SUFFIX) and m[:-len(TR_SUFFIX)] in speed}


def paper_speeds() -> Dict[str, float]:
    """The paper's Figure 3 values it states in its text (FPS on one A800), by method (ours where built)."""
    with open(PAPER_FILE, newline="") as f:
        return {(r["trainer"] or r["paper_method"]): float(r["value"]) for r in csv.DictReader(f) if r["table"] == "fig3"}


# ------------------------------------------------------------------------------------- files
def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("Figure 3's chart needs matplotlib, which is not installed: pip install matplotlib "
                        "(or pip install -e '.[paper]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _is_cpu(rows: Sequence[dict]) -> bool:
    return all(r["device"].startswith("CPU") for r in rows)


def _setting_line(rows: Sequence[dict]) -> str:
    r = rows[0]
    precisions = sorted({row["precision"] for row in rows})
    quick = " **--quick**: fewer classes and a smaller batch than the paper's (1000, 100);" \
        if r["quick"] else ""
    return (f"Device: **{r['device']}**; CLIP `{r['backbone']}` (world `{r['world']}`), {r['classes']} classes, "
            f"batches of {r['batch']}, {'/'.join(precisions)};{quick} fastest of {r['repeats']} timed round(s) after "
            f"{r['warmup']} warm-up round(s). images/s = {r['test_images']} / (text once + "
            f"{math.ceil(r['test_images'] / r['batch'])} x per batch): ImageNet's test set evaluated once.")


def markdown(rows: Sequence[dict]) -> str:
    paper, cost = paper_speeds(), tr_cost(rows)
    lines = ["# Figure 3: evaluation speed (images/s)", "", _setting_line(rows), "",
             f"| method | images/s | per batch (s) | text once (s) | with / without TR | paper (FPS, {PAPER_DEVICE}) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        host = r["method"][:-len(TR_SUFFIX)] if r["method"].endswith(TR_SUFFIX) else ""
        ratio = f"{cost[host][2]:.3f}" if host in cost else ""
        reference = f"{paper[r['method']]:.2f}" if r["method"] in paper else ""
        lines.append(f"| {r['method']}{' *' if r['note'] else ''} | {r['images_per_s']:.2f} | {r['per_batch_s']:.4f} | "
                     f"{r['text_s']:.4f} | {ratio} | {reference} |")
    measured = {r["method"] for r in rows}
    for method, value in paper.items():
        if method not in measured:
            lines.append(f"| {method} (not built here) | | | | | {value:.2f} |")
    lines.append("")
    notes = sorted({r["note"] for r in rows if r["note"]})
    lines += [f"\\* {n}." for n in notes] + ([""] if notes else [])
    where = ("A CPU figure is not comparable with the paper's GPU one" if _is_cpu(rows)
             else f"Another GPU than the paper's ({PAPER_DEVICE}): compare the ratios, not the absolute figures")
    lines += [
        f"{where}. The paper gives three figures in its text (CoCoOp, LLaMP, PromptKD w/TextRefiner); the others are "
        "read off its bar chart only and not listed. This is this project's evaluation: text features (and "
        "TextRefiner's refinement from the frozen cache) once per evaluation, so TextRefiner adds only a "
        "once-per-evaluation cost except for CoCoOp, whose prompts depend on each image: elsewhere a TextRefiner "
        "variant's batches run exactly its host's computation, and their difference in the table is timing noise.",
        "",
    ]
    return "\n".join(lines)


def chart(rows: Sequence[dict], path: str) -> None:
    plt = _pyplot()
    cost = tr_cost(rows)
    order = list(reversed(rows))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    speeds = [r["images_per_s"] for r in order]
    colours = ["tab:orange" if r["method"].endswith(TR_SUFFIX) else "tab:blue" for r in order]
    ax.barh(range(len(order)), speeds, color=colours)
    ax.set_yticks(range(len(order)), [r["method"] for r in order])
    ax.set_xscale("log")
    ax.set_xlabel(f"images/s over {rows[0]['test_images']} test images (log scale)")
    for i, r in enumerate(order):
        host = r["method"][:-len(TR_SUFFIX)] if r["method"].endswith(TR_SUFFIX) else ""
        label = f"{r['images_per_s']:.1f}" + (f"  ({cost[host][2]:.2f}x {host})" if host in cost else "")
        ax.text(r["images_per_s"], i, " " + label, va="center", fontsize=8)
    ax.set_xlim(min(speeds) / 2, max(speeds) * 6)
    device = rows[0]["device"]
    ax.set_title(f"Figure 3: evaluation images/s on {device}\n{rows[0]['backbone']}, {rows[0]['classes']} classes, batch {rows[0]['batch']}"
                 f"{', quick' if rows[0]['quick'] else ''}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(rows: Sequence[dict], out_dir: str) -> List[str]:
    """fig3.md (table beside the paper's figures), fig3.csv and fig3.png in ``out_dir``; their paths."""
    if not rows:
        raise ValueError("no rows to write")
    _pyplot()  # before anything is written
    os.makedirs(out_dir, exist_ok=True)
    md, table, png = (osp.join(out_dir, f) for f in FILES)
    with open(md, "w") as f:
        f.write(markdown(rows))
    paper = paper_speeds()
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "paper_images_per_s": paper.get(r["method"], "")})
    chart(rows, png)
    return [md, table, png]
