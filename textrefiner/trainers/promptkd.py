"""``PromptKD``: unsupervised prompt distillation (Li et al., CVPR 2024), https://arxiv.org/abs/2403.02781.

A student image tower with deep vision prompts and a projector learns, without labels, to
match a frozen teacher's class probabilities (forward KL, ``KD_WEIGHT``, temperature ``T``);
it classifies with the teacher's text features. Unlike the release:

* the teacher's text features are computed once, when training starts, and stored in the
  student's checkpoint keyed by class name; evaluation runs only the student's image tower,
  the projector and one matrix product (no teacher, no teacher file needed);
* base-to-novel: training uses the unlabelled images of ALL classes (``TRAIN_CLASSES all``)
  while ``DATASET.SUBSAMPLE_CLASSES`` picks the evaluated classes, so base and novel come
  from two evaluations, each against its own half of the teacher's classes;
* the teacher is found in the release's folder layout, loaded strictly, built lazily (an
  evaluation never loads it), and runs in any precision of ``textrefiner/precision.py``.
"""
import os.path as osp
from typing import List

import torch

from textrefiner.backbones.resolver import embed_dim, load_clip
from textrefiner.errors import WeightsNotFoundError
from textrefiner.framework import DataManager, load_checkpoint, register_trainer
from textrefiner.hosts.teacher_ivlp import IVLPCLIP, build_ivlp, check_depth
from textrefiner.hosts.ivlp_checkpoint import load_release_checkpoint
from textrefiner.hosts.promptkd import PromptKDStudent
from textrefiner.modeling import SoftTargets

from .base import PromptTrainer

#: where the release looks for its teachers, under TRAINER.PROMPTKD.TEACHER_DIR, per MODAL
TEACHER_LAYOUT = {
    "base2novel": ("{dataset}", "VLPromptLearner", "model-best.pth.tar"),
    "cross": ("ImageNet-xd", "VLPromptLearner_large", "model.pth.tar-20"),
}
TEACHER_PROMPTS = ("file", "init", "none")
#: seed of the "init" teacher's prompts: every run (training, a later evaluation) sees the same teacher
TEACHER_INIT_SEED = 0


class TeacherNotFoundError(WeightsNotFoundError):
    """No teacher checkpoint where the configuration says it is."""


def teacher_file(cfg) -> str:
    c = cfg.TRAINER.PROMPTKD
    if c.TEACHER_FILE:
        return c.TEACHER_FILE
    if c.MODAL not in TEACHER_LAYOUT:
        raise ValueError(f"TRAINER.PROMPTKD.MODAL must be one of {sorted(TEACHER_LAYOUT)}, got {c.MODAL!r}")
    return osp.join(c.TEACHER_DIR, *(part.format(dataset=cfg.DATASET.NAME) for part in TEACHER_LAYOUT[c.MODAL]))


def read_teacher_file(path: str) -> dict:
    if not osp.isfile(path):
        raise TeacherNotFoundError(
            f"PromptKD teacher not found at {path} (TRAINER.PROMPTKD.TEACHER_DIR/<DATASET.NAME>/VLPromptLearner/"
            "model-best.pth.tar, or ImageNet-xd/VLPromptLearner_large/model.pth.tar-20 with MODAL cross). Put the "
            "PromptKD release's teacher there (its README links them), train one with PromptSRC or IVLP (ViT-L/14, "
            "config vit_l14_c2_ep20_batch8_4+4ctx; rename model.pth.tar-20 to model-best.pth.tar), set "
            "TRAINER.PROMPTKD.TEACHER_FILE to a checkpoint elsewhere, or distil from an untrained teacher with "
            "TRAINER.PROMPTKD.TEACHER_PROMPTS none (zero-shot CLIP) or init (README, 'PromptKD')"
        )
    checkpoint = load_checkpoint(path, "PromptKD teacher")
    return checkpoint.get("state_dict", checkpoint)


def build_teacher(cfg, classnames: List[str], precision) -> IVLPCLIP:
    """The frozen teacher: an IVLP-prompted CLIP with prompts from its file, a seeded init, or none."""
    c = cfg.TRAINER.PROMPTKD
    if c.TEACHER_PROMPTS not in TEACHER_PROMPTS:
        raise ValueError(
            f"TRAINER.PROMPTKD.TEACHER_PROMPTS must be one of {TEACHER_PROMPTS}, got {c.TEACHER_PROMPTS!r}"
        )
    state_dict = read_teacher_file(teacher_file(cfg)) if c.TEACHER_PROMPTS == "file" else None
    print(f"Loading the PromptKD teacher (backbone: {c.TEACHER_NAME}, prompts: {c.TEACHER_PROMPTS})")
    clip_model = precision.cast(load_clip(c.TEACHER_NAME, c.TEACHER_PATH))
    none = c.TEACHER_PROMPTS == "none"
    if not none:
        check_depth(c.TEACHER_PROMPT_DEPTH_TEXT, clip_model.transformer.layers,
                    "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_TEXT")
        check_depth(c.TEACHER_PROMPT_DEPTH_VISION, clip_model.visual.transformer.layers,
                    "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_VISION")
    teacher = build_ivlp(
        classnames, clip_model, n_ctx_text=0 if none else c.N_CTX_TEXT, ctx_init=c.CTX_INIT,
        depth_text=1 if none else c.TEACHER_PROMPT_DEPTH_TEXT, n_ctx_vision=0 if none else c.TEACHER_N_CTX_VISION,
        depth_vision=1 if none else c.TEACHER_PROMPT_DEPTH_VISION, generator_seed=TEACHER_INIT_SEED,
    )
    if state_dict is not None:
        path = teacher_file(cfg)
        loaded = load_release_checkpoint(teacher, path, state_dict)
        print(f"Loaded {len(loaded)} teacher tensors from {path}")
    return teacher.eval().requires_grad_(False)


