"""``PromptSRC``: Self-Regulating Prompts (Khattak et al., ICCV 2023), https://arxiv.org/abs/2307.06948.

IVLP prompts trained with CE + the self-regularising terms (``hosts/promptsrc.py``) and
Gaussian prompt aggregation over the epochs. Differences from the release (README, "Training a
PromptKD teacher"): GPA averages the trainable parameters only, in float32 (the release averages
the whole state_dict in its dtypes, rounding frozen fp16 weights); the frozen image features come
from the same image tower run without prompts, not a second copy of it; the template text
targets are encoded in the run's precision.

``TRAINER.PROMPTSRC.TEACHER_FILE`` makes the trainer write its final model as a PromptKD teacher
(``teacher_state_dict``'s key layout) once training and the final test are done.
"""
import os.path as osp


from textrefiner.atomic import save_torch
from textrefiner.config import ConfigError
from textrefiner.framework import register_trainer
from textrefiner.hosts.ivlp import teacher_state_dict
from textrefiner.hosts.prompt_averaging import GaussianPromptAverage, gaussian_weights
from textrefiner.hosts.promptsrc import PromptSRCCLIP, self_regularizing_losses, template_text_features

from .ivlp import IVLP, build_ivlp_prompt_learner

#: registered name of the GPA running sums (saved beside the prompts, so a resumed run averages right)
GPA_MODEL_NAME = "gpa"


@register_trainer
class PromptSRC(IVLP):
    """IVLP + self-regularisation towards frozen CLIP + GPA. Keys under TRAINER.PROMPTSRC."""

    host_key = "PROMPTSRC"

    def build_host(self, clip_model) -> dict:
        classnames = self.dm.dataset.classnames
        prompt_learner = build_ivlp_prompt_learner(self.host_cfg, classnames, clip_model, self.host_key)
        print("Encoding the frozen CLIP's text features of 60 ImageNet templates per class (text targets)")
        frozen_text = template_text_features(clip_model.to(self.device), classnames)
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
        state = {
            "state_dict": teacher_state_dict(self.model),
            "epoch": self.max_epoch,
            "optimizer": None,
            "scheduler": None,
            "val_result": None,
        }
        save_torch(state, path, serialise_first=True)
        print(f"PromptKD teacher written to {path}")
        return path
