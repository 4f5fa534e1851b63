"""A protocol table turned on its side: each column (Base, Novel, HM; a shot count; a target's
accuracy) against a numeric config value, e.g. an ablation's cache size M, one point per method.

The x value of a method is what its runs recorded for the key (``settings`` in result.json), so
it is the value the runs were made with, whatever variant or tag name they carry. A line groups
the methods of one trainer (and config name, where a trainer ran with several); its points are
its variants. Error bars are the seed spread: the cell's own (std ddof 0, or the 95% interval),
and for derived values (HM, Average rows), the same spread of the value computed seed by seed
over the seeds every part has (the plotted point stays the table's value: e.g. HM of the means).
"""
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .tables import Stat, Summary, harmonic_mean, variant_names


@dataclass
class Versus:
    """``points[(line, row)]``: (x, method, variant, {column: (Stat, error)}) sorted by x."""

    key: str
    summary: Summary
    lines: List[str] = field(default_factory=list)
    points: Dict[Tuple[str, str], List[tuple]] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)


def per_seed(summary: Summary, method: str, row: str, column: str) -> Dict[int, float]:
    """The cell's value seed by seed: the runs' own, or derived as the table derives it."""
    values = summary.seed_values.get((method, row, column))
    if values is not None:
        return values
    if column == "HM" and "Base" in summary.columns and "Novel" in summary.columns:
        base, novel = (per_seed(summary, method, row, c) for c in ("Base", "Novel"))
        return {s: harmonic_mean(base[s], novel[s]) for s in sorted(set(base) & set(novel))}
    if row in summary.averages:
        parts = [per_seed(summary, method, r, column) for r in summary.averages[row]]
        parts = [p for p in parts if p]
        seeds = set.intersection(*(set(p) for p in parts)) if parts else set()
        return {s: float(np.mean([p[s] for p in parts])) for s in sorted(seeds)}
    return {}


def seed_error(summary: Summary, method: str, row: str, column: str) -> Optional[float]:
    """The seed spread of a cell (None with fewer than two seeds)."""
    stat = summary.get(method, row, column)
    if stat is not None and stat.spread is not None and len(stat.seeds) > 1:
        return stat.spread
    values = list(per_seed(summary, method, row, column).values())
    if len(values) < 2:
        return None
    spread = float(np.std(values))
    return 1.96 * spread / np.sqrt(len(values)) if summary.spread == "ci95" else spread


def _number(value) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def versus(summary: Summary, key: str) -> Versus:
    """Every cell of ``summary`` placed at its method's recorded value of config key ``key``.
    A method that did not record ``key`` is left out (with a note); a value that is not a number,
    or two methods of one line at the same value, is a ``ValueError`` (one line, with the fix)."""
    names = variant_names(summary) or {m: (m, "") for m in summary.methods}
    result = Versus(key, summary)
    seen: Dict[Tuple[str, float], str] = {}
    for method in summary.methods:
        settings = summary.settings.get(method) or {}
        if key not in settings:
            result.notes.append(f"{method}: its results record no {key} (made by another tool, or no such key): "
                                "left out")
            continue
        x = _number(settings[key])
        if x is None:
            raise ValueError(f"--x {key}: {method} has {key} = {settings[key]!r}, not a number: plot against a "
                             f"numeric key, or compare such variants in the table (without --x)")
        line, variant = names[method]
        if (line, x) in seen:
            raise ValueError(f"--x {key}: {seen[(line, x)]} and {method} both have {key} = {settings[key]!r}, "
                             f"two points at one x: keep one with --variants NAME ... (or --trainers, --cfg)")
        seen[(line, x)] = method
        if line not in result.lines:
            result.lines.append(line)
        for row in summary.rows:
            cells = {c: (summary.get(method, row, c), seed_error(summary, method, row, c)) for c in summary.columns}
            if any(stat for stat, _ in cells.values()):
                result.points.setdefault((line, row), []).append((x, method, variant, cells))
    if not result.points:
        raise ValueError(f"--x {key}: no method recorded {key} in its result.json: name a config key the "
                         f"runs were made with (e.g. TRAINER.TEXTREFINER.CACHE_SIZE)")
    for points in result.points.values():
        points.sort(key=lambda p: p[0])
    return result


def versus_table(result: Versus) -> Tuple[List[str], List[list]]:
    """One line per (dataset, line, x): the columns as Stats with their seed spread."""
    summary = result.summary
    with_variants = any(v for points in result.points.values() for _, _, v, _ in points)
    headers = ["Dataset", "Method", result.key, *(["Variant"] if with_variants else []), *summary.columns, "Seeds"]
    rows = []
    for row in summary.rows:
        for line in result.lines:
            for x, method, variant, cells in result.points.get((line, row), []):
                stats = [Stat(s.mean, e, s.seeds, s.partial) if s else None for s, e in cells.values()]
                seeds = sorted({seed for s, _ in cells.values() if s for seed in s.seeds}
                               or set(per_seed(summary, method, row, summary.columns[0])))
                value = int(x) if x.is_integer() else x
                rows.append([row, line, value, *([variant] if with_variants else []), *stats,
                             ",".join(map(str, seeds))])
    return headers, rows


def lines_by_row(result: Versus) -> Dict[str, Dict[str, List[tuple]]]:
    """row -> line -> points, in the table's row order (for the plot); an average of one dataset
    (the same points again) is left out."""
    by_row = defaultdict(dict)
    summary = result.summary
    for row in summary.rows:
        if len(summary.averages.get(row, ())) == 1 and len(summary.rows) > 1:
            continue
        for line in result.lines:
            if (line, row) in result.points:
                by_row[row][line] = result.points[(line, row)]
    return dict(by_row)
