"""Input checks train.py runs before it writes anything: each failure is one ``UserError`` line.

Config files and ``KEY VALUE`` pairs are merged with yacs's own rules; its errors
(an unknown key, a value of the wrong type, an odd number of overrides) become one
line with the closest valid key. Then every value with a fixed set of choices or a
range is checked, so a typo stops the run at once instead of as an internal error
deep in torch (or not at all).
"""
import difflib
import math
import os
from typing import List, Sequence

from textrefiner.clip_backbone import RANDOM_ARCHS, RANDOM_PREFIX, import_clip
from textrefiner.errors import UserError
from textrefiner.framework import DATASET_REGISTRY, FRAMEWORK, TRAINER_REGISTRY
from textrefiner.config import ConfigPart, check_values, config_part

#: the framework's own keys (Dassl's names): checked for every run; each host's and TextRefiner's
#: keys are checked by the config part that adds them (``textrefiner.config.ConfigPart``)
DASSL_CHECKS = ConfigPart(
    "Dassl", lambda cfg: None,
    choices={
        # Dassl tests the best-val model for "best_val" and the last epoch's for anything else; these
        # are the names Dassl (last_step) and the MaPLe release (last_epoch) use
        "TEST.FINAL_MODEL": ("best_val", "last_step", "last_epoch"),
        "TEST.SPLIT": ("val", "test"),
        # Dassl also has radam; the built-in engine refuses it when building the optimizer
        "OPTIM.NAME": ("adam", "amsgrad", "sgd", "rmsprop", "adamw") + (("radam",) if FRAMEWORK == "dassl" else ()),
        "OPTIM.LR_SCHEDULER": ("single_step", "multi_step", "cosine"),
        "OPTIM.WARMUP_TYPE": ("constant", "linear"),
        "INPUT.INTERPOLATION": ("bilinear", "bicubic", "nearest"),
    },
    minimums={
        "OPTIM.MAX_EPOCH": (1, "epochs"),
        "OPTIM.WARMUP_EPOCH": (-1, "warm-up epochs; 0 or Dassl's default -1 for none"),
        "DATALOADER.TRAIN_X.BATCH_SIZE": (1, "training images per batch"),
        "DATALOADER.TEST.BATCH_SIZE": (1, "evaluation images per batch"),
        "DATALOADER.NUM_WORKERS": (0, "data-loading processes"),
        "TRAIN.PRINT_FREQ": (1, "batches between progress lines"),
        # Dassl's -1 (its default) and 0 (PromptKD's shots_0) mean every training image
        "DATASET.NUM_SHOTS": (-1, "images per class; -1 or 0 for every training image"),
    },
    ranges={"OPTIM.LR": (1e-12, math.inf), "OPTIM.WEIGHT_DECAY": (0.0, math.inf), "OPTIM.MOMENTUM": (0.0, 1.0)},
)


def _all_keys(node, prefix: str = "") -> List[str]:
    keys = []
    for key, value in node.items():
        keys += _all_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return keys


def _closest(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else ""


def _foreign_trainer_hint(key: str, cfg) -> str:
    """For a whole trainer section this project lacks (a YAML of another method, e.g. CoCoOp's
    TRAINER.COCOOP): what sections exist and where this project's configs are."""
    parts = key.split(".")
    if len(parts) < 2 or parts[0] != "TRAINER" or parts[1] in cfg.TRAINER:
        return ""
    sections = ", ".join(f"TRAINER.{k}" for k in sorted(cfg.TRAINER) if k != "NAME")
    return (f"; TRAINER.{parts[1]} belongs to a method this project does not have (its trainer sections: "
            f"{sections}): use a config of configs/trainers/<Trainer>/ for one of its trainers")


def duplicate_keys(path: str) -> List[str]:
    """Keys that a YAML file gives twice in one mapping (YAML keeps the last silently), with their lines."""
    import yaml

    found = []

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                key, line = self.construct_object(key_node, deep=deep), key_node.start_mark.line + 1
                if key in seen:
                    found.append(f"{key} (lines {seen[key]} and {line})")
                seen.setdefault(key, line)
            return super().construct_mapping(node, deep=deep)

    with open(path, encoding="utf-8") as f:
        yaml.load(f, Loader=Loader)
    return found


def merge_config(cfg, path: str = "", opts: Sequence = ()) -> None:
    """``cfg.merge_from_file(path)`` or ``cfg.merge_from_list(opts)``, with yacs's errors made one line."""
    where = path or "the command line"
    if opts and len(opts) % 2:
        raise UserError(f"Config overrides come in KEY VALUE pairs; got an odd number: {list(opts)}")
    try:
        if path:
            twice = duplicate_keys(path)
            if twice:
                raise UserError(f"{path} gives {', '.join(twice)} twice; YAML would keep only the last (a second "
                                "block replaces the whole first one): merge them into one")
            cfg.merge_from_file(path)
        else:
            cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError) as e:
        message = str(e.args[0]) if e.args else ""
        if "Non-existent" not in message:  # yacs: "Non-existent config key: K" / "Non-existent key: K"
            raise UserError(f"Cannot merge {where}: {message}") from None
        key = message.split(":", 1)[1].strip()
        raise UserError(f"Unknown config key {key} in {where}{_closest(key, _all_keys(cfg))}"
                        f"{_foreign_trainer_hint(key, cfg)}") from None
    except ValueError as e:  # yacs: "Type mismatch (<class 'float'> vs. <class 'str'>) with values (...) for config key: K"
        raise UserError(f"Bad value in {where}: {' '.join(str(e).split())}; give a value of the key's type") from None
    except UserError:
        raise
    except Exception as e:  # a YAML syntax error, a file that is not a mapping
        raise UserError(f"Cannot read {where}: {' '.join(str(e).split())[:300]}") from None


