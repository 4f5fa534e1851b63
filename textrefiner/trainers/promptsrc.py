"""``PromptSRC``: Self-Regulating Prompts (Khattak et al., ICCV 2023), https://arxiv.org/abs/2307.06948.

IVLP prompts trained with CE + the self-regularising terms (``hosts/promptsrc.py``) and
Gaussian prompt aggregation over the epochs. Differences from the release (README, "Training a
PromptKD teacher"): GPA averages the trainable parameters only, in float32 (the release averages
the whole state_dict in its dtypes, rounding frozen fp16 weights); the frozen image features come
from the same image tower run without prompts, not a second copy of it; the template text
targets are encoded in the run's precision.

``TRAINER.PROMPTSRC.TEACHER_FILE`` makes the trainer write its final model as a PromptKD teacher
(the release's key layout, ``checkpoints/ivlp.py``) once training and the final test are done.

``PromptSRC_TextRefiner`` (no public code has this row): the mixin's step (CE on the refined logits
+ semantic + regularisation) plus PromptSRC's terms through ``PromptSRC.host_losses``: the KL to
zero-shot CLIP on the refined logits (the classifier actually trained), the text L1 on the
prompted, unrefined text features (what PromptSRC keeps close to CLIP). GPA averages every
trainable parameter, the TextRefiner head's included; the local cache (a buffer) is never averaged.
"""
import math
import os.path as osp

from yacs.config import CfgNode as CN

from textrefiner.atomic import save_torch
from textrefiner.checkpoints.ivlp import teacher_checkpoint
from textrefiner.config import ConfigError, ConfigPart, register_config_part
from textrefiner.framework import register_trainer
from textrefiner.hosts.prompt_averaging import GaussianPromptAverage, gaussian_weights
from textrefiner.hosts.promptsrc import PromptSRCCLIP, self_regularizing_losses, template_text_features
from textrefiner.hosts.templates import IMAGENET_TEMPLATES
from textrefiner.testbed.world import CLASS_TEMPLATES as TESTBED_TEMPLATES

from .ivlp import IVLP, build_ivlp_prompt_learner, ivlp_checks
from .textrefiner import TextRefinerMixin

#: TRAINER.PROMPTSRC.TEMPLATES -> the prompt templates whose frozen text features are the text targets
TEMPLATE_SETS = {"imagenet": IMAGENET_TEMPLATES, "testbed": TESTBED_TEMPLATES}
#: registered name of the GPA running sums (saved beside the prompts, so a resumed run averages right)
GPA_MODEL_NAME = "gpa"


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
    cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT = 25  # weight of L1(prompted text vs frozen template text features)
    # The templates those frozen text features average: "imagenet" (the release: CoOp's 60 ImageNet
    # templates) or "testbed" (the testbed's caption forms, textrefiner/testbed/world.py); not a release key
    cfg.TRAINER.PROMPTSRC.TEMPLATES = "imagenet"
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


def check_gpa(cfg: CN) -> None:
    """GPA must give some epoch a weight (raises SettingError naming GPA_MEAN / GPA_STD otherwise)."""
    gaussian_weights(cfg.OPTIM.MAX_EPOCH, cfg.TRAINER.PROMPTSRC.GPA_MEAN, cfg.TRAINER.PROMPTSRC.GPA_STD)


_checks = ivlp_checks("PROMPTSRC")
PROMPTSRC_CONFIG = register_config_part(ConfigPart(
    "TRAINER.PROMPTSRC", add_promptsrc_config,
    choices={**_checks["choices"], "TRAINER.PROMPTSRC.TEMPLATES": tuple(TEMPLATE_SETS)}, minimums=_checks["minimums"],
    ranges={"TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT": (0.0, math.inf), "TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT": (0.0, math.inf),
            "TRAINER.PROMPTSRC.GPA_STD": (1e-12, math.inf)},
    check=check_gpa,
))


