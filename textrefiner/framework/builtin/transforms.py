"""Image transforms selected by ``INPUT.TRANSFORMS``, composed as Dassl composes them.

Train: [resize if no crop] -> crops -> flip -> colour ops -> ToTensor -> normalize.
Test: resize the shorter edge to max(INPUT.SIZE) -> center crop -> ToTensor -> normalize.
Every op is torchvision's own.
"""
from typing import List, Optional, Sequence

from torchvision.transforms import (
    CenterCrop, ColorJitter, Compose, GaussianBlur, Normalize, RandomApply, RandomCrop,
    RandomGrayscale, RandomHorizontalFlip, RandomResizedCrop, Resize, ToTensor,
)
from torchvision.transforms.functional import InterpolationMode

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

# The choices CoOp-family configs use; Dassl's policy-based augmentations
# (randaugment, autoaugment, cutout, ...) need real Dassl.
AVAI_CHOICES = [
    "random_flip", "random_resized_crop", "normalize", "random_crop", "center_crop",
    "colorjitter", "randomgrayscale", "gaussian_blur",
]


def build_transform(cfg, is_train: bool = True, choices: Optional[Sequence[str]] = None):
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    choices = list(cfg.INPUT.TRANSFORMS if choices is None else choices)
    unknown = [c for c in choices if c not in AVAI_CHOICES]
    if unknown:
        raise ValueError(
            f"INPUT.TRANSFORMS {unknown} are not available in the built-in engine "
            f"(available: {AVAI_CHOICES}); install Dassl to use them, or drop them from the config"
        )
    if cfg.INPUT.INTERPOLATION not in INTERPOLATION_MODES:
        raise ValueError(f"INPUT.INTERPOLATION must be one of {list(INTERPOLATION_MODES)}")
    normalize = Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    build = _build_transform_train if is_train else _build_transform_test
    return Compose(build(cfg, choices, normalize))


def _build_transform_train(cfg, choices: List[str], normalize) -> list:
    print("Building transform_train")
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    size = tuple(cfg.INPUT.SIZE)
    tfm = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        print(f"+ resize to {size[0]}x{size[1]}")
        tfm.append(Resize(size, interpolation=interp))
    if "random_crop" in choices:
        print(f"+ random crop (padding = {cfg.INPUT.CROP_PADDING})")
        tfm.append(RandomCrop(size, padding=cfg.INPUT.CROP_PADDING))
    if "random_resized_crop" in choices:
        scale = tuple(cfg.INPUT.RRCROP_SCALE)
        print(f"+ random resized crop (size={size}, scale={scale})")
        tfm.append(RandomResizedCrop(size, scale=scale, interpolation=interp))
    if "random_flip" in choices:
        print("+ random flip")
        tfm.append(RandomHorizontalFlip())
    if "colorjitter" in choices:
        i = cfg.INPUT
        print("+ color jitter")
        tfm.append(ColorJitter(i.COLORJITTER_B, i.COLORJITTER_C, i.COLORJITTER_S, i.COLORJITTER_H))
    if "randomgrayscale" in choices:
        print("+ random gray scale")
        tfm.append(RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        print(f"+ gaussian blur (kernel={cfg.INPUT.GB_K})")
        tfm.append(RandomApply([GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))
    print("+ to torch tensor of range [0, 1]")
    tfm.append(ToTensor())
    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfm.append(normalize)
    return tfm


def _build_transform_test(cfg, choices: List[str], normalize) -> list:
    print("Building transform_test")
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    size = tuple(cfg.INPUT.SIZE)
    print(f"+ resize the smaller edge to {max(size)}")
    print(f"+ {size[0]}x{size[1]} center crop")
    print("+ to torch tensor of range [0, 1]")
    tfm = [Resize(max(size), interpolation=interp), CenterCrop(size), ToTensor()]
    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfm.append(normalize)
    return tfm
