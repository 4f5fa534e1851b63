"""``Synthetic``: a small generated dataset in the CoOp layout, for the demo and the tests.

Ten classes (five shapes x two colours, e.g. "red circle", "blue ring") of 64x64
images on textured backgrounds, written on first use to
``<root>/synthetic/images/<class>/<split>_<i>.png`` with a CoOp split file
``split_synthetic.json``. The images are the same on every machine and every run
(fixed generator seed); training seeds only change few-shot sampling and training.
Generation goes to a temporary folder that is renamed into place, so concurrent
or interrupted runs never see a half-written dataset.
"""
import os
import os.path as osp
import random
from typing import List, Tuple

from PIL import Image, ImageDraw, ImageFilter

from ..atomic import atomic_folder
from ..framework import register_dataset, write_json
from .base import SplitDataset

SHAPES = ("circle", "square", "triangle", "cross", "ring")
COLOURS = {"red": (200, 40, 40), "blue": (40, 70, 210)}
CLASSNAMES: List[str] = [f"{colour} {shape}" for shape in SHAPES for colour in COLOURS]
IMAGES_PER_CLASS = {"train": 24, "val": 6, "test": 10}
IMAGE_SIZE = 64
GENERATOR_SEED = 0


def _draw(shape: str, colour: Tuple[int, int, int], rng: random.Random) -> Image.Image:
    background = tuple(rng.randint(90, 170) for _ in range(3))
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
    draw = ImageDraw.Draw(img)
    for _ in range(12):  # background clutter
        x, y = rng.randrange(IMAGE_SIZE), rng.randrange(IMAGE_SIZE)
        shade = tuple(min(255, c + rng.randint(-30, 30)) for c in background)
        draw.ellipse([x, y, x + rng.randint(3, 10), y + rng.randint(3, 10)], fill=shade)
    r = rng.randint(12, 22)
    cx, cy = rng.randint(r + 2, IMAGE_SIZE - r - 2), rng.randint(r + 2, IMAGE_SIZE - r - 2)
    fill = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in colour)
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    elif shape == "cross":
        w = max(3, r // 3)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
    else:
        draw.ellipse(box, outline=fill, width=max(3, r // 3))
    return img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.0, 0.8)))


def generate(dataset_dir: str) -> None:
    """Write the images and the split file into ``dataset_dir`` (atomically)."""
    with atomic_folder(dataset_dir, prefix=".synthetic-", complete_marker=Synthetic.split_file) as tmp:
        rng = random.Random(GENERATOR_SEED)
        split = {key: [] for key in IMAGES_PER_CLASS}
        for label, name in enumerate(CLASSNAMES):
            colour, shape = name.split(" ")
            folder = name.replace(" ", "_")
            os.makedirs(osp.join(tmp, "images", folder))
            for key, count in IMAGES_PER_CLASS.items():
                for i in range(count):
                    rel = f"{folder}/{key}_{i:03d}.png"
                    _draw(shape, COLOURS[colour], rng).save(osp.join(tmp, "images", rel))
                    split[key].append([rel, label, name])
        write_json(split, osp.join(tmp, Synthetic.split_file))


@register_dataset
class Synthetic(SplitDataset):
    """Generated shapes dataset (10 classes); created under ``--root`` on first use."""

    dataset_dir = "synthetic"
    image_dir = "images"
    split_file = "split_synthetic.json"

    @classmethod
    def load_records(cls, root):
        dataset_dir = cls.folder(root)
        if not osp.exists(osp.join(dataset_dir, cls.split_file)):
            print(f"Generating the Synthetic dataset in {dataset_dir}")
            generate(dataset_dir)
        return super().load_records(root)
