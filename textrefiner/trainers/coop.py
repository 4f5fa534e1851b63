"""``CoOp``: Context Optimization (Zhou et al., IJCV 2022), https://arxiv.org/abs/2109.01134, and
``CoOp_TextRefiner`` (the TextRefiner authors' released setting); ``TRAINER.COOP`` keys and checks."""
from yacs.config import CfgNode as CN

from textrefiner.config import ConfigError, ConfigPart, register_config_part
from textrefiner.framework import register_trainer
from textrefiner.hosts.coop import CoOpCLIP, PromptLearner
from textrefiner.precision import PRECISIONS

from .base import PromptTrainer
from .textrefiner import TextRefinerMixin


def add_coop_config(cfg: CN) -> None:
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16  # number of learnable context tokens M (ignored when CTX_INIT is set)
    cfg.TRAINER.COOP.CSC = False  # class-specific context: one context per class (random init only)
    cfg.TRAINER.COOP.CTX_INIT = ""  # words initialising the context, e.g. "a photo of a"
    cfg.TRAINER.COOP.PREC = "fp16"  # fp16 (CoOp default), fp32, amp or bf16; fp16/amp fall back to fp32 on CPU
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # where the class name goes: end, middle or front
    # Encode the class prompts this many at a time (0 = all classes at once). In training each
    # chunk is checkpointed (recomputed in backward): the text side's peak memory is about one
    # chunk's instead of all classes', same loss and gradients, one extra text forward per step
    cfg.TRAINER.COOP.TEXT_CHUNK_SIZE = 0


def check_coop_config(cfg: CN) -> None:
    if not cfg.TRAINER.COOP.CTX_INIT and cfg.TRAINER.COOP.N_CTX < 1:
        raise ConfigError(f"TRAINER.COOP.N_CTX (context tokens) must be >= 1, got {cfg.TRAINER.COOP.N_CTX}")


COOP_CONFIG = register_config_part(ConfigPart(
    "TRAINER.COOP", add_coop_config,
    choices={"TRAINER.COOP.PREC": PRECISIONS, "TRAINER.COOP.CLASS_TOKEN_POSITION": ("end", "middle", "front")},
    minimums={"TRAINER.COOP.TEXT_CHUNK_SIZE": (0, "classes per text chunk (0 = all)")},
    check=check_coop_config,
))


def build_coop_model(cfg, classnames, clip_model) -> CoOpCLIP:
    c = cfg.TRAINER.COOP
    prompt_learner = PromptLearner(
        classnames,
        clip_model,
        n_ctx=c.N_CTX,
        ctx_init=c.CTX_INIT,
        csc=c.CSC,
        class_token_position=c.CLASS_TOKEN_POSITION,
    )
    return CoOpCLIP(prompt_learner, clip_model, text_chunk_size=c.TEXT_CHUNK_SIZE)


@register_trainer
class CoOp(PromptTrainer):
    """Learnable prompt context with frozen CLIP; cross-entropy on scaled cosine logits."""

    host_key = "COOP"

    def build_host(self, clip_model) -> dict:
        self.model = build_coop_model(self.cfg, self.dm.dataset.classnames, clip_model)
        return {"prompt_learner": self.model.prompt_learner}


@register_trainer
class CoOp_TextRefiner(TextRefinerMixin, CoOp):
    """CoOp + local cache, feature aggregation and alignment; keys under TRAINER.COOP and TRAINER.TEXTREFINER."""
