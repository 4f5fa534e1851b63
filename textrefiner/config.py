"""Every config key this project adds to Dassl's defaults, each with its meaning.

``add_textrefiner_config(cfg)`` is the one call a CoOp-family ``train.py`` needs (in its
``extend_cfg``, detectron2's ``add_pointrend_config`` pattern): it adds every key of this
project that ``cfg`` lacks and leaves the keys it already has (the checkout's own
``TRAINER.COOP``, ``TRAINER.MAPLE``, ...) as they are. Host keys keep their upstream
names and defaults (``TRAINER.COOP.*``) so upstream YAML files work unchanged.
Our trainers check at build that these keys exist (``check_project_keys``).
"""
from typing import List

from yacs.config import CfgNode as CN

from .teacher_layout import BASE2NOVEL, DEFAULT_TEACHER_DIR


class ConfigError(ValueError):
    """A config that cannot run; the message says what to change."""


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
    # (base2novel) and <TEACHER_DIR>/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20 (cross); teacher_layout.py
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


def add_promptsrc_config(cfg: CN) -> None:
    """``TRAINER.PROMPTSRC.*`` with the PromptSRC release's names and defaults (integers where the
    release has integers, so its YAML files merge)."""
    cfg.TRAINER.PROMPTSRC = CN()
    cfg.TRAINER.PROMPTSRC.N_CTX_VISION = 4  # learnable vision tokens per prompted layer
    cfg.TRAINER.PROMPTSRC.N_CTX_TEXT = 4  # learnable text tokens per prompted layer
    cfg.TRAINER.PROMPTSRC.CTX_INIT = "a photo of a"  # as TRAINER.IVLP.CTX_INIT
    cfg.TRAINER.PROMPTSRC.PREC = "fp16"  # fp16 (release default), fp32, amp or bf16; fp16/amp fall back to fp32 on CPU
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = 9  # as TRAINER.IVLP.PROMPT_DEPTH_VISION
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = 9  # as TRAINER.IVLP.PROMPT_DEPTH_TEXT
    cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT = 25  # weight of L1(prompted text vs frozen 60-template text features)
    cfg.TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT = 10  # weight of L1(prompted vs frozen image features)
    # Gaussian prompt aggregation: epoch e (1-based) weighs N(e; GPA_MEAN, GPA_STD^2), normalised over the epochs
    cfg.TRAINER.PROMPTSRC.GPA_MEAN = 15
    cfg.TRAINER.PROMPTSRC.GPA_STD = 1
    cfg.TRAINER.PROMPTSRC.TEXT_CHUNK_SIZE = 0  # as TRAINER.COOP.TEXT_CHUNK_SIZE (not a release key)
    # After training, write the final model as a PromptKD teacher file at this path ("" = none), in the
    # release's key layout (textrefiner.checkpoints.ivlp.teacher_state_dict); not a release key
    cfg.TRAINER.PROMPTSRC.TEACHER_FILE = ""
    # Replace an existing TEACHER_FILE; False stops before training when the file exists
    cfg.TRAINER.PROMPTSRC.TEACHER_OVERWRITE = False


