"""``MaPLe``: Multi-modal Prompt Learning (Khattak et al., CVPR 2023), https://arxiv.org/abs/2210.03117."""
from textrefiner.framework import register_trainer
from textrefiner.hosts.maple import MaPLeCLIP, MultiModalPromptLearner

from .coop import CoOp


def build_maple_model(cfg, classnames, clip_model) -> MaPLeCLIP:
    m = cfg.TRAINER.MAPLE
    prompt_learner = MultiModalPromptLearner(
        classnames, clip_model, n_ctx=m.N_CTX, ctx_init=m.CTX_INIT, depth=m.PROMPT_DEPTH
    )
    return MaPLeCLIP(prompt_learner, clip_model, text_chunk_size=m.TEXT_CHUNK_SIZE)


@register_trainer
class MaPLe(CoOp):
    """Deep text prompts coupled into deep vision prompts with frozen CLIP; CoOp's training step
    (cross-entropy on scaled cosine logits). Keys under TRAINER.MAPLE.

    Trains on one device: unlike the release, the model is never wrapped in DataParallel.
    """

    host_key = "MAPLE"

    def build_host(self, clip_model) -> dict:
        self.model = build_maple_model(self.cfg, self.dm.dataset.classnames, clip_model)
        return {"prompt_learner": self.model.prompt_learner}
