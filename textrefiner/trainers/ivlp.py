"""``IVLP``: independent vision-language deep prompts with frozen CLIP, cross-entropy only (the
baseline of MaPLe and PromptSRC; PromptKD's teachers use its prompts)."""
from textrefiner.errors import SettingError
from textrefiner.framework import register_trainer
from textrefiner.hosts.ivlp import IVLPCLIP, IVLPPromptLearner

from .coop import CoOp


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