@register_trainer
class PromptKD(PromptTrainer):
    """Prompted student image tower + projector distilled from a frozen teacher; keys under TRAINER.PROMPTKD."""

    host_key = "PROMPTKD"
    host_loss_name = "kd"
    teacher = None

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        c = cfg.TRAINER.PROMPTKD
        for key, choices in (("TRAIN_CLASSES", ("all", "eval")), ("VAL_SPLIT", ("test", "val"))):
            if c[key] not in choices:
                raise ValueError(f"TRAINER.PROMPTKD.{key} must be one of {choices}, got {c[key]!r}")

    # ------------------------------------------------------------------ data
    def build_data_loader(self) -> None:
        """Evaluation loaders of the classes DATASET.SUBSAMPLE_CLASSES names; with TRAIN_CLASSES all,
        the training loader holds the (unlabelled) images of every class."""
        super().build_data_loader()
        self.eval_classnames = list(self.dm.dataset.classnames)
        self.train_classnames = self.eval_classnames
        if self.cfg.TRAINER.PROMPTKD.VAL_SPLIT == "test":
            self.val_loader = self.test_loader  # the release's model selection, on test images
        if self.cfg.TRAINER.PROMPTKD.TRAIN_CLASSES == "all" and self.cfg.DATASET.SUBSAMPLE_CLASSES != "all":
            cfg = self.cfg.clone()
            cfg.defrost()
            cfg.DATASET.SUBSAMPLE_CLASSES = "all"
            cfg.freeze()
            print("PromptKD trains on the unlabelled training images of all classes (TRAINER.PROMPTKD.TRAIN_CLASSES)")
            everything = DataManager(cfg)
            self.train_loader_x = everything.train_loader_x
            self.train_classnames = list(everything.dataset.classnames)

    # ------------------------------------------------------------------ building
    def build_host(self, clip_model) -> dict:
        c = self.host_cfg
        teacher_dim = embed_dim(c.TEACHER_NAME, c.TEACHER_PATH)
        self.model = PromptKDStudent(clip_model, teacher_dim, c.N_CTX_VISION, c.PROMPT_DEPTH_VISION,
                                     self.train_classnames)
        self.precision.cast(self.model.projector)
        return {"vision_prompts": self.model.vision_prompts, "projector": self.model.projector}

    def build_model(self) -> None:
        super().build_model()
        # saved and loaded with the student, never trained
        self.register_model("teacher_text", self.model.teacher_text)

    # ------------------------------------------------------------------ teacher
    def teacher_classnames(self) -> List[str]:
        return self.train_classnames + [n for n in self.eval_classnames if n not in self.train_classnames]

    def prepare_teacher(self) -> IVLPCLIP:
        """Load the teacher (once) and store its text features of the training and evaluated classes."""
        if self.teacher is None:
            names = self.teacher_classnames()
            self.teacher = build_teacher(self.cfg, names, self.precision).to(self.device)
            with torch.inference_mode(False), torch.no_grad(), self.precision.autocast():
                self.model.teacher_text.store(names, self.teacher.text_features())
            print(f"Teacher text features of {len(names)} classes computed once and stored with the student")
        return self.teacher

    def before_train(self) -> None:
        super().before_train()
        self.prepare_teacher()

    def training_target(self, image: torch.Tensor, label: torch.Tensor) -> SoftTargets:
        """The teacher's logits of the batch (labels are not used)."""
        teacher = self.prepare_teacher()
        with torch.no_grad():
            features = teacher.encode_image(image).global_feature
            text = self.model.teacher_text.lookup(self.train_classnames)
            logits = teacher.logits(features, text.to(features.dtype))
        c = self.host_cfg
        return SoftTargets(logits, temperature=c.TEMPERATURE, weight=c.KD_WEIGHT)

    # ------------------------------------------------------------------ evaluation
    def classifier_text_features(self) -> torch.Tensor:
        """The stored teacher features of the evaluated classes (the teacher runs only if they are absent)."""
        if not self.model.teacher_text.has(self.eval_classnames):
            print("The student holds no teacher text features of the evaluated classes: computing them")
            self.teacher = None
            self.prepare_teacher()
        return self.model.text_features(self.eval_classnames)