def check_args(args) -> None:
    """Flags that must go together or name existing things."""
    if args.eval_only and args.model_dir and not os.path.isdir(args.model_dir):
        raise UserError(f"--model-dir {args.model_dir} is not a folder: pass the output folder of a training run")
    if args.load_epoch is not None and not args.model_dir:
        raise UserError("--load-epoch needs --model-dir (the training run's output folder) and --eval-only")
    if args.model_dir and not args.eval_only:
        raise UserError("--model-dir is read only with --eval-only; to continue training a run use --resume DIR")
    if args.resume and not os.path.isdir(args.resume):
        raise UserError(f"--resume {args.resume} is not a folder: pass the output folder of the run to continue")


def check_cfg_values(cfg) -> None:
    """Every value with a fixed set of choices or a range, before anything runs."""
    if cfg.TRAINER.NAME not in TRAINER_REGISTRY.registered_names():
        names = sorted(TRAINER_REGISTRY.registered_names())
        raise UserError(f"Unknown trainer {cfg.TRAINER.NAME!r}{_closest(cfg.TRAINER.NAME, names)}; "
                        f"pass --trainer with one of {names}")
    if cfg.DATASET.NAME not in DATASET_REGISTRY.registered_names():
        names = sorted(DATASET_REGISTRY.registered_names())
        raise UserError(f"Unknown dataset {cfg.DATASET.NAME!r}{_closest(cfg.DATASET.NAME, names)}; pass a file from "
                        f"configs/datasets/ with --dataset-config-file (registered: {names})")
    trainer = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    names = trainer.config_part_names() if hasattr(trainer, "config_part_names") else ()
    parts = [part for part in (config_part(name) for name in names) if part is not None]
    try:
        check_values(cfg, [DASSL_CHECKS, *parts])
    except ValueError as e:  # ConfigError, and the SettingErrors a part's own check raises
        raise UserError(str(e)) from None
    if FRAMEWORK == "builtin":
        from textrefiner.framework.builtin.transforms import AVAI_CHOICES
    else:  # Dassl asserts on an unknown name deep inside build_transform
        from dassl.data.transforms.transforms import AVAI_CHOICES
    unknown = [t for t in cfg.INPUT.TRANSFORMS if t not in AVAI_CHOICES]
    if unknown:
        where = "without Dassl" if FRAMEWORK == "builtin" else "in Dassl"
        raise UserError(f"INPUT.TRANSFORMS {unknown} are not available {where}; choose from {list(AVAI_CHOICES)}")
    if not cfg.OUTPUT_DIR:
        raise UserError("No output folder: pass --output-dir")
    _check_backbone(cfg.MODEL.BACKBONE.NAME)


def config_warnings(cfg) -> List[str]:
    """Settings that run but likely not as meant (printed as ``Warning:`` lines into the log)."""
    warned = []
    optim = cfg.OPTIM
    if 0 < optim.MAX_EPOCH <= optim.WARMUP_EPOCH:
        warned.append(f"OPTIM.WARMUP_EPOCH {optim.WARMUP_EPOCH} >= OPTIM.MAX_EPOCH {optim.MAX_EPOCH}: every epoch is "
                      f"a warm-up epoch, so the run never trains at OPTIM.LR {optim.LR:g}; lower OPTIM.WARMUP_EPOCH "
                      "(0: no warm-up) if that is not what you meant")
    return warned


def _check_backbone(name: str) -> None:
    """Names load_clip would refuse with an internal error (missing files are its own clear error)."""
    if name.startswith(RANDOM_PREFIX):
        arch = name[len(RANDOM_PREFIX):]
        if arch not in RANDOM_ARCHS:
            raise UserError(f"MODEL.BACKBONE.NAME {name}: no random CLIP architecture {arch!r}; use one of "
                            f"{[RANDOM_PREFIX + a for a in sorted(RANDOM_ARCHS)]}")
        return
    from textrefiner.testbed.model import TESTBED_MODELS

    looks_like_path = name.endswith((".pt", ".pth")) or os.path.isabs(name) or name.startswith(("./", "../", "~"))
    known = name in import_clip().available_models() or name in TESTBED_MODELS
    if not looks_like_path and not os.path.isfile(name) and not known:
        raise UserError(f"MODEL.BACKBONE.NAME {name!r} is neither an OpenAI CLIP name "
                        f"{import_clip().available_models()}, the offline testbed CLIP {sorted(TESTBED_MODELS)}, "
                        f"a weights file, nor {RANDOM_PREFIX}<arch>")