def add_refiner_config(cfg: CN) -> None:
    """``TRAINER.TEXTREFINER.*``: defaults are the authors' release (REFERENCE.md section 2)."""
    cfg.TRAINER.TEXTREFINER = CN()
    cfg.TRAINER.TEXTREFINER.ENABLED = True  # False: the trainer is exactly its host (CoOp, MaPLe, ...)
    cfg.TRAINER.TEXTREFINER.CACHE_SIZE = 25  # M, number of local-cache entries (Eqs. 2-6)
    cfg.TRAINER.TEXTREFINER.MOMENTUM = 0.8  # gamma in Eq. 4 ("momentum alpha" in the paper's details)
    cfg.TRAINER.TEXTREFINER.ALPHA = 0.2  # alpha in Eq. 7, weight of the aggregated detail ("fusion factor beta")
    # lambda_1 in Eq. 12, weight of the semantic loss (1/50), relative to the host's loss weight
    # (1 for CoOp/MaPLe; TRAINER.PROMPTKD.KD_WEIGHT for PromptKD, whose configs use 1/100)
    cfg.TRAINER.TEXTREFINER.LAMBDA_SEM = 0.02
    # lambda_2 in Eq. 12, weight of the regularisation loss, relative as LAMBDA_SEM (PromptKD configs: 1/50)
    cfg.TRAINER.TEXTREFINER.LAMBDA_REG = 20.0
    cfg.TRAINER.TEXTREFINER.TOPK = 5  # k in Eq. 10, patch tokens with the highest CLS attention
    # Cache update: "release" (authors' code: token-softmax weights, sum, re-normalised entries)
    # or "paper" (Eq. 4 as printed: entry-softmax weights D_ij on raw tokens, no re-normalisation)
    cfg.TRAINER.TEXTREFINER.UPDATE_RULE = "release"
    # Semantic set S in Eq. 10: "release" (CLS + top-k + mean, k + 2 tokens) or "paper" (top-k + mean)
    cfg.TRAINER.TEXTREFINER.SEMANTIC_SET = "release"
    # L2-normalise the refined features E_hat before the logits (the paper's cosine); the release does not
    cfg.TRAINER.TEXTREFINER.NORMALIZE_REFINED = False


#: what each part of the project adds, in order; a new host appends its own function here
CONFIG_PARTS = (
    add_data_config, add_run_config, add_backbone_config, add_coop_config, add_maple_config, add_promptkd_config, add_refiner_config,
    add_ivlp_config, add_promptsrc_config,
)


def project_keys() -> CN:
    """Every key this project adds, on an otherwise empty tree."""
    cfg = CN()
    cfg.DATASET = CN()
    cfg.MODEL = CN()
    cfg.MODEL.BACKBONE = CN()
    cfg.TRAINER = CN()
    cfg.TRAIN = CN()
    for add in CONFIG_PARTS:
        add(cfg)
    return cfg


def _missing(cfg: CN, keys: CN, prefix: str = "") -> List[str]:
    missing = []
    for name, value in keys.items():
        if name not in cfg:
            missing.append(prefix + name)
        elif isinstance(value, CN):
            missing += _missing(cfg[name], value, f"{prefix}{name}.")
    return missing


def _add_missing(cfg: CN, keys: CN) -> None:
    for name, value in keys.items():
        if name not in cfg:
            cfg[name] = value
        elif isinstance(value, CN) and isinstance(cfg[name], CN):
            _add_missing(cfg[name], value)


def add_textrefiner_config(cfg: CN) -> CN:
    """Add every key of this project that ``cfg`` lacks (in place); keys already there keep their
    values. Call it in your ``train.py``'s ``extend_cfg``, before the YAML files are merged."""
    frozen = cfg.is_frozen()
    cfg.defrost()
    _add_missing(cfg, project_keys())
    if frozen:
        cfg.freeze()
    return cfg


def missing_project_keys(cfg: CN) -> List[str]:
    """The project's keys (dotted names) that ``cfg`` lacks."""
    return _missing(cfg, project_keys())


def check_project_keys(cfg: CN) -> None:
    """Fail in one line if ``cfg`` was not extended with this project's keys."""
    missing = missing_project_keys(cfg)
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise ConfigError(
            f"The config lacks keys TextRefiner's trainers read ({shown}): call "
            "textrefiner.config.add_textrefiner_config(cfg) in your train.py's extend_cfg"
        )


def extend_cfg(cfg: CN) -> CN:
    """Add all project keys to a Dassl default config (in place); returns ``cfg``."""
    return add_textrefiner_config(cfg)


def get_cfg() -> CN:
    """Dassl's defaults (of the active framework) plus every key of this project."""
    from .framework import get_cfg_default

    return extend_cfg(get_cfg_default())
