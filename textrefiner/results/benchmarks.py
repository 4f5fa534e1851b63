"""The datasets of the paper's tables, in the paper's order (config names, configs/datasets/)."""

#: base-to-novel (Table 1) and few-shot: the 11 classification benchmarks
BASE2NEW_DATASETS = (
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
    "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
)
#: cross-dataset and domain generalisation (Table 2) train on this dataset, all classes
XD_SOURCE = "imagenet"
CROSS_DATASET_TARGETS = BASE2NEW_DATASETS[1:]
DOMAIN_GENERALISATION_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
#: target groups that get their own average row in the cross-dataset table
TARGET_GROUPS = {
    "cross-dataset": CROSS_DATASET_TARGETS,
    "domain generalisation": DOMAIN_GENERALISATION_TARGETS,
}
#: the offline testbed's Table 2 (scripts/testbed/xd.sh): its source and its domain-shifted targets
#: (the source's classes drawn in other styles: textrefiner/testbed/datasets.py)
TESTBED_XD_SOURCE = "testbed_shapes"
TESTBED_DG_TARGETS = ("testbed_shapes_sketch", "testbed_shapes_clutter")
#: source -> its target groups (a source not listed here: its targets are one group, "targets")
XD_TARGET_GROUPS = {
    XD_SOURCE: TARGET_GROUPS,
    TESTBED_XD_SOURCE: {"domain generalisation": TESTBED_DG_TARGETS},
}

SEEDS = (1, 2, 3)
#: training images per class in base-to-novel and cross-dataset runs
SHOTS = 16
FEW_SHOT_SHOTS = (1, 2, 4, 8, 16)


def paper_order(datasets) -> list:
    """Benchmark datasets in the paper's order, any others after them alphabetically."""
    known = BASE2NEW_DATASETS + DOMAIN_GENERALISATION_TARGETS
    return sorted(set(datasets), key=lambda d: (known.index(d), "") if d in known else (len(known), d))
