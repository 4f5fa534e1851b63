"""``CoCoOp``: Conditional Context Optimization (Zhou et al., CVPR 2022), https://arxiv.org/abs/2203.05557,
the baseline the TextRefiner paper compares CoOp+TextRefiner with; and ``CoCoOp_TextRefiner``
(ours: no public code has it); ``TRAINER.COCOOP`` keys and checks.

CoCoOp's class text features depend on the image, so there is nothing to compute once per
evaluation: every test batch runs the text tower on its images' prompts (in groups of at most
``EVAL_PROMPTS_PER_GROUP`` prompts).

``CoCoOp_TextRefiner`` refines each image's class features ``t_i`` (C, d) as the other hosts refine
their shared ones: the cache is read per image and class (``t'_ic = t_ic + alpha Linear([t_ic,
E(t_ic)])``), the semantic loss scores image i's token set against image i's own class features
(cross-entropy with its label), and the regularisation loss is the mean L1 between
``normalize(t')`` and ``t`` over every image, class and dimension (at the paper's batch size 1,
exactly the other hosts' definition). The cache is updated from the batch's aligned tokens, as
everywhere. At evaluation the refinement runs per test image, from the frozen cache.
"""
import torch
from yacs.config import CfgNode as CN

from textrefiner.config import ConfigError, ConfigPart, register_config_part
from textrefiner.framework import register_trainer
from textrefiner.hosts.cocoop import EVAL_PROMPTS_PER_GROUP, CoCoOpCLIP, CoCoOpPromptLearner
from textrefiner.precision import PRECISIONS

from .base import PromptTrainer
from .textrefiner import TextRefinerMixin


def add_cocoop_config(cfg: CN) -> None:
    cfg.TRAINER.COCOOP = CN()
    cfg.TRAINER.COCOOP.N_CTX = 16  # number of learnable context tokens M (ignored when CTX_INIT is set)
    cfg.TRAINER.COCOOP.CTX_INIT = ""  # words initialising the context; the release's configs use "a photo of a"
    cfg.TRAINER.COCOOP.PREC = "fp16"  # fp16 (the release's default), fp32, amp or bf16; fp16/amp fall back to fp32 on CPU
    # Encode the images' B x C prompts this many at a time (0 = all at once); in training each chunk is
    # checkpointed (recomputed in backward), as TRAINER.COOP.TEXT_CHUNK_SIZE
    cfg.TRAINER.COCOOP.TEXT_CHUNK_SIZE = 0


def check_cocoop_config(cfg: CN) -> None:
    if not cfg.TRAINER.COCOOP.CTX_INIT and cfg.TRAINER.COCOOP.N_CTX < 1:
        raise ConfigError(f"TRAINER.COCOOP.N_CTX (context tokens) must be >= 1, got {cfg.TRAINER.COCOOP.N_CTX}")


COCOOP_CONFIG = register_config_part(ConfigPart(
    "TRAINER.COCOOP", add_cocoop_config,
    choices={"TRAINER.COCOOP.PREC": PRECISIONS},
    minimums={"TRAINER.COCOOP.TEXT_CHUNK_SIZE": (0, "prompts per text chunk (0 = all)")},
    check=check_cocoop_config,
))


def build_cocoop_model(cfg, classnames, clip_model) -> CoCoOpCLIP:
    c = cfg.TRAINER.COCOOP
    prompt_learner = CoCoOpPromptLearner(classnames, clip_model, n_ctx=c.N_CTX, ctx_init=c.CTX_INIT)
    return CoCoOpCLIP(prompt_learner, clip_model, text_chunk_size=c.TEXT_CHUNK_SIZE)


@register_trainer
class CoCoOp(PromptTrainer):
    """CoOp's context plus an image-conditioned bias (meta-net); cross-entropy on each image's logits."""

    host_key = "COCOOP"

    def build_host(self, clip_model) -> dict:
        self.model = build_cocoop_model(self.cfg, self.dm.dataset.classnames, clip_model)
        return {"prompt_learner": self.model.prompt_learner}

    def prompted_text_features(self, visual) -> torch.Tensor:
        """Each image's class text features (B, C, d)."""
        return self.model.text_features(visual.global_feature)

    def classifier_text_features(self):
        """None: the class text features depend on the image (``model_inference`` computes them)."""
        return None

    def image_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """Logits of the images whose features are given, through their own prompts (and a plug-in's refinement)."""
        text = self.evaluation_text_features(self.model.text_features(image_features))
        return self.model.logits(image_features, text)

    def evaluation_logits(self, image: torch.Tensor, text_features=None) -> torch.Tensor:
        """Each test image's logits through its own prompts (``text_features`` is None: nothing is shared)."""
        features = self.model.encode_image(image).global_feature
        group = max(1, EVAL_PROMPTS_PER_GROUP // self.model.prompt_learner.n_cls)
        return torch.cat([self.image_logits(part) for part in features.split(group)])


@register_trainer
class CoCoOp_TextRefiner(TextRefinerMixin, CoCoOp):
    """CoCoOp + local cache, feature aggregation and alignment on each image's class features (ours);
    keys under TRAINER.COCOOP and TRAINER.TEXTREFINER."""
