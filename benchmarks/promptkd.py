"""PromptKD vs PromptKD_TextRefiner, and our PromptKD_TextRefiner vs the release's way of running it.

Trainers are built by their own ``build_model`` without data (a stand-in data manager holding
the class names) on one student CLIP, with one shared teacher whose text features are stored
in each student, as ``PromptKD.prepare_teacher`` does; they train by their own
``forward_backward``. The release-style path (read from the TextRefiner release's
``promptkd_textrefiner``, the same weights and numbers) pays what ours does not:

* training: the teacher's text features of every class recomputed every step, all 77 positions;
* evaluation: for every test batch, the teacher's text features recomputed, the teacher's
  image tower run (its logits are unused), the student's local tokens aligned (unused),
  and the refinement recomputed;
* checkpoints: the whole student (frozen image tower included), in the release's fp16.
"""
import io
from contextlib import redirect_stdout
from types import SimpleNamespace
from typing import Dict, List

import torch

from textrefiner.backbones.resolver import load_clip
from textrefiner.config import get_cfg
from textrefiner.framework import TRAINER_REGISTRY, TrainerBase
from textrefiner.hosts.ivlp import IVLPCLIP, build_ivlp
from textrefiner.precision import Precision

from .workloads import REPO, Variant, class_names, synthetic_batch, train_step

CONFIG = "vit_b16_c2_ep20_batch8_4+4ctx.yaml"
PROMPTKD = Variant("PromptKD", "PromptKD", config=CONFIG)
PROMPTKD_REFINER = Variant("PromptKD_TextRefiner", "PromptKD_TextRefiner", config=CONFIG)
PROMPTKD_RELEASE = Variant("PromptKD_TextRefiner, release-style", "PromptKD_TextRefiner", release_style=True,
                           config=CONFIG)
DEPTH = 9  # the release's prompt depth (student and teacher), capped by the towers' layer counts


def _layers(clip_model) -> int:
    return min(clip_model.transformer.layers, clip_model.visual.transformer.layers)


def build_teacher(teacher_clip, classnames: List[str]) -> IVLPCLIP:
    """The release's teacher design (4 + 4 prompt tokens) with seeded prompts; frozen, eval mode."""
    depth = min(DEPTH, _layers(teacher_clip))
    with redirect_stdout(io.StringIO()):
        teacher = build_ivlp(classnames, teacher_clip, 4, "a photo of a", depth, 4, depth, generator_seed=0)
    return teacher.eval().requires_grad_(False)


def build_trainer(variant: Variant, student_clip, args, teacher: IVLPCLIP, classnames: List[str],
                  device: torch.device):
    cls = TRAINER_REGISTRY.get(variant.trainer)
    trainer = cls.__new__(cls)
    TrainerBase.__init__(trainer)
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / "trainers" / variant.trainer / variant.config))
    cfg.MODEL.BACKBONE.NAME, cfg.TRAINER.NAME = args.student, variant.trainer
    cfg.TRAINER.PROMPTKD.TEACHER_NAME, cfg.TRAINER.PROMPTKD.PREC = args.teacher, args.prec
    cfg.TRAINER.PROMPTKD.PROMPT_DEPTH_VISION = min(DEPTH, _layers(student_clip))
    cfg.freeze()
    trainer.cfg, trainer.device = cfg, device
    trainer.dm = SimpleNamespace(dataset=SimpleNamespace(classnames=list(classnames)))
    trainer.train_classnames = trainer.eval_classnames = list(classnames)
    trainer.precision = Precision(args.prec, device)
    trainer.load_clip = lambda: student_clip
    with redirect_stdout(io.StringIO()):
        trainer.build_model()
    trainer.teacher = teacher
    trainer.model.teacher_text.store(classnames, teacher_text(trainer))
    trainer.batch_idx, trainer.num_batches = 0, 1 << 62  # never the epoch's last batch: no lr step
    return trainer


