"""The testbed's downstream datasets, in CoOp's layout, generated under ``--root`` on first use.

* ``TestbedShapes`` (coarse, like Caltech101): 24 colour-shape classes ("red star"); the
  novel half holds the six colour-shape pairs pretraining never showed.
* ``TestbedPatterns`` (fine-grained, like DTD or FGVCAircraft): 24 pattern-shape classes
  ("striped star"); within a shape, classes differ only in a surface pattern a few pixels wide.
* ``TestbedShapesSketch`` (domain shift, like ImageNet-Sketch): ``TestbedShapes``'s classes
  drawn as sketches (outline and pattern lines on paper); test split only.
* ``TestbedShapesClutter`` (domain shift, like ImageNet-A's hard backgrounds): ``TestbedShapes``'s
  classes on a background of a random colour strewn with blobs of the objects' colours; test split only.

The two test-only variants are the targets of the testbed's domain generalisation table (source
``testbed_shapes``: scripts/testbed/xd.sh).

Each class has 32 training, 8 validation and 50 test images (16-shot runs sample from the
training ones). Images and split files are the same on every machine (fixed generator seeds).
"""
import json
import os
import os.path as osp
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from ..atomic import atomic_folder
from ..data.base import SplitDataset
from ..data.records import parse_split
from ..framework import register_dataset, write_json
from .world import BACKGROUNDS, COLOURS_LIST, HELD_OUT_PAIRS, PATTERNS, SIZES, Scene, render, sample_rng

COUNTS = {"train": 32, "val": 8, "test": 50}
#: downstream images are framed "wild" (smaller objects anywhere), pretraining's "centred": the shift
#: between a model's pretraining data and a downstream dataset that gives prompt learning room (with
#: pretraining's own framing the shipped model scores 100% zero-shot on TestbedShapes)
FRAMING = "wild"
SHAPES_USED = ("circle", "square", "triangle", "star", "hexagon", "diamond")

_SEEN = [(c, s) for s in SHAPES_USED for c in ("red", "blue", "green", "yellow")
         if (c, s) not in HELD_OUT_PAIRS]
_HELD = [pair for pair in HELD_OUT_PAIRS if pair[1] in SHAPES_USED]
#: labels 0-11 (base): seen pairs; 12-23 (new): the held-out pairs, then more seen pairs
SHAPE_CLASSES: List[Tuple[str, str]] = _SEEN[:12] + _HELD + _SEEN[12:12 + 12 - len(_HELD)]
PATTERN_CLASSES: List[Tuple[str, str]] = [(p, s) for s in SHAPES_USED for p in PATTERNS]


def _colour_shape_scene(style: str) -> Callable[[int, np.random.RandomState], Scene]:
    def scene(label: int, rng: np.random.RandomState) -> Scene:
        colour, shape = SHAPE_CLASSES[label]
        return Scene(shape, colour, PATTERNS[rng.randint(4)], SIZES[rng.randint(2)], BACKGROUNDS[rng.randint(2)],
                     style, FRAMING)
    return scene


def _pattern_shape_scene(label: int, rng: np.random.RandomState) -> Scene:
    pattern, shape = PATTERN_CLASSES[label]
    return Scene(shape, COLOURS_LIST[rng.randint(len(COLOURS_LIST))], pattern, "large", BACKGROUNDS[rng.randint(2)],
                 "photo", FRAMING)


def write_dataset(dataset_dir: str, split_file: str, classnames: Sequence[str], scene, counts: Dict[str, int],
                  seed: int) -> None:
    """Render every split into ``dataset_dir`` with its CoOp split file, atomically."""
    with atomic_folder(dataset_dir, prefix=".testbed-", complete_marker=split_file) as tmp:
        split = {key: [] for key in counts}
        index = 0
        for label, name in enumerate(classnames):
            folder = name.replace(" ", "_")
            os.makedirs(osp.join(tmp, "images", folder))
            for key, count in counts.items():
                for i in range(count):
                    rng = sample_rng(seed, index)
                    index += 1
                    rel = f"{folder}/{key}_{i:03d}.png"
                    render(scene(label, rng), rng).save(osp.join(tmp, "images", rel))
                    split[key].append([rel, label, name])
        write_json({"train": [], "val": [], **split}, osp.join(tmp, split_file))


class _Generated(SplitDataset):
    """A testbed dataset: generated on first use, then read like any CoOp-layout dataset."""

    image_dir = "images"
    classnames_: Sequence[str] = ()
    counts = COUNTS
    generator_seed = 0

    @staticmethod
    def scene(label: int, rng: np.random.RandomState) -> Scene:
        raise NotImplementedError

    @classmethod
    def load_records(cls, root):
        dataset_dir = cls.folder(root)
        if not osp.exists(osp.join(dataset_dir, cls.split_file)):
            print(f"Generating the {cls.__name__} dataset in {dataset_dir}")
            write_dataset(dataset_dir, cls.split_file, cls.classnames_, cls.scene, cls.counts, cls.generator_seed)
        return super().load_records(root)


@register_dataset
class TestbedShapes(_Generated):
    """24 colour-shape classes; the novel half holds the colour-shape pairs held out of pretraining."""

    dataset_dir = "testbed_shapes"
    split_file = "split_testbed_shapes.json"
    classnames_ = [f"{c} {s}" for c, s in SHAPE_CLASSES]
    generator_seed = 101
    scene = staticmethod(_colour_shape_scene("photo"))


@register_dataset
class TestbedPatterns(_Generated):
    """24 pattern-shape classes: fine-grained, classes of a shape differ only in their surface pattern."""

    dataset_dir = "testbed_patterns"
    split_file = "split_testbed_patterns.json"
    classnames_ = [f"{p} {s}" for p, s in PATTERN_CLASSES]
    generator_seed = 202
    scene = staticmethod(_pattern_shape_scene)


class _TestOnly(_Generated):
    """A domain-shifted variant of TestbedShapes: its classes, a test split only (a DG target)."""

    classnames_ = TestbedShapes.classnames_
    counts = {"test": COUNTS["test"]}
    test_only = True

    @classmethod
    def read_records(cls, root):
        path = osp.join(cls.folder(root), cls.split_file)
        with open(path, encoding="utf-8") as f:
            test = json.load(f)["test"]
        try:  # CoOp's format check wants train and val lists; a test-only file has neither
            return {"test": parse_split({"train": test, "val": [], "test": test})["test"]}
        except ValueError as e:
            raise cls.error(root, f"malformed split file ({e})", path, cls.file_fix(root, cls.split_file, again=True))


@register_dataset
class TestbedShapesSketch(_TestOnly):
    """TestbedShapes's classes drawn as sketches; test only (domain generalisation target)."""

    dataset_dir = "testbed_shapes_sketch"
    split_file = "split_testbed_shapes_sketch.json"
    generator_seed = 303
    scene = staticmethod(_colour_shape_scene("sketch"))


@register_dataset
class TestbedShapesClutter(_TestOnly):
    """TestbedShapes's classes on cluttered backgrounds of any colour; test only (domain generalisation target)."""

    dataset_dir = "testbed_shapes_clutter"
    split_file = "split_testbed_shapes_clutter.json"
    generator_seed = 404
    scene = staticmethod(_colour_shape_scene("clutter"))
