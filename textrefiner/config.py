"""Every config key this project adds to Dassl's defaults, each with its meaning.

``add_textrefiner_config(cfg)`` is the one call a CoOp-family ``train.py`` needs (in its
``extend_cfg``, detectron2's ``add_pointrend_config`` pattern): it adds every key of this
project that ``cfg`` lacks and leaves the keys it already has (the checkout's own
``TRAINER.COOP``, ``TRAINER.MAPLE``, ...) as they are. Host keys keep their upstream
names and defaults (``TRAINER.COOP.*``) so upstream YAML files work unchanged.
Our trainers check at build that these keys exist (``check_project_keys``).

This module holds the keys every trainer shares (data, run, backbone) and the registry of
``ConfigPart``s: each host's trainer module registers its own keys and their checks beside its
trainers (``textrefiner/trainers/coop.py`` for ``TRAINER.COOP``, ...), so importing
``textrefiner.trainers`` is what makes ``add_textrefiner_config`` add them.
"""
import math
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from yacs.config import CfgNode as CN

#: other repositories' names of our keys, read as ours with one ``Note:`` line per process
#: (``run_config/merge.py``): PromptKD's release scripts pass ``TRAINER.MODAL base2novel`` / ``cross``
KEY_ALIASES = {"TRAINER.MODAL": "TRAINER.PROMPTKD.MODAL"}


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
    # Your own images, with no code (DATASET.NAME ImageFolder, textrefiner/data/image_folder.py)
    cfg.DATASET.IMAGE_FOLDER = CN()
    # The folder under DATASET.ROOT (--root) holding one folder per class, or the CSV file
    cfg.DATASET.IMAGE_FOLDER.DIR = ""
    # A CSV file in DIR of `path,label[,split]` rows (paths relative to DIR) instead of class folders
    cfg.DATASET.IMAGE_FOLDER.CSV = ""
    # A file in DIR naming classes for the prompts: JSON {"folder": "name"} or `folder name` lines
    cfg.DATASET.IMAGE_FOLDER.CLASSNAMES = ""
    # The split drawn once (seeded) per class and saved in DIR as a CoOp split file: train, val,
    # and the rest test (CoOp's read_and_split_data: 0.5 / 0.2 / 0.3)
    cfg.DATASET.IMAGE_FOLDER.TRAIN_FRACTION = 0.5
    cfg.DATASET.IMAGE_FOLDER.VAL_FRACTION = 0.2


def check_image_folder(cfg: CN) -> None:
    """The ImageFolder keys: a folder to read, and fractions that leave images for the test split."""
    node = cfg.DATASET.get("IMAGE_FOLDER")
    if node is None:
        return
    train, val = node.TRAIN_FRACTION, node.VAL_FRACTION
    if train + val >= 1:
        raise ConfigError(f"DATASET.IMAGE_FOLDER.TRAIN_FRACTION + VAL_FRACTION must be < 1 (the rest is the test "
                          f"split), got {train:g} + {val:g}")
    if cfg.DATASET.NAME == "ImageFolder" and not node.DIR:
        raise ConfigError("DATASET.NAME ImageFolder reads DATASET.IMAGE_FOLDER.DIR: set it to the folder under "
                          "--root that holds one folder per class (or the CSV file)")


def add_run_config(cfg: CN) -> None:
    # Resuming with a larger OPTIM.MAX_EPOCH is refused unless this is True; then the learning-rate
    # schedule is re-planned for the new length from the resumed epoch on (earlier epochs keep theirs)
    cfg.TRAIN.EXTEND_EPOCHS = False
    # True: re-seed the random generators with SEED right before training, so the batches (sampler order,
    # random crops and flips) depend on the seed only, not on what building the model drew (CoOp's random
    # context, TextRefiner's cache): variants of a trainer then see the same batches, alone or trained together
    # (the sweep's shared mode sets it). False (default): upstream's stream, same seed -> same results as before
    cfg.TRAIN.SEEDED_DATA_STREAM = False


def add_backbone_config(cfg: CN) -> None:
    # Local CLIP weights file for an OpenAI MODEL.BACKBONE.NAME (default: ~/.cache/clip/<file>)
    cfg.MODEL.BACKBONE.PATH = ""


#: key -> the values it accepts; key -> (smallest whole number, what it counts); key -> closed range
Choices = Mapping[str, Sequence]
Minimums = Mapping[str, Tuple[int, str]]
Ranges = Mapping[str, Tuple[float, float]]


