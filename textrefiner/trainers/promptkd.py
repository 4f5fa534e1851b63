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

``PromptKD_TextRefiner`` (the TextRefiner release's ``promptkd_textrefiner``, there a trainer named
"TextRefiner"): the cache, the aggregation and the alignment live in the teacher's text space
(768-d for a ViT-L/14 teacher); the local tokens are the student's last-block CLS and patch tokens
(prompt positions left out), aligned from the student's width. The student's logits use the
refined teacher features t'; the teacher's logits do not. The semantic loss is KL to the teacher's
probabilities of the image (the host's loss form), the regulariser trains only the aggregation
(the teacher's features carry no gradient); both are weighted relative to KD_WEIGHT.
"""
import math
import os.path as osp
from typing import List

import torch
from yacs.config import CfgNode as CN

from textrefiner.backbones.resolver import embed_dim, load_clip
from textrefiner.checkpoints.ivlp import load_teacher_state_dict
from textrefiner.config import ConfigPart, register_config_part
from textrefiner.errors import SettingError, WeightsNotFoundError
from textrefiner.framework import DataManager, load_checkpoint, register_trainer
from textrefiner.hosts.ivlp import IVLPCLIP, build_ivlp, context_words
from textrefiner.hosts.promptkd import PromptKDStudent
from textrefiner.modeling import SoftTargets
from textrefiner.precision import PRECISIONS
from textrefiner.teacher_layout import BASE2NOVEL, CROSS, DEFAULT_TEACHER_DIR, LAYOUT, teacher_path, with_seed

from .base import PromptTrainer
from .textrefiner import TextRefinerMixin

TEACHER_PROMPTS = ("file", "init", "none")
#: seed of the "init" teacher's prompts: every run (training, a later evaluation) sees the same teacher
TEACHER_INIT_SEED = 0


def add_promptkd_config(cfg: CN) -> None:
    """``TRAINER.PROMPTKD.*``: the PromptKD release's names and values (its scripts' KD_WEIGHT and
    TEMPERATURE), plus the teacher's location and prompt design, which the release hard-codes."""
    cfg.TRAINER.PROMPTKD = CN()
    # Student: vision prompt tokens per prompted block of its image tower
    cfg.TRAINER.PROMPTKD.N_CTX_VISION = 4
    # Student: blocks 1..J of its image tower get prompts (9 base-to-novel, 3 cross-dataset)
    cfg.TRAINER.PROMPTKD.PROMPT_DEPTH_VISION = 9
    # Teacher: learnable text context tokens (its first N_CTX_TEXT words of CTX_INIT)
    cfg.TRAINER.PROMPTKD.N_CTX_TEXT = 4
    cfg.TRAINER.PROMPTKD.CTX_INIT = "a photo of a"  # teacher's prompt words before the class name
    # Accepted so the release's YAMLs load; no effect there either (the student has no text tower,
    # the release's teacher design is fixed: see TEACHER_PROMPT_DEPTH_TEXT)
    cfg.TRAINER.PROMPTKD.PROMPT_DEPTH_TEXT = 9
    cfg.TRAINER.PROMPTKD.PROJECT_LAYER = 2  # accepted for the release's YAMLs; the projector has 2 layers
    cfg.TRAINER.PROMPTKD.CE_WEIGHT = 0.0  # accepted for the release's YAMLs; no label loss exists (unused there too)
    cfg.TRAINER.PROMPTKD.PREC = "fp16"  # fp16 (release), fp32, amp or bf16; fp16/amp fall back to fp32 on CPU
    # Weight of the distillation loss KL(teacher || student) * T^2 / (B * C). The release's scripts use
    # 1000 (200 for fgvc_aircraft, oxford_flowers, dtd in base-to-novel); the launchers set it per dataset
    cfg.TRAINER.PROMPTKD.KD_WEIGHT = 1000.0
    cfg.TRAINER.PROMPTKD.TEMPERATURE = 1.0  # T of the distillation (and of TextRefiner's semantic KL)
    # Teacher backbone: anything MODEL.BACKBONE.NAME takes (OpenAI name, weights file, random:<arch>)
    cfg.TRAINER.PROMPTKD.TEACHER_NAME = "ViT-L/14"
    cfg.TRAINER.PROMPTKD.TEACHER_PATH = ""  # weights file for an OpenAI TEACHER_NAME (as MODEL.BACKBONE.PATH)
    # Teacher prompts: "file" (a trained IVLP/PromptSRC checkpoint, see TEACHER_DIR), "init" (prompts
    # drawn from a fixed seed: an untrained teacher, for tests) or "none" (zero-shot CLIP, "a photo of a {}.")
    cfg.TRAINER.PROMPTKD.TEACHER_PROMPTS = "file"
    # Root of the teachers in the release's layout: <TEACHER_DIR>/<DATASET.NAME>/VLPromptLearner/model-best.pth.tar
    # (base2novel) and <TEACHER_DIR>/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20 (cross); teacher_layout.py.
    # "{seed}" in it (or in TEACHER_FILE) stands for the run's seed: a teacher per seed
    cfg.TRAINER.PROMPTKD.TEACHER_DIR = DEFAULT_TEACHER_DIR
    cfg.TRAINER.PROMPTKD.TEACHER_FILE = ""  # a teacher checkpoint outside that layout (overrides TEACHER_DIR)
    # Which teacher of the layout: "base2novel" (per dataset) or "cross" (ImageNet); the release's TRAINER.MODAL
    cfg.TRAINER.PROMPTKD.MODAL = BASE2NOVEL
    # Teacher prompt design (hard-coded in the release: 4 vision tokens, depth 9 in both towers), as the
    # PromptSRC/IVLP run that trained it (TRAINER.PROMPTSRC.*): text depth >= 1, vision depth >= 0 (0: none)
    cfg.TRAINER.PROMPTKD.TEACHER_N_CTX_VISION = 4
    cfg.TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_TEXT = 9
    cfg.TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_VISION = 9
    # Training images: "all" (the release: the unlabelled images of every class, whatever
    # DATASET.SUBSAMPLE_CLASSES evaluates) or "eval" (only the evaluated classes, as the paper's text says)
    cfg.TRAINER.PROMPTKD.TRAIN_CLASSES = "all"
    # Model selection each epoch (TEST.FINAL_MODEL best_val): "test" (the release: the evaluated classes'
    # TEST images, i.e. test-set selection) or "val" (the dataset's validation split)
    cfg.TRAINER.PROMPTKD.VAL_SPLIT = "test"


PROMPTKD_CONFIG = register_config_part(ConfigPart(
    "TRAINER.PROMPTKD", add_promptkd_config,
    choices={"TRAINER.PROMPTKD.PREC": PRECISIONS, "TRAINER.PROMPTKD.TEACHER_PROMPTS": TEACHER_PROMPTS,
             "TRAINER.PROMPTKD.MODAL": tuple(LAYOUT), "TRAINER.PROMPTKD.TRAIN_CLASSES": ("all", "eval"),
             "TRAINER.PROMPTKD.VAL_SPLIT": ("test", "val")},
    # the depths' upper bounds are the CLIPs' layer counts, checked when student and teacher are built
    minimums={"TRAINER.PROMPTKD.N_CTX_VISION": (0, "student vision tokens per prompted block"),
              "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION": (1, "student prompted blocks"),
              "TRAINER.PROMPTKD.N_CTX_TEXT": (0, "teacher text context tokens"),
              "TRAINER.PROMPTKD.TEACHER_N_CTX_VISION": (0, "teacher vision tokens per prompted block"),
              "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_TEXT": (1, "teacher prompted text blocks"),
              "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_VISION": (0, "teacher prompted vision blocks; 0 = none")},
    ranges={"TRAINER.PROMPTKD.KD_WEIGHT": (1e-12, math.inf), "TRAINER.PROMPTKD.TEMPERATURE": (1e-12, math.inf)},
))


class TeacherNotFoundError(WeightsNotFoundError):
    """No teacher checkpoint where the configuration says it is."""


#: what makes a teacher file fit, named in every refusal of one
TEACHER_FIT = ("Set TRAINER.PROMPTKD.TEACHER_NAME to the backbone it was trained on and TRAINER.PROMPTKD.N_CTX_TEXT, "
               "TEACHER_N_CTX_VISION, TEACHER_PROMPT_DEPTH_TEXT and TEACHER_PROMPT_DEPTH_VISION to its prompt design "
               "(the releases' teachers: ViT-L/14, 4, 4, 9, 9)")


def teacher_file(cfg) -> str:
    """The teacher file the config names (``{seed}`` in TEACHER_DIR or TEACHER_FILE: the run's seed)."""
    c = cfg.TRAINER.PROMPTKD
    return with_seed(c.TEACHER_FILE, cfg.SEED) or teacher_path(c.TEACHER_DIR, c.MODAL, cfg.DATASET.NAME, cfg.SEED)


def read_teacher_file(path: str) -> dict:
    if not osp.isfile(path):
        base2novel = teacher_path("TRAINER.PROMPTKD.TEACHER_DIR", BASE2NOVEL, "<DATASET.NAME>")
        raise TeacherNotFoundError(
            f"PromptKD teacher not found at {path} ({base2novel}, or {osp.join(*LAYOUT[CROSS])} with MODAL {CROSS}). "
            "Put the "
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
    if c.TEACHER_PROMPTS == "none":
        # zero-shot CLIP: CTX_INIT's words are the whole context, kept as they are; no deep or vision prompts
        design = dict(n_ctx_text=context_words(c.CTX_INIT), depth_text=1, n_ctx_vision=0, depth_vision=0)
    else:
        design = dict(n_ctx_text=c.N_CTX_TEXT, depth_text=c.TEACHER_PROMPT_DEPTH_TEXT,
                      n_ctx_vision=c.TEACHER_N_CTX_VISION, depth_vision=c.TEACHER_PROMPT_DEPTH_VISION)
    try:
        teacher = build_ivlp(classnames, clip_model, ctx_init=c.CTX_INIT, generator_seed=TEACHER_INIT_SEED, **design)
    except SettingError as e:  # the prompt learner names its argument (PROMPT_DEPTH_TEXT); the user knows the key
        raise SettingError(f"TRAINER.PROMPTKD.TEACHER_{e}") from None
    if state_dict is not None:
        path = teacher_file(cfg)
        loaded = load_teacher_state_dict(teacher, state_dict, f"Teacher file {path}", TEACHER_FIT)
        print(f"Loaded {len(loaded)} teacher tensors from {path}")
    return teacher.eval().requires_grad_(False)


@register_trainer
class PromptKD(PromptTrainer):
    """Prompted student image tower + projector distilled from a frozen teacher; keys under TRAINER.PROMPTKD."""

    host_key = "PROMPTKD"
    host_loss_name = "kd"
    teacher = None

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


@register_trainer
class PromptKD_TextRefiner(TextRefinerMixin, PromptKD):
    """PromptKD + local cache, feature aggregation and alignment; keys under TRAINER.PROMPTKD and TRAINER.TEXTREFINER."""
