"""``IVLP``: independent vision-language deep prompts with frozen CLIP, cross-entropy only (the
baseline of MaPLe and PromptSRC; PromptKD's teachers use its prompts); ``TRAINER.IVLP`` keys and checks."""
from yacs.config import CfgNode as CN

from textrefiner.config import ConfigPart, register_config_part
from textrefiner.errors import SettingError
from textrefiner.framework import register_trainer
from textrefiner.hosts.ivlp import IVLPCLIP, IVLPPromptLearner
from textrefiner.precision import PRECISIONS

from .coop import CoOp


def add_ivlp_config(cfg: CN) -> None:
    """``TRAINER.IVLP.*`` with the PromptSRC/PromptKD releases' names and defaults."""
    cfg.TRAINER.IVLP = CN()
    cfg.TRAINER.IVLP.N_CTX_VISION = 2  # learnable vision tokens per prompted layer
    cfg.TRAINER.IVLP.N_CTX_TEXT = 2  # learnable text tokens per prompted layer
    # Prompt words before the class name; the text context starts as its first N_CTX_TEXT tokens
    # (N(0, 0.02) when N_CTX_TEXT exceeds its words or it is "")
    cfg.TRAINER.IVLP.CTX_INIT = "a photo of a"
    cfg.TRAINER.IVLP.PREC = "fp16"  # fp16 (release default), fp32, amp or bf16; fp16/amp fall back to fp32 on CPU
    # J_v: vision layers 1..J_v get their own prompts (0 = none, 1 = input only); at most the CLIP's layers
    cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION = 9
    # J_t: text layers 1..J_t get their own prompts (1 = the input context only); at most the CLIP's layers
    cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT = 9
    # Encode the class prompts this many at a time, each chunk checkpointed in training (0 = all
    # at once); as TRAINER.COOP.TEXT_CHUNK_SIZE (not a release key)
    cfg.TRAINER.IVLP.TEXT_CHUNK_SIZE = 0


def ivlp_checks(key: str) -> dict:
    """The checks of an IVLP-prompted host's node (TRAINER.IVLP, TRAINER.PROMPTSRC); the depths'
    upper bounds are the CLIP's layer counts, checked when the prompt learner is built."""
    return dict(
        choices={f"TRAINER.{key}.PREC": PRECISIONS},
        minimums={f"TRAINER.{key}.N_CTX_TEXT": (0, "learnable text tokens per prompted layer"),
                  f"TRAINER.{key}.N_CTX_VISION": (0, "learnable vision tokens per prompted layer"),
                  f"TRAINER.{key}.PROMPT_DEPTH_TEXT": (1, "prompted text layers; 1 = the input context only"),
                  f"TRAINER.{key}.PROMPT_DEPTH_VISION": (0, "prompted vision layers; 0 = none"),
                  f"TRAINER.{key}.TEXT_CHUNK_SIZE": (0, "classes per text chunk (0 = all)")},
    )


IVLP_CONFIG = register_config_part(ConfigPart("TRAINER.IVLP", add_ivlp_config, **ivlp_checks("IVLP")))


def build_ivlp_prompt_learner(host_cfg, classnames, clip_model, host_key: str = "IVLP") -> IVLPPromptLearner:
    """Map ``TRAINER.<host_key>`` (IVLP or PROMPTSRC) keys to the prompt learner's arguments."""
    try:
        return IVLPPromptLearner(
            classnames,
            clip_model,
            n_ctx_text=host_cfg.N_CTX_TEXT,
            n_ctx_vision=host_cfg.N_CTX_VISION,
            ctx_init=host_cfg.CTX_INIT,
            depth_text=host_cfg.PROMPT_DEPTH_TEXT,
            depth_vision=host_cfg.PROMPT_DEPTH_VISION,
        )
    except SettingError as e:  # the learner names its argument; the user knows the key
        raise SettingError(f"TRAINER.{host_key}.{e}") from None


@register_trainer
class IVLP(CoOp):
    """Deep text and vision prompts, no coupling; CoOp's training step (cross-entropy on scaled
    cosine logits). Keys under TRAINER.IVLP. One device, no DataParallel (as MaPLe here)."""

    host_key = "IVLP"

    def build_host(self, clip_model) -> dict:
        prompt_learner = build_ivlp_prompt_learner(self.host_cfg, self.dm.dataset.classnames, clip_model,
                                                   self.host_key)
        self.model = IVLPCLIP(prompt_learner, clip_model, text_chunk_size=self.host_cfg.TEXT_CHUNK_SIZE)
        return {"prompt_learner": prompt_learner}
