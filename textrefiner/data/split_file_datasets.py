"""The nine datasets that CoOp describes by a split file ``split_zhou_<Name>.json``.

Each reader only states its layout; reading, checks, few-shot and base/new come from
``SplitDataset``. The split file is required: CoOp builds a missing one from the raw
annotations with a random draw, which would neither match the published splits nor
leave the user's data folder untouched, so instead the error names the file and the
``download_splits`` command that fetches it.

Image counts are those of CoOp's published splits (train / val / test).
"""
from ..framework import register_dataset
from .base import SplitDataset


@register_dataset
class Caltech101(SplitDataset):
    dataset_dir = "caltech-101"
    image_dir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    expected_classes = 100  # CoOp leaves out BACKGROUND_Google and Faces_easy
    expected_sizes = {"train": 4128, "val": 1649, "test": 2465}
    downloads = {split_file: "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"}
    folder_aliases = ("caltech_101",)


@register_dataset
class OxfordPets(SplitDataset):
    dataset_dir = "oxford_pets"
    image_dir = "images"
    split_file = "split_zhou_OxfordPets.json"
    expected_classes = 37
    expected_sizes = {"train": 2944, "val": 736, "test": 3669}
    downloads = {split_file: "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"}
    folder_aliases = ("pets", "oxford-iiit-pet")


@register_dataset
class StanfordCars(SplitDataset):
    dataset_dir = "stanford_cars"
    image_dir = ""  # split paths start with cars_train/ or cars_test/
    split_file = "split_zhou_StanfordCars.json"
    expected_classes = 196
    expected_sizes = {"train": 6509, "val": 1635, "test": 8041}
    downloads = {split_file: "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"}
    folder_aliases = ("cars", "stanfordcars196")

    @classmethod
    def expected_folders(cls):
        return ("cars_train", "cars_test")


@register_dataset
class OxfordFlowers(SplitDataset):
    dataset_dir = "oxford_flowers"
    image_dir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    expected_classes = 102
    expected_sizes = {"train": 4093, "val": 1633, "test": 2463}
    downloads = {split_file: "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"}
    folder_aliases = ("flowers", "flowers102", "oxford_flowers102")


@register_dataset
class Food101(SplitDataset):
    dataset_dir = "food-101"
    image_dir = "images"
    split_file = "split_zhou_Food101.json"
    expected_classes = 101
    expected_sizes = {"train": 50500, "val": 20200, "test": 30300}
    downloads = {split_file: "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"}


@register_dataset
class SUN397(SplitDataset):
    dataset_dir = "sun397"
    image_dir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    expected_classes = 397
    expected_sizes = {"train": 15880, "val": 3970, "test": 19850}
    downloads = {split_file: "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"}


@register_dataset
class DescribableTextures(SplitDataset):
    dataset_dir = "dtd"
    image_dir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    expected_classes = 47
    expected_sizes = {"train": 2820, "val": 1128, "test": 1692}
    downloads = {split_file: "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"}
    folder_aliases = ("describable_textures", "dtd-r1.0.1")


# CoOp's names for EuroSAT's folder names: the folder names make poor prompts
EUROSAT_CLASSNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@register_dataset
class EuroSAT(SplitDataset):
    dataset_dir = "eurosat"
    image_dir = "2750"
    image_dir_aliases = ("EuroSAT_RGB", "EuroSAT")  # what newer releases of the archive extract to
    split_file = "split_zhou_EuroSAT.json"
    expected_classes = 10
    expected_sizes = {"train": 13500, "val": 5400, "test": 8100}
    downloads = {split_file: "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"}

    @classmethod
    def read_records(cls, root):
        # CoOp's split file already holds the new names; a split written with the
        # folder names gets them too, so prompts are the same either way
        splits = super().read_records(root)
        return {
            key: [(path, label, EUROSAT_CLASSNAMES.get(name, name)) for path, label, name in records]
            for key, records in splits.items()
        }


@register_dataset
class UCF101(SplitDataset):
    dataset_dir = "ucf101"
    image_dir = "UCF-101-midframes"  # one middle frame per video clip
    split_file = "split_zhou_UCF101.json"
    expected_classes = 101
    expected_sizes = {"train": 7639, "val": 1898, "test": 3783}
    downloads = {split_file: "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"}
    folder_aliases = ("ucf-101",)
