"""``PromptTrainer``: what every trainer of this project shares, on Dassl or the built-in engine.

* CLIP loading (``MODEL.BACKBONE.NAME``/``PATH``) and one precision policy (``PREC``);
* freezing: only the modules passed to ``register_trainable`` get gradients, an
  optimizer and a scheduler, and only they (parameters and buffers) are saved;
* evaluation computes the classifier's text features once per evaluation, under
  ``torch.inference_mode``, and the final evaluation writes ``result.json``;
* checkpoints are written atomically in Dassl's format; loading ignores the
  fixed prompt-token buffers older CoOp-family checkpoints carry, and refuses a
  checkpoint of another trainer or with other prompt shapes, naming both; ``--model-dir`` /
  ``MODEL.INIT_WEIGHTS`` also take the TextRefiner and MaPLe releases' checkpoints
  (``textrefiner.checkpoints``);
* resume is exact (``resume.py``): checkpoints also carry the random-number state,
  the best validation result and the scaler, and settings changed since are refused.
"""
import time
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from textrefiner.backbones import registered_backbones
from textrefiner.backbones.resolver import load_clip
from textrefiner.checkpoints import init_from_file, init_from_release, load_release_model_dir
from textrefiner.checkpoints.loading import load_module_strictly, read_model_dir
from textrefiner.config import ConfigError, check_project_keys, check_values, config_part
from textrefiner.errors import UserError
from textrefiner.framework import (
    FRAMEWORK, TrainerX, build_lr_scheduler, build_optimizer, set_random_seed,
)
from textrefiner.framework.checkpoint import commit_pending_save, save_registered_models
from textrefiner.modeling import HardLabels
from textrefiner.precision import Precision
from textrefiner.results import build_record, write_result

from .resume import foreign_folders, resume, run_entry

#: the end-of-training line CoOp's parse_test_res.py waits for (see ``PromptTrainer.after_train``)
FINISHED_TRAINING = "Finished training"


