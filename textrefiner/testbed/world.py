"""A procedural world of objects whose attributes compose, with captions: the testbed's data.

An object has a shape (8), a colour (8), a surface pattern (4: plain, striped, dotted,
checkered) and a size; it sits near the centre (as in object-centric photos) of a dark or
light textured background with some clutter, slightly turned. Patterns have a period of
3-5 pixels, so on a 64-pixel image cut into an 8 x 8 grid of patches a pattern lives inside
one or two patches: local tokens see it, the global feature has to keep it among everything
else. That is the detail TextRefiner's local cache is meant to pick up.

Measured while building the testbed (a 4-layer ViT trained from scratch on 2 CPU cores): colour
is learned in a hundred steps, shape is the slowest attribute by far. With objects anywhere in
the image and radii 8-19 pixels, a supervised 8-way shape classifier of the same ViT was at 23%
after 125 steps of 128 images; with objects centred within 2 pixels and radii 15-19, at 49%. A
contrastive run of 700 steps on the first version learned no shape at all, hence the centring
and the colour blocks of ``pretraining_pair``.

Rendering styles: ``photo`` (filled, shaded objects), ``sketch`` (dark outline and a pattern of
lines on a pale paper background) and ``clutter`` (a photo object on a background of a random
colour strewn with blobs of the objects' colours): the domain shifts of the test-only variants.

Everything is a pure function of ``(seed, index)``: the same call gives the same bytes
on every machine and run.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
#: how far (pixels) an object's centre may sit from the image centre, as in object-centric photos
CENTRE_JITTER = 2

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "pentagon")
COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (210, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 215, 40),
    "purple": (140, 60, 190), "orange": (245, 140, 30), "pink": (240, 120, 190), "brown": (130, 80, 40),
}
PATTERNS = ("plain", "striped", "dotted", "checkered")
SIZES = ("small", "large")
BACKGROUNDS = ("dark", "light")
STYLES = ("photo", "sketch", "clutter")
FRAMINGS = ("centred", "wild")

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
    #: "centred" (pretraining's framing: near the centre, radius 13-19) or "wild" (anywhere, radius 9-13)
    framing: str = "centred"


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
    elif scene.style == "clutter":  # any colour, dark or light
        base = rng.randint(30, 226, 3)
    elif scene.background == "dark":
        base = rng.randint(15, 70, 3)
    else:
        base = rng.randint(175, 240, 3)
    img = base[None, None, :] + rng.normal(0, 6, (IMAGE_SIZE, IMAGE_SIZE, 1))
    for _ in range(rng.randint(2, 6)):  # clutter: small grey blobs
        cx, cy, rr = rng.randint(0, IMAGE_SIZE, 2).tolist() + [rng.randint(2, 5)]
        blob = _shape_mask("circle", cx, cy, rr, 0.0)
        img[blob] = img[blob] * 0.6 + rng.randint(60, 200) * 0.4
    if scene.style == "clutter":  # distractors in the objects' own colours
        for _ in range(rng.randint(8, 14)):
            cx, cy, rr = rng.randint(0, IMAGE_SIZE, 2).tolist() + [rng.randint(2, 5)]
            img[_shape_mask("circle", cx, cy, rr, 0.0)] = COLOURS[COLOURS_LIST[rng.randint(len(COLOURS_LIST))]]
    if scene.framing == "centred":
        r = rng.uniform(13, 16) if scene.size == "small" else rng.uniform(16, 19)
        cx, cy = IMAGE_SIZE / 2 + rng.uniform(-1, 1, 2) * min(CENTRE_JITTER, IMAGE_SIZE / 2 - r - 3)
    elif scene.framing == "wild":  # a downstream shift: smaller objects anywhere in the picture
        r = rng.uniform(9, 11) if scene.size == "small" else rng.uniform(11, 13)
        cx, cy = rng.uniform(r + 2, IMAGE_SIZE - r - 2, 2)
    else:
        raise ValueError(f"unknown framing {scene.framing!r} (one of {FRAMINGS})")
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
        # the pattern's second colour: a shade of the object's own colour, darker on a light background
        # and lighter on a dark one, so the marks never blend into the background and cut up the outline
        second = colour * 0.5 if scene.background == "light" else colour * 0.5 + 127.0
        img[marks] = second
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def caption(scene: Scene, rng: np.random.RandomState) -> str:
    """One of several caption templates for ``scene``. Each names the shape and some of colour and
    pattern (a plain object's pattern word is sometimes left out), the way web captions name some
    attributes of a photo and not others; zero-shot prompts ("a photo of a red star.", "a photo of
    a striped star.") are then phrases pretraining has seen. Two templates name the shape alone: shape is
    the attribute a small ViT learns slowest, and a caption that names nothing else is the strongest
    signal for it (measured: without them, 600 contrastive steps learned no shape)."""
    s = scene
    pattern = "" if s.pattern == "plain" and rng.rand() < 0.5 else s.pattern + " "
    nouns = {"striped": "stripes", "dotted": "dots", "checkered": "checks", "plain": "no pattern"}
    templates = (
        f"a photo of a {s.colour} {pattern}{s.shape}.",
        f"a photo of a {s.colour} {s.shape}.",
        f"a photo of a {s.pattern} {s.shape}.",
        f"a {pattern}{s.colour} {s.shape}.",
        f"a {s.colour} {s.shape} with {nouns[s.pattern]}.",
        f"a photo of a {s.shape}.",
        f"a {s.shape}.",
    )
    text = templates[rng.randint(len(templates))]
    return text.replace("a photo of a", "a sketch of a") if s.style == "sketch" and rng.rand() < 0.5 else text


#: ``caption``'s forms as class-name templates ("{}": a class name of attribute words and a shape, e.g.
#: "red star", "striped star"): the prompts the testbed CLIP was pretrained on, as CoOp's 60 ImageNet
#: templates are OpenAI CLIP's for ImageNet. PromptSRC's text targets average them with
#: ``TRAINER.PROMPTSRC.TEMPLATES testbed``.
CLASS_TEMPLATES = (
    "a photo of a {}.",
    "a {}.",
    "a sketch of a {}.",
)


def random_scene(rng: np.random.RandomState, exclude_pairs: Sequence[Tuple[str, str]] = HELD_OUT_PAIRS,
                 colours: Sequence[str] = None) -> Scene:
    """A scene with uniformly drawn attributes (the colour among ``colours``, default all), never one of
    ``exclude_pairs`` (colour, shape)."""
    excluded = set(exclude_pairs)
    colours = tuple(colours or COLOURS_LIST)
    while True:
        colour, shape = colours[rng.randint(len(colours))], SHAPES[rng.randint(len(SHAPES))]
        if (colour, shape) not in excluded:
            break
    return Scene(shape, colour, PATTERNS[rng.randint(len(PATTERNS))], SIZES[rng.randint(2)],
                 BACKGROUNDS[rng.randint(2)])


COLOURS_LIST = tuple(COLOURS)
#: pretraining samples come in blocks of this many that share two colours (see ``block_colours``)
COLOUR_BLOCK = 64


def sample_rng(seed: int, index: int) -> np.random.RandomState:
    """The generator of sample ``index`` of stream ``seed``: independent of every other sample."""
    return np.random.RandomState([seed & 0xFFFFFFFF, index & 0xFFFFFFFF, 0x7E57BED])


def block_colours(seed: int, index: int) -> Tuple[str, str]:
    """The two colours of the pretraining block holding sample ``index``. Colour is the attribute a
    small ViT learns first; once it does, a batch of uniformly coloured objects has few other pairs
    left to tell apart, and shape (the attribute a ViT learns slowest) gets little signal. A batch
    made of blocks with two colours each keeps many same-coloured negatives in every batch, so the
    contrastive loss keeps asking for shape and pattern: hard negatives by construction."""
    rng = np.random.RandomState([seed & 0xFFFFFFFF, (index // COLOUR_BLOCK) & 0xFFFFFFFF, 0xC0105])
    first, second = rng.choice(len(COLOURS_LIST), 2, replace=False)
    return COLOURS_LIST[first], COLOURS_LIST[second]


#: the first pairs of every pretraining stream are captioned with the shape alone (a curriculum)
SHAPE_ONLY_PAIRS = 400 * 128


def shape_caption(scene: Scene, rng: np.random.RandomState) -> str:
    return f"a photo of a {scene.shape}." if rng.rand() < 0.5 else f"a {scene.shape}."


def pretraining_pair(seed: int, index: int) -> Tuple[Image.Image, str]:
    """Image-caption pair ``index`` of the pretraining stream ``seed`` (held-out pairs excluded).

    Pairs before ``SHAPE_ONLY_PAIRS`` name only the shape. Measured: with every caption naming
    colour, a contrastive run learned colour in 100 steps and then no shape in 600 more (the easy
    feature suppresses the hard one), while captions naming only the shape started the same ViT
    on shape within 100 steps. So shape comes first, then ``caption``'s full templates."""
    rng = sample_rng(seed, index)
    scene = random_scene(rng, colours=block_colours(seed, index))
    image = render(scene, rng)
    return image, shape_caption(scene, rng) if index < SHAPE_ONLY_PAIRS else caption(scene, rng)
