"""The 15 CoOp-layout datasets, in CoOp's DATASETS.md order, and lookup by any of their names."""
import argparse

from .fgvc_aircraft import FGVCAircraft
from .imagenet import ImageNet, ImageNetA, ImageNetR, ImageNetSketch, ImageNetV2
from .split_file_datasets import (
    UCF101, SUN397, Caltech101, DescribableTextures, EuroSAT, Food101, OxfordFlowers, OxfordPets, StanfordCars,
)

COOP_DATASETS = (
    ImageNet, Caltech101, OxfordPets, StanfordCars, OxfordFlowers, Food101, FGVCAircraft, SUN397,
    DescribableTextures, EuroSAT, UCF101, ImageNetV2, ImageNetSketch, ImageNetA, ImageNetR,
)


def coop_dataset(name: str):
    """The reader ``name`` means: Dassl name, folder or config file name, any case (``food101``, ``imagenet_a``)."""
    for reader in COOP_DATASETS:
        if reader.matches(name):
            return reader
    known = ", ".join(reader.__name__ for reader in COOP_DATASETS)
    raise argparse.ArgumentTypeError(f"unknown dataset {name!r}; known: {known} (your own images: --image-folder DIR)")


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """``--root`` and ``--dataset`` as the doctor and download_splits take them."""
    parser.add_argument("--root", required=True, help="the folder holding one sub-folder per dataset (train.py's --root)")
    parser.add_argument(
        "--dataset", dest="datasets", action="append", type=coop_dataset, default=[],
        help="only this dataset (repeatable); Dassl name or folder name, e.g. OxfordPets or oxford_pets",
    )