@dataclass(frozen=True)
class ConfigPart:
    """One part of the project's config: the keys ``add`` puts on a config (each with a comment
    saying what it means) and how train.py checks their values before anything runs.

    Every host's trainer module registers its own part (``register_config_part``), beside its
    trainers; ``add_textrefiner_config`` adds every registered part's keys.
    """

    name: str  # the node it adds, e.g. "TRAINER.COOP"
    add: Callable[[CN], None]
    choices: Choices = field(default_factory=dict)
    minimums: Minimums = field(default_factory=dict)
    ranges: Ranges = field(default_factory=dict)
    #: checks across keys (or against facts a table cannot state); raises ConfigError
    check: Optional[Callable[[CN], None]] = None


_PARTS: Dict[str, ConfigPart] = {}


def register_config_part(part: ConfigPart) -> ConfigPart:
    """Add ``part`` to what ``add_textrefiner_config`` adds (registering a name again replaces it)."""
    _PARTS[part.name] = part
    return part


def config_parts() -> Tuple[ConfigPart, ...]:
    """The registered parts, in registration order (this module's own first, then the hosts')."""
    return tuple(_PARTS.values())


def config_part(name: str) -> Optional[ConfigPart]:
    return _PARTS.get(name)


def _get(cfg: CN, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def check_values(cfg: CN, parts: Iterable[ConfigPart]) -> None:
    """Every value of ``parts`` with a fixed set of choices or a range; the first failure raises
    ``ConfigError`` naming the key, the accepted values and the value given."""
    for part in parts:
        for key, choices in part.choices.items():
            value = _get(cfg, key)
            if value not in choices:
                raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")
        for key, (low, meaning) in part.minimums.items():
            value = _get(cfg, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{key} ({meaning}) must be a whole number >= {low}, got {value!r}")
        for key, (low, high) in part.ranges.items():
            value = _get(cfg, key)
            if not isinstance(value, (int, float)) or math.isnan(value) or not low <= value <= high:
                bounds = f"in [{low}, {high}]" if math.isfinite(high) else ("> 0" if low > 0 else f">= {low}")
                raise ConfigError(f"{key} must be a number {bounds}, got {value!r}")
        if part.check is not None:
            part.check(cfg)


for _part in (
    ConfigPart(
        "DATASET", add_data_config, choices={"DATASET.SUBSAMPLE_CLASSES": ("all", "base", "new")},
        ranges={"DATASET.IMAGE_FOLDER.TRAIN_FRACTION": (0.01, 0.99), "DATASET.IMAGE_FOLDER.VAL_FRACTION": (0.01, 0.99)},
        check=check_image_folder,
    ),
    ConfigPart("TRAIN", add_run_config),
    ConfigPart("MODEL.BACKBONE", add_backbone_config),
):
    register_config_part(_part)


def project_keys() -> CN:
    """Every key this project adds, on an otherwise empty tree."""
    cfg = CN()
    cfg.DATASET = CN()
    cfg.MODEL = CN()
    cfg.MODEL.BACKBONE = CN()
    cfg.TRAINER = CN()
    cfg.TRAIN = CN()
    for part in config_parts():
        part.add(cfg)
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
    if not any(part.name.startswith("TRAINER.") for part in config_parts()):
        raise ConfigError("No trainer has registered its config keys yet: `import textrefiner.trainers` first (it "
                          "registers the trainers and their keys), then call add_textrefiner_config(cfg)")
    from .framework.registration import report_kept  # loaded already: the trainers registered (above)

    report_kept()  # a checkout that imported its own classes after ours: one line per registry
    frozen = cfg.is_frozen()
    cfg.defrost()
    _add_missing(cfg, project_keys())
    if frozen:
        cfg.freeze()
    return cfg


def missing_project_keys(cfg: CN) -> List[str]:
    """The project's keys (dotted names) that ``cfg`` lacks."""
    return _missing(cfg, project_keys())


def check_project_keys(cfg: CN, first: Sequence[str] = ()) -> None:
    """Fail in one line if ``cfg`` was not extended with this project's keys (those under the
    nodes ``first`` named first: the ones the trainer at hand reads)."""
    missing = missing_project_keys(cfg)
    # the named parts' keys first, taking turns, so that the few shown name every part
    groups = [[key for key in missing if key.startswith(f"{name}.")] for name in first]
    missing = list(dict.fromkeys([key for row in zip_longest(*groups) for key in row if key] + missing))
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
