"""``CoOp``: Context Optimization (Zhou et al., IJCV 2022), https://arxiv.org/abs/2109.01134."""
from textrefiner.framework import register_trainer
from textrefiner.hosts.coop import CoOpCLIP, PromptLearner

from .base import PromptTrainer


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