def teacher_text(trainer, release_style: bool = False) -> torch.Tensor:
    """The teacher's normalised text features; release-style: all 77 positions, as the release encodes."""
    teacher = trainer.teacher
    with torch.no_grad(), trainer.precision.autocast():
        if not release_style:
            return teacher.text_features()
        pl = teacher.prompt_learner
        features = teacher.text_encoder(pl(), pl.tokenized_prompts, truncate=False, deep_prompts=pl.deep_text_prompts())
        return features / features.norm(dim=-1, keepdim=True)


def release_train_step(trainer, batch: dict) -> None:
    trainer.model.teacher_text.store(trainer.train_classnames, teacher_text(trainer, release_style=True))
    train_step(trainer, batch)


def eval_text_features(trainer) -> torch.Tensor:
    trainer.set_model_mode("eval")
    with torch.inference_mode(), trainer.precision.autocast():
        return trainer.classifier_text_features()


def eval_batch(trainer, image: torch.Tensor, text_features: torch.Tensor) -> None:
    trainer.set_model_mode("eval")
    with torch.inference_mode(), trainer.precision.autocast():
        trainer.model(image, text_features=text_features)


def release_eval_batch(trainer, image: torch.Tensor) -> None:
    trainer.set_model_mode("eval")
    model, refiner = trainer.model, trainer.refiner
    with torch.inference_mode(), trainer.precision.autocast():
        text = teacher_text(trainer, release_style=True)
        trainer.teacher.logits(trainer.teacher.encode_image(image).global_feature, text.to(model.dtype))
        visual = model.encode_image(image, with_local=True)
        refiner.alignment(visual.tokens)
        model.logits(visual.global_feature, refiner.refine(text.to(model.dtype)))


def checkpoint_mb(state: Dict[str, torch.Tensor]) -> float:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell() / 2**20


def checkpoint_sizes(trainer) -> Dict[str, float]:
    """MiB of what each path saves: ours (registered modules) and the release's whole fp16 student."""
    ours = {f"{n}.{k}": v for n in trainer.get_model_names() for k, v in trainer._models[n].state_dict().items()}
    release = {f"image_encoder.{k}": v.half() for k, v in trainer.model.image_encoder.visual.state_dict().items()}
    release.update({f"VPT_image_trans.{k}": v.half() for k, v in trainer.model.projector.state_dict().items()})
    release.update({f"Memory.{k}": v.half() for k, v in trainer.refiner.state_dict().items()})
    return {"ours_mb": checkpoint_mb(ours), "release_mb": checkpoint_mb(release)}


