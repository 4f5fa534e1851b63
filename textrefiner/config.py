"""Every config key this project adds to Dassl's defaults, each with its meaning.

``extend_cfg(cfg)`` is what ``train.py`` calls (CoOp's ``extend_cfg`` under the same
name); host keys keep their upstream names (``TRAINER.COOP.*``) so upstream YAML
files work unchanged.
"""
from yacs.config import CfgNode as CN


def add_data_config(cfg: CN) -> None:
    # Base-to-novel protocol: "all" classes, the first half ("base") or the rest ("new");
    # labels are sorted, base = first ceil(C/2), each half relabelled from 0
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    # Few-shot sampling when a class has fewer images than DATASET.NUM_SHOTS: False stops
    # with an error naming the classes; True draws that class's shots with replacement
    # (repeated images), as Dassl's generate_fewshot_dataset(repeat=True)
    cfg.DATASET.FEWSHOT_WITH_REPLACEMENT = False


def add_run_config(cfg: CN) -> None:
    # Resuming with a larger OPTIM.MAX_EPOCH is refused unless this is True; then the learning-rate
    # schedule is re-planned for the new length from the resumed epoch on (earlier epochs keep theirs)
    cfg.TRAIN.EXTEND_EPOCHS = False


def add_backbone_config(cfg: CN) -> None:
    # Local CLIP weights file for an OpenAI MODEL.BACKBONE.NAME (default: ~/.cache/clip/<file>)
    cfg.MODEL.BACKBONE.PATH = ""


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


def add_textrefiner_config(cfg: CN) -> None:
    """``TRAINER.TEXTREFINER.*``: defaults are the authors' release (REFERENCE.md section 2)."""
    cfg.TRAINER.TEXTREFINER = CN()
    cfg.TRAINER.TEXTREFINER.ENABLED = True  # False: the trainer is exactly its host (CoOp, MaPLe, ...)
    cfg.TRAINER.TEXTREFINER.CACHE_SIZE = 25  # M, number of local-cache entries (Eqs. 2-6)
    cfg.TRAINER.TEXTREFINER.MOMENTUM = 0.8  # gamma in Eq. 4 ("momentum alpha" in the paper's details)
    cfg.TRAINER.TEXTREFINER.ALPHA = 0.2  # alpha in Eq. 7, weight of the aggregated detail ("fusion factor beta")
    cfg.TRAINER.TEXTREFINER.LAMBDA_SEM = 0.02  # lambda_1 in Eq. 12, weight of the semantic loss (1/50)
    cfg.TRAINER.TEXTREFINER.LAMBDA_REG = 20.0  # lambda_2 in Eq. 12, weight of the regularisation loss
    cfg.TRAINER.TEXTREFINER.TOPK = 5  # k in Eq. 10, patch tokens with the highest CLS attention
    # Cache update: "release" (authors' code: token-softmax weights, sum, re-normalised entries)
    # or "paper" (Eq. 4 as printed: entry-softmax weights D_ij on raw tokens, no re-normalisation)
    cfg.TRAINER.TEXTREFINER.UPDATE_RULE = "release"
    # Semantic set S in Eq. 10: "release" (CLS + top-k + mean, k + 2 tokens) or "paper" (top-k + mean)
    cfg.TRAINER.TEXTREFINER.SEMANTIC_SET = "release"
    # L2-normalise the refined features E_hat before the logits (the paper's cosine); the release does not
    cfg.TRAINER.TEXTREFINER.NORMALIZE_REFINED = False


def extend_cfg(cfg: CN) -> CN:
    """Add all project keys to a Dassl default config (in place); returns ``cfg``."""
    add_data_config(cfg)
    add_run_config(cfg)
    add_backbone_config(cfg)
    add_coop_config(cfg)
    add_maple_config(cfg)
    add_textrefiner_config(cfg)
    return cfg


def get_cfg() -> CN:
    """Dassl's defaults (of the active framework) plus every key of this project."""
    from .framework import get_cfg_default

    return extend_cfg(get_cfg_default())
