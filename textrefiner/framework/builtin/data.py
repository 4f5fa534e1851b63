"""Datasets and data loaders with the interface of ``dassl.data``.

``Datum`` and ``DatasetBase`` behave as Dassl's (a dataset is three lists of Datum:
train_x, val, test; the number of classes and the label -> class-name map come
from train_x); ``DataManager`` builds the train/val/test loaders from the config.
"""
import random
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import torch
from tabulate import tabulate
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import RandomSampler, SequentialSampler

from .registry import DATASET_REGISTRY
from .transforms import build_transform
from .utils import read_image

__all__ = ["Datum", "DatasetBase", "DatasetWrapper", "DataManager", "build_dataset", "build_data_loader"]


class Datum:
    """One labelled image: path, class label, domain label, class name."""

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = ""):
        assert isinstance(impath, str)
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def __repr__(self) -> str:
        return f"Datum({self._impath!r}, label={self._label}, classname={self._classname!r})"


class DatasetBase:
    """train_x / train_u / val / test lists of Datum, as Dassl's DatasetBase."""

    dataset_dir = ""
    domains: List[str] = []

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self):
        return self._train_x

    @property
    def train_u(self):
        return self._train_u

    @property
    def val(self):
        return self._val

    @property
    def test(self):
        return self._test

    @property
    def lab2cname(self) -> Dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> List[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source: Sequence[Datum]) -> int:
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source: Sequence[Datum]):
        mapping = {item.label: item.classname for item in data_source}
        labels = sorted(mapping)
        return mapping, [mapping[label] for label in labels]

    def generate_fewshot_dataset(self, *data_sources, num_shots: int = -1, repeat: bool = False):
        """Sample ``num_shots`` items per class from each source (Dassl's algorithm and RNG use)."""
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            dataset = []
            for _, items in self.split_dataset_by_label(data_source).items():
                if len(items) >= num_shots:
                    sampled = random.sample(items, num_shots)
                elif repeat:
                    sampled = random.choices(items, k=num_shots)
                else:
                    sampled = items
                dataset.extend(sampled)
            output.append(dataset)
        return output[0] if len(output) == 1 else output

    @staticmethod
    def split_dataset_by_label(data_source: Sequence[Datum]) -> Dict[int, List[Datum]]:
        output = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    @staticmethod
    def split_dataset_by_domain(data_source: Sequence[Datum]) -> Dict[int, List[Datum]]:
        output = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output


def build_dataset(cfg) -> DatasetBase:
    if cfg.DATASET.NAME not in DATASET_REGISTRY:
        raise KeyError(
            f"Unknown dataset {cfg.DATASET.NAME!r}; registered: {sorted(DATASET_REGISTRY.registered_names())}. "
            "Pass a file from configs/datasets/ with --dataset-config-file."
        )
    if cfg.VERBOSE:
        print(f"Loading dataset: {cfg.DATASET.NAME}")
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


class DatasetWrapper(TorchDataset):
    """Reads and transforms one Datum into Dassl's batch dict (img, label, domain, impath, index)."""

    def __init__(self, cfg, data_source: Sequence[Datum], transform=None, is_train: bool = False):
        self.data_source = data_source
        self.transform = transform
        if cfg.DATALOADER.K_TRANSFORMS != 1 or cfg.DATALOADER.RETURN_IMG0:
            raise ValueError(
                "DATALOADER.K_TRANSFORMS/RETURN_IMG0 are consistency-learning options that the built-in "
                "engine does not implement; install Dassl or reset them to 1/False"
            )

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> dict:
        item = self.data_source[idx]
        img = read_image(item.impath)
        return {
            "img": self.transform(img) if self.transform is not None else img,
            "label": item.label,
            "domain": item.domain,
            "impath": item.impath,
            "index": idx,
        }


def build_data_loader(
    cfg,
    sampler_type: str = "SequentialSampler",
    data_source: Optional[Sequence[Datum]] = None,
    batch_size: int = 64,
    tfm=None,
    is_train: bool = True,
    dataset_wrapper=None,
    **_unused,
):
    if sampler_type == "RandomSampler":
        sampler = RandomSampler(data_source)
    elif sampler_type == "SequentialSampler":
        sampler = SequentialSampler(data_source)
    else:
        raise ValueError(
            f"Sampler {sampler_type!r} is not available in the built-in engine "
            "(RandomSampler, SequentialSampler); install Dassl for domain/class samplers"
        )
    wrapper = (dataset_wrapper or DatasetWrapper)(cfg, data_source, transform=tfm, is_train=is_train)
    loader = torch.utils.data.DataLoader(
        wrapper,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
    )
    if len(loader) == 0:
        raise ValueError("A data loader has no batches: the split is empty")
    return loader


class DataManager:
    """Builds the dataset named by ``DATASET.NAME`` and its loaders (Dassl's DataManager)."""

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None):
        dataset = build_dataset(cfg)
        tfm_train = custom_tfm_train or build_transform(cfg, is_train=True)
        tfm_test = custom_tfm_test or build_transform(cfg, is_train=False)
        x = cfg.DATALOADER.TRAIN_X
        self.train_loader_x = build_data_loader(
            cfg, x.SAMPLER, dataset.train_x, x.BATCH_SIZE, tfm_train, True, dataset_wrapper
        )
        self.train_loader_u = None
        test_args = (cfg.DATALOADER.TEST.SAMPLER,)
        self.val_loader = None
        if dataset.val:
            self.val_loader = build_data_loader(
                cfg, *test_args, dataset.val, cfg.DATALOADER.TEST.BATCH_SIZE, tfm_test, False, dataset_wrapper
            )
        self.test_loader = build_data_loader(
            cfg, *test_args, dataset.test, cfg.DATALOADER.TEST.BATCH_SIZE, tfm_test, False, dataset_wrapper
        )
        self.dataset = dataset
        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def num_source_domains(self) -> int:
        return self._num_source_domains

    @property
    def lab2cname(self) -> Dict[int, str]:
        return self._lab2cname

    def show_dataset_summary(self, cfg) -> None:
        table = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            table.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            table.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        table.append(["# classes", f"{self.num_classes:,}"])
        table.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.val:
            table.append(["# val", f"{len(self.dataset.val):,}"])
        table.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(table))
