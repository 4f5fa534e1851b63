"""Aggregate result.json records into base-to-novel tables (the paper's Table 1 layout)."""
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np


def harmonic_mean(base: float, new: float) -> float:
    return 0.0 if base + new == 0 else 2 * base * new / (base + new)


def mean_std(values: Sequence[float]):
    """Mean and population std (ddof 0), as CoOp's parse_test_res.py reports."""
    return float(np.mean(values)), float(np.std(values))


def base2new_summary(records: Iterable[dict]) -> Dict[tuple, dict]:
    """Group records by (trainer, dataset); per group the seed-averaged Base, Novel and HM.

    HM is computed from the seed-averaged Base and Novel accuracies (the paper's rule),
    not averaged over per-seed HMs. Seeds present for only one split are reported.
    """
    acc = defaultdict(lambda: {"base": {}, "new": {}})
    for r in records:
        if r["split"] in ("base", "new"):
            acc[(r["trainer"], r["dataset"])][r["split"]][r["seed"]] = r["accuracy"]
    out = {}
    for key, by_split in acc.items():
        seeds = sorted(set(by_split["base"]) & set(by_split["new"]))
        unpaired = sorted(set(by_split["base"]) ^ set(by_split["new"]))
        entry = {"seeds": seeds, "unpaired_seeds": unpaired}
        if seeds:
            entry["base"], entry["base_std"] = mean_std([by_split["base"][s] for s in seeds])
            entry["new"], entry["new_std"] = mean_std([by_split["new"][s] for s in seeds])
            entry["hm"] = harmonic_mean(entry["base"], entry["new"])
        out[key] = entry
    return out


def base2new_rows(summary: Dict[tuple, dict], trainers: Optional[List[str]] = None) -> List[list]:
    """Rows ``[trainer, dataset, Base, Novel, HM, seeds]`` for tabulate."""
    rows = []
    for (trainer, dataset), e in sorted(summary.items()):
        if trainers and trainer not in trainers:
            continue
        if not e["seeds"]:
            rows.append([trainer, dataset, "-", "-", "-", f"missing pairs: {e['unpaired_seeds']}"])
            continue
        rows.append([
            trainer,
            dataset,
            f"{e['base']:.2f} +- {e['base_std']:.2f}",
            f"{e['new']:.2f} +- {e['new_std']:.2f}",
            f"{e['hm']:.2f}",
            ",".join(str(s) for s in e["seeds"]),
        ])
    return rows
