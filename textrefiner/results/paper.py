"""The paper's numbers as a reference: Table 1 (base-to-novel) and Table 2 (ImageNet to its
domain-shifted variants) of TextRefiner (AAAI 2025), from ``paper_tables.csv``, and our measured
numbers beside them with the difference. A difference is only ever taken between numbers over
the same datasets: an average row compares ours and the paper's over the datasets both have (the
paper's published average only when we ran all of its datasets), and on datasets the paper never
used (the testbed's) there is nothing to compare and our table is shown alone.

``paper_tables.csv`` also holds the ablations' Tables 3-4 (``ablation_values``) and the three images/s
figures the text gives for Figure 3 (``textrefiner/paper/fig3.py``). It holds every method of Tables 1-2, the baselines included, under our
trainer names (``CoOp w/TextRefiner`` is ``CoOp_TextRefiner``; Table 2's ``+ TextRefiner`` rows
are the TextRefiner variant of the row above; its "CoOpOp" row is CoCoOp). Table 2 reports no
average: the domain generalisation average here is the mean of the paper's four targets.
"""
import csv
import os.path as osp
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

import numpy as np

from .benchmarks import BASE2NEW_DATASETS, DOMAIN_GENERALISATION_TARGETS, TARGET_GROUPS, paper_order
from .tables import AVERAGE, Stat, Summary, harmonic_mean

PAPER_FILE = osp.join(osp.dirname(osp.abspath(__file__)), "paper_tables.csv")
PAPER = "TextRefiner (AAAI 2025)"
#: protocol -> the paper's table
TABLES = {"base2new": "Table 1", "xd": "Table 2"}
_DG_AVERAGE = f"{AVERAGE} (domain generalisation)"
#: average row -> the datasets of the paper's that it averages
_AVERAGED = {AVERAGE: BASE2NEW_DATASETS, **{f"{AVERAGE} ({g})": members for g, members in TARGET_GROUPS.items()}}


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


@dataclass
class Comparison:
    """Our means beside the paper's: ``rows`` empty when nothing we ran is in the paper's table
    (then ``notes`` says so and the table is shown alone)."""

    headers: List[str]
    rows: List[list]
    notes: List[str]


def paper_comparison(summary: Summary) -> Comparison:
    """Per dataset and method in the paper: for each column our mean, the paper's, and ours - paper.
    An average row compares ours and the paper's over the same datasets only (those both have),
    and its label names them unless they are all of the paper's (then the paper's own figure)."""
    paper = paper_values(summary.protocol)
    table = TABLES[summary.protocol]
    headers = ["Dataset", "Method"] + [f"{c} {x}" for c in summary.columns for x in ("ours", "paper", "diff")]
    datasets = [r for r in summary.rows if r not in summary.averages]
    rows = []
    for row in summary.rows:
        for method in summary.methods:
            if row in summary.averages:
                line = _average_line(summary, paper, row, method)
            else:
                line = _dataset_line(summary, paper, row, method)
            if line:
                rows.append(line)
    compared = {line[0] for line in rows if line[0] in datasets}
    paper_datasets = paper_order({d for _, d, _ in paper if not d.startswith(AVERAGE)})
    if not rows:
        if not set(datasets) & set(paper_datasets):
            why = (f"the paper's {table} reports none of {', '.join(datasets)} (its datasets: "
                   f"{', '.join(paper_datasets)})")
        else:
            why = (f"the paper's {table} has none of {', '.join(summary.methods)} on these datasets (its methods: "
                   f"{', '.join(sorted({t for t, _, _ in paper}))})")
        return Comparison(headers, [], [f"Nothing to compare with the paper: {why}. Our table alone."])
    notes = []
    left_out = [d for d in datasets if d not in compared]
    if left_out:
        notes.append(f"Not compared (the paper's {table} has no figure for them): {', '.join(left_out)}")
    absent = [m for m in summary.methods if not any(line[1] == m for line in rows)]
    if absent:
        notes.append(f"Not compared (not in the paper's {table}): {', '.join(absent)}")
    if any(line[0] not in summary.rows for line in rows):
        notes.append("An average over some of the paper's datasets compares ours and the paper's over those "
                     "datasets only (its label names them), never with the paper's published average.")
    return Comparison(headers, rows, notes)


def _dataset_line(summary: Summary, paper, row: str, method: str) -> Optional[list]:
    line, found = [row, method], False
    for column in summary.columns:
        stat = summary.get(method, row, column)
        reference: Optional[float] = paper.get((trainer_of(method), row, column))
        found = found or (stat is not None and reference is not None)
        line += [stat, reference, stat.mean - reference if stat is not None and reference is not None else None]
    return line if found else None


def _average_line(summary: Summary, paper, name: str, method: str) -> Optional[list]:
    """Average row ``name``: ours and the paper's over the datasets of it both have (for every
    averaged column); None if there are none. HM is the HM of the averaged Base and Novel."""
    trainer = trainer_of(method)
    derived = {"HM"} if {"Base", "Novel", "HM"} <= set(summary.columns) else set()
    averaged = [c for c in summary.columns if c not in derived]
    shared = [d for d in summary.averages[name] if all(
        summary.get(method, d, c) is not None and (trainer, d, c) in paper for c in averaged)]
    if not shared:
        return None
    benchmark = [d for d in _AVERAGED.get(name, ()) if any((trainer, d, c) in paper for c in averaged)]
    complete = set(shared) == set(benchmark)
    ours, theirs = {}, {}
    for column in averaged:
        stats = [summary.get(method, d, column) for d in shared]
        ours[column] = Stat(float(np.mean([s.mean for s in stats])), partial=any(s.partial for s in stats))
        published = paper.get((trainer, name, column))
        theirs[column] = published if complete and published is not None else float(
            np.mean([paper[(trainer, d, column)] for d in shared]))
    for column in derived:
        ours[column] = Stat(harmonic_mean(ours["Base"].mean, ours["Novel"].mean),
                            partial=ours["Base"].partial or ours["Novel"].partial)
        published = paper.get((trainer, name, column))
        theirs[column] = published if complete and published is not None else harmonic_mean(
            theirs["Base"], theirs["Novel"])
    label = name if complete else (f"{name} over {', '.join(shared)} ({len(shared)} of the paper's "
                                   f"{len(benchmark)})")
    line = [label, method]
    for column in summary.columns:
        line += [ours[column], theirs[column], ours[column].mean - theirs[column]]
    return line


@lru_cache(maxsize=None)
def ablation_values(table: str) -> Dict[Tuple[str, str], Tuple[str, float]]:
    """(variant, column) -> (the paper's row label, its figure) of an ablation table ("table3", "table4",
    ImageNet with the CoOp host); the variant is the run tag of configs/sweeps/ablation_testbed_<table>.yaml."""
    values = {}
    with open(PAPER_FILE, newline="") as f:
        for row in csv.DictReader(f):
            if row["table"] == table:
                values[(row["trainer"], row["column"])] = (row["paper_method"], float(row["value"]))
    if not values:
        raise ValueError(f"paper_tables.csv has no {table} rows")
    return values
