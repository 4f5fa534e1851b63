"""The paper's numbers as a reference: Table 1 (base-to-novel) and Table 2 (ImageNet to its
domain-shifted variants) of TextRefiner (AAAI 2025), from ``paper_tables.csv``, and our measured
numbers beside them with the difference.

``paper_tables.csv`` holds every method of both tables, the baselines included, under our
trainer names (``CoOp w/TextRefiner`` is ``CoOp_TextRefiner``; Table 2's ``+ TextRefiner`` rows
are the TextRefiner variant of the row above; its "CoOpOp" row is CoCoOp). Table 2 reports no
average: the domain generalisation average here is the mean of the paper's four targets.
"""
import csv
import os.path as osp
from collections import defaultdict
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

import numpy as np

from .benchmarks import DOMAIN_GENERALISATION_TARGETS
from .tables import AVERAGE, Summary

PAPER_FILE = osp.join(osp.dirname(osp.abspath(__file__)), "paper_tables.csv")
PAPER = "TextRefiner (AAAI 2025)"
#: protocol -> the paper's table
TABLES = {"base2new": "Table 1", "xd": "Table 2"}
_DG_AVERAGE = f"{AVERAGE} (domain generalisation)"


@lru_cache(maxsize=None)
def paper_values(protocol: str) -> Dict[Tuple[str, str, str], float]:
    """(trainer, dataset, column) -> the paper's figure, for ``protocol``'s table."""
    if protocol not in TABLES:
        raise ValueError(f"The paper has tables for {', '.join(TABLES)} only (no {protocol} table to compare with)")
    values = {}
    with open(PAPER_FILE, newline="") as f:
        for row in csv.DictReader(f):
            if row["table"] == protocol:
                values[(row["trainer"], row["dataset"], row["column"])] = float(row["value"])
    if protocol == "xd":  # Table 2 has no average row: the mean of its four targets
        by_trainer = defaultdict(list)
        for (trainer, dataset, column), value in list(values.items()):
            if dataset in DOMAIN_GENERALISATION_TARGETS:
                by_trainer[(trainer, column)].append(value)
        for (trainer, column), targets in by_trainer.items():
            if len(targets) == len(DOMAIN_GENERALISATION_TARGETS):
                values[(trainer, _DG_AVERAGE, column)] = float(np.mean(targets))
    return values


def trainer_of(method: str) -> str:
    """A table's method label is the trainer name, with its setting in parentheses when needed."""
    return method.split(" (", 1)[0]


def paper_comparison(summary: Summary) -> Tuple[List[str], List[list]]:
    """Per dataset and method in the paper: for each column our mean, the paper's, and ours - paper."""
    paper = paper_values(summary.protocol)
    headers = ["Dataset", "Method"] + [f"{c} {x}" for c in summary.columns for x in ("ours", "paper", "diff")]
    rows = []
    for row in summary.rows:
        for method in summary.methods:
            line, found = [row, method], False
            for column in summary.columns:
                stat = summary.get(method, row, column)
                reference: Optional[float] = paper.get((trainer_of(method), row, column))
                found = found or (stat is not None and reference is not None)
                diff = stat.mean - reference if stat is not None and reference is not None else None
                line += [stat, reference, diff]
            if found:
                rows.append(line)
    if not rows:
        methods = sorted({t for t, _, _ in paper})
        raise ValueError(f"None of {', '.join(summary.methods)} is in the paper's {TABLES[summary.protocol]} "
                         f"for these datasets; its methods: {', '.join(methods)}")
    return headers, rows
