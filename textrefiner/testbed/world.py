"""A procedural world of objects whose attributes compose, with captions: the testbed's data.

An object has a shape (8), a colour (8), a surface pattern (4: plain, striped, dotted,
checkered) and a size; it sits somewhere on a dark or light textured background with
some clutter. Patterns have a period of 3-5 pixels, so on a 64-pixel image cut into an
8 x 8 grid of patches a pattern lives inside one or two patches: local tokens see it,
the global feature has to keep it among everything else. That is the detail TextRefiner's
local cache is meant to pick up.

Rendering styles: ``photo`` (filled, shaded objects) and ``sketch`` (dark outline and a
pattern of lines on a pale paper background), the domain shift of the test-only variant.

Everything is a pure function of ``(seed, index)``: the same call gives the same bytes
on every machine and run.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "pentagon")
COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (210, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 215, 40),
    "purple": (140, 60, 190), "orange": (245, 140, 30), "pink": (240, 120, 190), "brown": (130, 80, 40),
}
PATTERNS = ("plain", "striped", "dotted", "checkered")
SIZES = ("small", "large")
BACKGROUNDS = ("dark", "light")
STYLES = ("photo", "sketch")

#: colour-shape pairs never shown in pretraining (compositional generalisation)
HELD_OUT_PAIRS = (("red", "star"), ("blue", "hexagon"), ("yellow", "cross"), ("purple", "circle"),
                  ("green", "diamond"), ("orange", "square"))


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    pattern: str
    size: str
    background: str
    style: str = "photo"


def _polygon(shape: str, cx: float, cy: float, r: float, turn: float) -> List[Tuple[float, float]]:
    def ring(n, radius, offset=0.0):
        return [(cx + radius * math.cos(turn + offset + 2 * math.pi * k / n),
                 cy + radius * math.sin(turn + offset + 2 * math.pi * k / n)) for k in range(n)]

    if shape == "square":
        return ring(4, r * 1.25, math.pi / 4)
    if shape == "triangle":
        return ring(3, r * 1.2, -math.pi / 2)
    if shape == "hexagon":
        return ring(6, r * 1.1)
    if shape == "pentagon":
        return ring(5, r * 1.15, -math.pi / 2)
    if shape == "diamond":
        return [(cx, cy - r * 1.3), (cx + r * 0.8, cy), (cx, cy + r * 1.3), (cx - r * 0.8, cy)]
    if shape == "star":
        outer, inner = ring(5, r * 1.3, -math.pi / 2), ring(5, r * 0.55, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if shape == "cross":
        w = r * 0.42
        pts = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)]
        c, s = math.cos(turn), math.sin(turn)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
    raise ValueError(f"unknown shape {shape!r}")


def _shape_mask(shape: str, cx: float, cy: float, r: float, turn: float, outline: int = 0) -> np.ndarray:
    mask = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    draw = ImageDraw.Draw(mask)
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        draw.ellipse(box, fill=0 if outline else 255, outline=255, width=outline or 1)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, turn), fill=0 if outline else 255, outline=255, width=outline or 1)
    return np.asarray(mask) > 127


def _pattern_mask(pattern: str, rng: np.random.RandomState) -> np.ndarray:
    """Where the pattern's second colour goes: True on stripes, dots or every other check."""
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    period = rng.randint(3, 6)
    phase = rng.randint(0, period)
    if pattern == "plain":
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool)
    if pattern == "striped":
        along = x + y if rng.rand() < 0.5 else x - y + IMAGE_SIZE
        return ((along + phase) % (2 * period)) < period
    if pattern == "dotted":
        step = period + 2
        return (((x + phase) % step) < 2) & (((y + phase) % step) < 2)
    if pattern == "checkered":
        return (((x + phase) // period) + ((y + phase) // period)) % 2 == 0
    raise ValueError(f"unknown pattern {pattern!r}")


def render(scene: Scene, rng: np.random.RandomState) -> Image.Image:
    """One 64 x 64 RGB image of ``scene``; ``rng`` supplies position, rotation, shading, clutter."""
    sketch = scene.style == "sketch"
    if sketch:
        base = np.array([235, 230, 215]) + rng.randint(-10, 10, 3)
    elif scene.background == "dark":
        base = rng.randint(15, 70, 3)
    else:
        base = rng.randint(175, 240, 3)
    img = base[None, None, :] + rng.normal(0, 6, (IMAGE_SIZE, IMAGE_SIZE, 1))
    for _ in range(rng.randint(2, 6)):  # clutter: small grey blobs
        cx, cy, rr = rng.randint(0, IMAGE_SIZE, 2).tolist() + [rng.randint(2, 5)]
        blob = _shape_mask("circle", cx, cy, rr, 0.0)
        img[blob] = img[blob] * 0.6 + rng.randint(60, 200) * 0.4
    r = rng.uniform(8, 11) if scene.size == "small" else rng.uniform(15, 19)
    cx, cy = rng.uniform(r + 3, IMAGE_SIZE - r - 3, 2)
    turn = rng.uniform(-0.3, 0.3)
    colour = np.clip(np.array(COLOURS[scene.colour]) + rng.randint(-20, 21, 3), 0, 255)
    inside = _shape_mask(scene.shape, cx, cy, r, turn)
    marks = _pattern_mask(scene.pattern, rng) & inside
    if sketch:
        img[marks] = colour * 0.8
        img[_shape_mask(scene.shape, cx, cy, r, turn, outline=2)] = colour * 0.6
    else:
        shade = 0.85 + 0.3 * rng.rand()
        img[inside] = colour * shade
        # the pattern's second colour: dark on light objects, light on dark ones
        second = np.full(3, 25.0) if colour.mean() > 110 else np.full(3, 235.0)
        img[marks] = second
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def caption(scene: Scene, rng: np.random.RandomState) -> str:
    """One of several caption templates for ``scene`` (pattern and size words are sometimes left out)."""
    s = scene
    pattern = "" if s.pattern == "plain" and rng.rand() < 0.5 else s.pattern + " "
    nouns = {"striped": "stripes", "dotted": "dots", "checkered": "checks", "plain": "no pattern"}
    templates = (
        f"a photo of a {s.colour} {pattern}{s.shape}.",
        f"a {s.size} {pattern}{s.colour} {s.shape} on a {s.background} background.",
        f"a {s.colour} {s.shape} with {nouns[s.pattern]}.",
        f"a {pattern}{s.colour} {s.shape}.",
        f"a {s.size} {s.colour} {s.shape}.",
    )
    text = templates[rng.randint(len(templates))]
    return text.replace("a photo of a", "a sketch of a") if s.style == "sketch" and rng.rand() < 0.5 else text


def random_scene(rng: np.random.RandomState, exclude_pairs: Sequence[Tuple[str, str]] = HELD_OUT_PAIRS) -> Scene:
    """A scene with uniformly drawn attributes, never one of ``exclude_pairs`` (colour, shape)."""
    excluded = set(exclude_pairs)
    while True:
        colour, shape = COLOURS_LIST[rng.randint(len(COLOURS_LIST))], SHAPES[rng.randint(len(SHAPES))]
        if (colour, shape) not in excluded:
            break
    return Scene(shape, colour, PATTERNS[rng.randint(len(PATTERNS))], SIZES[rng.randint(2)],
                 BACKGROUNDS[rng.randint(2)])


COLOURS_LIST = tuple(COLOURS)


def sample_rng(seed: int, index: int) -> np.random.RandomState:
    """The generator of sample ``index`` of stream ``seed``: independent of every other sample."""
    return np.random.RandomState([seed & 0xFFFFFFFF, index & 0xFFFFFFFF, 0x7E57BED])


def pretraining_pair(seed: int, index: int) -> Tuple[Image.Image, str]:
    """Image-caption pair ``index`` of the pretraining stream ``seed`` (held-out pairs excluded)."""
    rng = sample_rng(seed, index)
    scene = random_scene(rng)
    return render(scene, rng), caption(scene, rng)
