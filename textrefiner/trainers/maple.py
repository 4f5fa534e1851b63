"""``MaPLe``: Multi-modal Prompt Learning (Khattak et al., CVPR 2023), https://arxiv.org/abs/2210.03117, and
``MaPLe_TextRefiner`` (paper Table 2; no public release); ``TRAINER.MAPLE`` keys and checks.

MaPLe_TextRefiner's local tokens are the last vision block's CLS and patch tokens; the appended
vision prompt tokens are left out of the tokens and of the CLS attention (see ``hosts/maple.py``).
"""
from yacs.config import CfgNode as CN

from textrefiner.config import ConfigPart, register_config_part
from textrefiner.framework import register_trainer
from textrefiner.hosts.maple import MaPLeCLIP, MultiModalPromptLearner
from textrefiner.precision import PRECISIONS

from .coop import CoOp
from .textrefiner import TextRefinerMixin


def add_maple_config(cfg: CN) -> None:
    """``TRAINER.MAPLE.*`` with the MaPLe release's names and defaults."""
    cfg.TRAINER.MAPLE = CN()
    # Learnable context tokens per prompted layer (text; each is coupled into one vision token)
    cfg.TRAINER.MAPLE.N_CTX = 2
    # Prompt words before the class name; the context starts as its first N_CTX tokens and the
    # remaining words stay fixed ("" = N_CTX random tokens, N(0, 0.02))
    cfg.TRAINER.MAPLE.CTX_INIT = "a photo of a"
    cfg.TRAINER.MAPLE.PREC = "fp16"  # fp16 (MaPLe default), fp32, amp or bf16; fp16/amp fall back to fp32 on CPU
    # J: layers 1..J of both towers get prompts (1 = shallow MaPLe); at most the CLIP's layer count (12 for ViT-B)
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9
    # Encode the class prompts this many at a time, each chunk checkpointed in training (0 = all
    # at once); as TRAINER.COOP.TEXT_CHUNK_SIZE (not a MaPLe release key)
    cfg.TRAINER.MAPLE.TEXT_CHUNK_SIZE = 0


MAPLE_CONFIG = register_config_part(ConfigPart(
    "TRAINER.MAPLE", add_maple_config,
    choices={"TRAINER.MAPLE.PREC": PRECISIONS},
    # the depth's upper bound is the CLIP's layer count, checked when the prompt learner is built
    minimums={"TRAINER.MAPLE.N_CTX": (1, "context tokens per prompted layer"),
              "TRAINER.MAPLE.PROMPT_DEPTH": (1, "prompted layers J"),
              "TRAINER.MAPLE.TEXT_CHUNK_SIZE": (0, "classes per text chunk (0 = all)")},
))


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


@register_trainer
class MaPLe_TextRefiner(TextRefinerMixin, MaPLe):
    """MaPLe + local cache, feature aggregation and alignment; keys under TRAINER.MAPLE and TRAINER.TEXTREFINER."""