def measure_promptkd(args, timed_rounds) -> dict:
    """Training steps and evaluation images/s at each of ``args.pkd_classes``, plus checkpoint sizes."""
    device = torch.device(args.device)
    precision = Precision(args.prec, device)
    torch.manual_seed(0)
    student = precision.cast(load_clip(args.student)).to(device)
    teacher_clip = precision.cast(load_clip(args.teacher)).to(device)
    results = dict(student=args.student, teacher=args.teacher, batch=args.pkd_batch, eval_images=args.pkd_eval_images,
                   train=[], eval=[], checkpoint={})
    for n_classes in args.pkd_classes:
        names = class_names(n_classes, args.max_words)
        teacher = build_teacher(teacher_clip, names).to(device)
        trainers = {}
        for variant in (PROMPTKD, PROMPTKD_REFINER, PROMPTKD_RELEASE):
            torch.manual_seed(0)
            trainers[variant] = build_trainer(variant, student, args, teacher, names, device)
        batch = synthetic_batch(args.pkd_batch, n_classes, student.visual.input_resolution, device)
        steps = {v.label: (lambda t=t, v=v: (release_train_step if v.release_style else train_step)(t, batch))
                 for v, t in trainers.items()}
        for label, s in timed_rounds(steps, device, args.warmup, args.pkd_repeats, args.budget).items():
            results["train"].append(dict(variant=label, classes=n_classes, step_s=s))
        features = {v: eval_text_features(t) for v, t in trainers.items() if not v.release_style}
        tasks = {v.label: (lambda t=t, v=v: release_eval_batch(t, batch["img"]) if v.release_style
                           else eval_batch(t, batch["img"], features[v])) for v, t in trainers.items()}
        tasks.update({"once: " + v.label: (lambda t=t: eval_text_features(t))
                      for v, t in trainers.items() if not v.release_style})
        medians = timed_rounds(tasks, device, args.warmup, args.pkd_repeats, args.budget)
        n_batches = -(-args.pkd_eval_images // args.pkd_batch)
        for v in trainers:
            once = medians.get("once: " + v.label, 0.0)
            results["eval"].append(dict(variant=v.label, classes=n_classes, batch_s=medians[v.label], once_s=once,
                                        images_per_s=args.pkd_eval_images / (once + n_batches * medians[v.label])))
        results["checkpoint"][str(n_classes)] = checkpoint_sizes(trainers[PROMPTKD_REFINER])
        del trainers, teacher
    results["ratios"] = promptkd_ratios(results, args)
    return results


def _value(rows: List[dict], label: str, n_classes: int, key: str):
    return next((r[key] for r in rows if r["variant"] == label and r["classes"] == n_classes), None)


def promptkd_ratios(results: dict, args) -> List[dict]:
    """The issue's targets: TR/PromptKD and ours/release-style, at every measured number of classes."""
    out = []
    large = max(args.pkd_classes)

    def add(name, rows, key, num, den, c, target):
        a, b = _value(rows, num.label, c, key), _value(rows, den.label, c, key)
        if a is None or not b:
            return
        met = None if target is None else (a / b >= target[1] if target[0] == ">=" else a / b <= target[1])
        out.append(dict(name=f"{name}, {c} classes", value=a / b, target=target and f"{target[0]} {target[1]}",
                        met=met, extrapolated=False))

    for c in args.pkd_classes:
        add("evaluation images/s ratio PromptKD_TextRefiner / PromptKD", results["eval"], "images_per_s",
            PROMPTKD_REFINER, PROMPTKD, c, (">=", 0.99))
        add("evaluation images/s ratio ours / release-style (PromptKD_TextRefiner)", results["eval"], "images_per_s",
            PROMPTKD_REFINER, PROMPTKD_RELEASE, c, (">=", 3.0))
        add("training step time ratio PromptKD_TextRefiner / PromptKD", results["train"], "step_s",
            PROMPTKD_REFINER, PROMPTKD, c, ("<=", 1.15))
        add("training step time ratio ours / release-style (PromptKD_TextRefiner)", results["train"], "step_s",
            PROMPTKD_REFINER, PROMPTKD_RELEASE, c, ("<=", 0.5) if c == large else None)
    return out


def promptkd_markdown(results: dict, args, with_ratios: bool = True) -> str:
    lines = [
        "## PromptKD",
        "",
        f"Student {results['student']}, teacher {results['teacher']} (random init, release prompt design 4 + 4 "
        f"tokens, depth {DEPTH} capped by the towers), {args.prec}, batch {results['batch']}; evaluation images/s "
        f"over {results['eval_images']} images (teacher text once per evaluation for ours, per batch release-style).",
        "",
        "| variant | classes | training step (s) | eval batch (s) | once per eval (s) | eval images/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["eval"]:
        step = _value(results["train"], row["variant"], row["classes"], "step_s")
        lines.append(f"| {row['variant']} | {row['classes']} | {step:.3f} | {row['batch_s']:.3f} | "
                     f"{row['once_s']:.3f} | {row['images_per_s']:.1f} |")
    lines += ["", "| checkpoint (PromptKD_TextRefiner) | classes | ours (MiB) | release-style (MiB) |",
              "|---|---:|---:|---:|"]
    for c, sizes in results["checkpoint"].items():
        lines.append(f"| saved per checkpoint | {c} | {sizes['ours_mb']:.2f} | {sizes['release_mb']:.2f} |")
    if not with_ratios:
        return "\n".join(lines)
    lines += ["", "| ratio | value | target | met |", "|---|---:|---|---|"]
    for r in results["ratios"]:
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append(f"| {r['name']} | {r['value']:.3f} | {r['target'] or ''} | {met} |")
    return "\n".join(lines)