class PromptTrainer(TrainerX):
    """Base class of the CoOp-family trainers; subclasses implement ``build_host`` and, where the
    host's loss is not cross-entropy with the labels, ``training_target``/``host_losses``."""

    #: the host's config node under TRAINER (its PREC key sets the precision)
    host_key = "COOP"
    #: name of the host's loss term in the training log
    host_loss_name = "ce"
    #: finite-loss steps this process took (a NaN before any is not the learning rate's fault)
    _updates = 0
    #: set by ``trainers.lockstep`` while it builds variants that share one CLIP and one data manager
    shared_build = None
    #: set by ``trainers.lockstep``: the image tower's output for the current training batch, computed once
    #: for all variants (None: the trainer runs its own image tower)
    given_visual = None
    #: set by ``trainers.lockstep``: the evaluation loaders yield image features instead of images
    given_image_features = False

    def __init__(self, cfg):
        check_project_keys(cfg, self.config_part_names())  # a foreign train.py that skipped add_textrefiner_config fails here, in one line
        self._started = time.time()
        self._eval_text_features: Optional[torch.Tensor] = None
        self.loaded_from = ("", None)
        self.best_epoch: Optional[int] = None
        #: per epoch, the mean of each logged training value ("loss", the terms, "acc", "teacher_agreement")
        #: over its batches: the run's health in result.json (a loss that diverged, a teacher not followed)
        self.training_curve: Dict[int, Dict[str, float]] = {}
        self.untrained = False  # set by train.py for --eval-only without --model-dir
        super().__init__(cfg)

    @property
    def host_cfg(self):
        return self.cfg.TRAINER[self.host_key]

    @classmethod
    def config_part_names(cls) -> Tuple[str, ...]:
        """The config parts (``textrefiner.config.ConfigPart``) whose keys this trainer reads."""
        return ("DATASET", f"TRAINER.{cls.host_key}")

    def check_cfg(self, cfg) -> None:
        """The values of this trainer's config parts (train.py checks them before anything runs;
        here again for a foreign train.py, which does not)."""
        check_values(cfg, [config_part(name) for name in self.config_part_names() if config_part(name)])

    # ------------------------------------------------------------------ building
    def load_clip(self) -> nn.Module:
        """CLIP cast to the precision policy (``self.precision``), still on the CPU."""
        name = self.cfg.MODEL.BACKBONE.NAME
        print(f"Loading CLIP (backbone: {name})")
        self.precision = Precision(self.host_cfg.PREC, self.device)
        if self.shared_build is not None and self.shared_build.clip is not None:
            return self.shared_build.reuse_clip()
        model = load_clip(name, self.cfg.MODEL.BACKBONE.PATH)
        expected = getattr(model.visual, "input_resolution", None)
        if expected is not None and tuple(self.cfg.INPUT.SIZE) != (expected, expected):
            shipped = registered_backbones().get(name)
            hint = f" (the {name} configs are {shipped.configs})" if shipped is not None and shipped.configs else ""
            raise ConfigError(f"INPUT.SIZE {tuple(self.cfg.INPUT.SIZE)} does not fit backbone {name}, which takes "
                             f"{expected} x {expected} images: set INPUT.SIZE ({expected}, {expected}){hint}")
        model = self.precision.cast(model)
        if self.shared_build is not None:
            self.shared_build.keep_clip(model)
        return model

    def build_data_loader(self) -> None:
        if self.shared_build is not None and self.shared_build.data is not None:
            self.shared_build.reuse_data(self)
            return
        super().build_data_loader()
        if self.shared_build is not None:
            self.shared_build.keep_data(self)

    def build_model(self) -> None:
        """Template: load CLIP, build the host (``build_host``) and any plug-ins
        (``build_plugins``), then freeze everything but their trainable modules."""
        clip_model = self.load_clip()
        print("Building custom CLIP")
        trainable = self.build_host(clip_model)
        trainable.update(self.build_plugins(clip_model))
        self.register_trainable(trainable)

    def build_host(self, clip_model: nn.Module) -> Dict[str, nn.Module]:
        """Set ``self.model`` (the host on frozen CLIP); return its trainable modules by name."""
        raise NotImplementedError

    def build_plugins(self, clip_model: nn.Module) -> Dict[str, nn.Module]:
        """Extra trainable modules beside the host (TextRefiner adds its head here)."""
        return {}

    def register_trainable(self, trainable: Dict[str, nn.Module]) -> None:
        """Freeze ``self.model`` except the trainable modules, move everything to the device,
        and register each trainable module with its own optimizer and scheduler from
        ``cfg.OPTIM`` (the same as one optimizer over all of them: every setting is per
        parameter). Registered modules are what checkpoints hold."""
        print("Turning off gradients in both the image and the text encoder")
        for p in self.model.parameters():
            p.requires_grad_(False)
        for module in trainable.values():
            module.requires_grad_(True)
            module.to(self.device)
        self.model.to(self.device)
        names = [f"{m}.{n}" for m, module in trainable.items() for n, _ in module.named_parameters()]
        print(f"Parameters to be updated: {names}")
        print(f"# trainable parameters: {sum(p.numel() for m in trainable.values() for p in m.parameters()):,}")
        init_weights = self.cfg.MODEL.INIT_WEIGHTS
        if init_weights and not init_from_release(trainable, init_weights):
            init_from_file(trainable, init_weights)
        self.precision.warn_about_traps(self.cfg.OPTIM.NAME)
        for name, module in trainable.items():
            optim = build_optimizer(module, self.cfg.OPTIM)
            sched = build_lr_scheduler(optim, self.cfg.OPTIM)
            self.register_model(name, module, optim, sched)
        if torch.cuda.device_count() > 1:
            print(
                f"{torch.cuda.device_count()} GPUs visible; training runs on {self.device} only "
                "(select one with CUDA_VISIBLE_DEVICES, run several seeds in parallel with the sweep runner)"
            )

    # ------------------------------------------------------------------ training
    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch) -> dict:
        """One training step: the named losses of the host (and of any plug-in), summed."""
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            target = self.training_target(image, label)
            logits, losses = self.training_losses(image, target)
            loss = sum(losses.values())
        self.model_backward_and_update(loss)
        self.step_lr_at_epoch_end()
        logged = {"loss": loss.item(), **{name: term.item() for name, term in losses.items()}, **target.metrics(logits)}
        self.record_training_values(logged)
        return logged

    def record_training_values(self, logged: Dict[str, float]) -> None:
        """Add one batch's logged values to this epoch's means (``training_curve``; nothing is computed)."""
        epoch = getattr(self, "epoch", 0)  # a step outside the train loop (benchmarks) counts as epoch 1
        sums = self._curve_sums if getattr(self, "_curve_epoch", None) == epoch else {}
        self._curve_epoch, self._curve_sums = epoch, sums
        for name, value in logged.items():
            total, count = sums.get(name, (0.0, 0))
            sums[name] = (total + float(value), count + 1)
        curve = self.__dict__.setdefault("training_curve", {})  # trainers built without __init__ (benchmarks)
        curve[epoch + 1] = {name: total / count for name, (total, count) in sums.items()}

    def training_target(self, image: torch.Tensor, label: torch.Tensor):
        """What the host's loss compares logits to (``modeling.targets``): here the labels."""
        return HardLabels(label)

    def training_losses(self, image: torch.Tensor, target) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The one shape of every trainer's step: the image tower, the text features t (C, d), the
        classifier's text features (t, or a plug-in's refinement of it), the logits (B, C), then the
        named loss terms: the host's (``host_losses``), the plug-in's (``plugin_losses``), the host's
        that need the image tower's output (``extra_losses``). That order is the order of their sum
        and of the autograd graph, so it is part of the numbers."""
        visual = self.given_visual
        if visual is None:
            visual = self.model.encode_image(image, with_local=self.needs_local_tokens)
        text = self.prompted_text_features(visual)
        classifier_text, plugin_terms = self.training_text_features(text, visual, target)
        logits = self.model.logits(visual.global_feature, classifier_text)
        losses = self.host_losses(logits, target)
        losses.update(self.plugin_losses(plugin_terms, target))
        losses.update(self.extra_losses(image, visual, text, logits))
        return logits, losses

    def prompted_text_features(self, visual) -> torch.Tensor:
        """The host's text features t of this step: (C, d) shared by the batch here; (B, C, d), one set
        per image, for a host whose prompts depend on the image (CoCoOp)."""
        return self.model.text_features()

    #: whether the step's image tower also returns the local tokens and CLS attention (a plug-in's need)
    needs_local_tokens = False

    def training_text_features(self, text: torch.Tensor, visual, target) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The (C, d) text features the step's logits use and a plug-in's unweighted loss terms
        (computed from ``text``, the ``VisualOutput`` ``visual`` and ``target``): here ``text`` and none."""
        return text, {}

    def plugin_losses(self, terms: Dict[str, torch.Tensor], target) -> Dict[str, torch.Tensor]:
        """The plug-in's ``terms`` weighted, as named loss terms added after the host's: none here."""
        return {}

    def host_losses(self, logits: torch.Tensor, target) -> Dict[str, torch.Tensor]:
        return {self.host_loss_name: target.weight * target.loss(logits)}

    def extra_losses(self, image: torch.Tensor, visual, text: torch.Tensor, logits: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Weighted terms a host adds that need the image tower's output ``visual`` (a ``VisualOutput``),
        the prompted text features ``text`` (C, d) or the batch itself (PromptSRC's self-regularisation)."""
        return {}

    def model_backward_and_update(self, loss: torch.Tensor, names=None) -> None:
        names = self.get_model_names(names)
        self.model_zero_grad(names)
        self.detect_anomaly(loss)
        self.precision.backward(loss)
        self.precision.step([self._optims[n] for n in names if self._optims[n] is not None])

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if torch.isfinite(loss).all():
            self._updates += 1
            return
        where = f"The loss is {loss.item()} at epoch {self.epoch + 1}, batch {self.batch_idx + 1}"
        if not self._updates:  # nothing has been updated yet: the start, not the steps, is not finite
            raise UserError(
                f"{where}, before any update, so the learning rate is not the cause: the weights the run starts "
                f"from (MODEL.INIT_WEIGHTS, CLIP {self.cfg.MODEL.BACKBONE.NAME}, a teacher file) or a loss setting "
                "(a temperature or weight) give non-finite values; check those"
            )
        fp16 = "; or use PREC amp or bf16 (fp16 weights without loss scaling overflow)" \
            if self.precision.name == "fp16" else ""
        raise UserError(f"{where}: lower OPTIM.LR (now {self.get_current_lr():.3g}){fp16}")

    def after_epoch(self) -> None:
        super().after_epoch()
        # an epoch's saves are one commit (model-best waits for model.pth.tar-N); real Dassl's
        # after_epoch knows nothing of that, so close it here on both frameworks
        commit_pending_save(self)

    def before_train(self) -> None:
        if self.cfg.TRAIN.SEEDED_DATA_STREAM and self.cfg.SEED >= 0:
            # the batches become a function of the seed alone (resuming restores the saved state after this)
            print(f"Re-seeding the random generators with SEED {self.cfg.SEED} before training "
                  "(TRAIN.SEEDED_DATA_STREAM True: the batches depend on the seed only)")
            set_random_seed(self.cfg.SEED)
        super().before_train()

    def after_train(self) -> None:
        # Dassl prints "Finish training" before the final test, and its tools/parse_test_res.py reads the
        # metrics after that line; CoOp's parse_test_res.py waits for "Finished training" (Dassl's older
        # wording) instead. Both latch on their exact line and keep the last metric after it, so this line,
        # printed right before Dassl's with nothing between, lets both read the same final test.
        print(FINISHED_TRAINING)
        super().after_train()

    def step_lr_at_epoch_end(self) -> None:
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()

    # ---------------------------------------------------------------- evaluation
    def classifier_text_features(self) -> Optional[torch.Tensor]:
        """The (C, d) text features used at evaluation, computed once per evaluation; hosts with a
        different classifier override; None for a host whose text side depends on the image."""
        return self.model.text_features()

    def evaluation_text_features(self, text: torch.Tensor) -> torch.Tensor:
        """A plug-in's change to the evaluated text features (TextRefiner's refinement): none here."""
        return text

    def evaluation_logits(self, image: torch.Tensor, text_features: Optional[torch.Tensor]) -> torch.Tensor:
        """Logits (B, C) of a test batch from the features ``classifier_text_features`` gave; with
        ``given_image_features`` the batch holds the image tower's features (B, d), computed once for all
        variants, and the logits are the same as from the images."""
        if self.given_image_features:
            return self.model.logits(image, text_features)
        return self.model(image, text_features=text_features)

    def test(self, split: Optional[str] = None) -> float:
        """Dassl's test loop with text features computed once; the final test writes result.json."""
        self.set_model_mode("eval")
        with torch.inference_mode():
            with self.precision.autocast():
                self._eval_text_features = self.classifier_text_features()
            try:
                result = super().test(split)
            finally:
                self._eval_text_features = None
        if split is None:
            self.write_result_record()
        return result

    def model_inference(self, image: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            logits = self.evaluation_logits(image, self._eval_text_features)
        if not bool(torch.isfinite(logits).all()):  # an accuracy of NaN logits is no result: never record it
            raise UserError(
                f"The logits of {self.cfg.TRAINER.NAME} are not finite (NaN or inf) at evaluation, so no result is "
                f"recorded: the evaluated weights ({self.loaded_from[0] or 'as built'}) or the CLIP weights "
                f"({self.cfg.MODEL.BACKBONE.NAME}) hold NaN/inf, or PREC {self.precision.name} overflows (try fp32)"
            )
        return logits

    def write_result_record(self) -> str:
        record = build_record(
            self.cfg,
            eval_split=self.cfg.TEST.SPLIT if self.val_loader is not None else "test",
            y_true=self.evaluator._y_true,
            y_pred=self.evaluator._y_pred,
            lab2cname=self.lab2cname,
            framework=FRAMEWORK,
            wall_time_s=time.time() - self._started,
            model_dir=self.loaded_from[0],
            load_epoch=self.loaded_from[1],
        )
        if self.untrained:
            record["untrained"] = True
        if self.best_epoch is not None:
            record["best_epoch"] = self.best_epoch
        if self.training_curve:
            record["training_curve"] = [{"epoch": e, **self.training_curve[e]} for e in sorted(self.training_curve)]
        return write_result(self.cfg.OUTPUT_DIR, record)

    # --------------------------------------------------------------- checkpoints
    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result=None, model_name: str = ""):
        if model_name == "model-best.pth.tar":
            self.best_epoch = epoch + 1
        save_registered_models(self, epoch, directory, is_best, val_result, model_name, extra=run_entry(self))

    def resume_model_if_exist(self, directory: str) -> int:
        return resume(self, directory)

    def load_module_state(self, name: str, state_dict: Dict[str, torch.Tensor], source: str) -> None:
        """Load one registered module, strictly; a mismatch is an error naming both shapes."""
        load_module_strictly(name, self._models[name], state_dict, source, self.cfg.TRAINER.NAME)

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Load ``model-best.pth.tar`` (or ``model.pth.tar-<epoch>``) for every registered model."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        if load_release_model_dir(self._models, directory, epoch):  # the TextRefiner / MaPLe releases' folders
            self.loaded_from = (directory, epoch)
            return
        foreign_folders(directory, self.get_model_names(), self.cfg.TRAINER.NAME, strict=False)
        for name, path, checkpoint in read_model_dir(directory, self.get_model_names(), epoch):
            print(f'Loading weights to {name} from "{path}" (epoch = {checkpoint.get("epoch")})')
            self.load_module_state(name, checkpoint["state_dict"], path)
        self.loaded_from = (directory, epoch)