@register_trainer
class PromptSRC(IVLP):
    """IVLP + self-regularisation towards frozen CLIP + GPA. Keys under TRAINER.PROMPTSRC."""

    host_key = "PROMPTSRC"

    def build_host(self, clip_model) -> dict:
        classnames = self.dm.dataset.classnames
        prompt_learner = build_ivlp_prompt_learner(self.host_cfg, classnames, clip_model, self.host_key)
        templates = TEMPLATE_SETS[self.host_cfg.TEMPLATES]
        print(f"Encoding the frozen CLIP's text features of {len(templates)} {self.host_cfg.TEMPLATES} templates "
              "per class (text targets; TRAINER.PROMPTSRC.TEMPLATES)")
        frozen_text = template_text_features(clip_model.to(self.device), classnames, templates)
        self.model = PromptSRCCLIP(
            prompt_learner, clip_model, frozen_text, text_chunk_size=self.host_cfg.TEXT_CHUNK_SIZE
        )
        return {"prompt_learner": prompt_learner}

    def build_model(self) -> None:
        super().build_model()
        c = self.host_cfg
        weights = gaussian_weights(self.cfg.OPTIM.MAX_EPOCH, c.GPA_MEAN, c.GPA_STD)
        parameters = {
            f"{name}.{key}": p
            for name in self.get_model_names() for key, p in self._models[name].named_parameters() if p.requires_grad
        }
        self.prompt_average = GaussianPromptAverage(parameters, weights)
        self.register_model(GPA_MODEL_NAME, self.prompt_average, None, None)

    # ------------------------------------------------------------------ training
    def extra_losses(self, image, visual, text, logits) -> dict:
        """PromptSRC's weighted self-regularising terms for one batch: ``visual`` is the prompted
        ``VisualOutput``, ``text`` the prompted (C, d) features, ``logits`` the classifier's (B, C)."""
        c = self.host_cfg
        image_features = visual.global_feature / visual.global_feature.norm(dim=-1, keepdim=True)
        return self_regularizing_losses(
            logits, text, image_features, self.model.frozen_text_features(), self.model.frozen_image_features(image),
            self.model.logit_scale.exp(), c.TEXT_LOSS_WEIGHT, c.IMAGE_LOSS_WEIGHT,
        )

    def after_epoch(self) -> None:
        # Before the checkpoint and validation of the epoch, as the release (it loads the average at
        # the last batch): the last checkpoint and the final test hold the averaged prompts.
        self.prompt_average.add(self.epoch)
        if self.epoch + 1 == self.max_epoch:
            print("Using GPA model for final inference...")
            self.prompt_average.load()
        super().after_epoch()

    # ------------------------------------------------------------------ teacher file
    def before_train(self) -> None:
        self.check_teacher_file()
        super().before_train()

    def after_train(self) -> None:
        super().after_train()
        if self.host_cfg.TEACHER_FILE:
            self.write_teacher_file()

    def check_teacher_file(self) -> None:
        """Stop before training when TEACHER_FILE cannot be written at the end."""
        path = self.host_cfg.TEACHER_FILE
        if not path:
            return
        if getattr(self, "refiner", None) is not None:
            raise ConfigError(
                "TRAINER.PROMPTSRC.TEACHER_FILE: a PromptKD teacher has no TextRefiner head; train the teacher "
                "with --trainer PromptSRC (or set TRAINER.TEXTREFINER.ENABLED False)"
            )
        if osp.exists(path) and not self.host_cfg.TEACHER_OVERWRITE:
            raise FileExistsError(
                f"A teacher already exists at {path}: remove it, or set TRAINER.PROMPTSRC.TEACHER_OVERWRITE True "
                "(launchers: TEACHER_OVERWRITE=1) to replace it"
            )

    def write_teacher_file(self) -> str:
        """Write the current model in the release's layout (Dassl checkpoint keys), atomically."""
        path = self.host_cfg.TEACHER_FILE
        self.check_teacher_file()  # the file may have appeared while training
        save_torch(teacher_checkpoint(self.model, self.max_epoch), path, serialise_first=True)
        print(f"PromptKD teacher written to {path}")
        return path


@register_trainer
class PromptSRC_TextRefiner(TextRefinerMixin, PromptSRC):
    """PromptSRC + local cache, feature aggregation and alignment; keys under TRAINER.PROMPTSRC and TRAINER.TEXTREFINER."""
