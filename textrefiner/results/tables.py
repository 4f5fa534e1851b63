"""Aggregate finished runs into the paper's tables: base-to-novel (Table 1), cross-dataset and
domain generalisation (Table 2), few-shot (shots x datasets).

Every value is a mean over seeds with its spread (std with ddof 0, as CoOp's
``parse_test_res.py``, or the 95% confidence interval). The base-to-novel HM is computed
from the seed-averaged Base and Novel, and the Average row averages Base and Novel over
datasets and takes the HM of those averages, as the paper does. Missing seeds and
datasets are never filled in silently: each one is listed in ``Summary.notes`` and marks the
summary ``partial``. Seeds made with different settings are never pooled into one value: each
setting (trainer, config name, run tag) is its own method, and one cell holding runs of two
settings is an error.
"""
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .benchmarks import BASE2NEW_DATASETS, SHOTS, XD_SOURCE, XD_TARGET_GROUPS, paper_order
from .collect import Run, collect_runs
from .record import SETTINGS_KEY, differences, same_records

AVERAGE = "Average"


@dataclass(frozen=True)
class Stat:
    """A mean over seeds; ``spread`` is None for derived values (HM, averages over datasets)."""

    mean: float
    spread: Optional[float] = None
    seeds: Tuple[int, ...] = ()
    #: a mean over an incomplete set (seeds or datasets missing; see Summary.notes)
    partial: bool = False


@dataclass
class Summary:
    protocol: str
    title: str
    columns: List[str]
    rows: List[str] = field(default_factory=list)
    methods: List[str] = field(default_factory=list)
    cells: Dict[Tuple[str, str, str], Stat] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    #: what Stat.spread holds: "std" (ddof 0) or "ci95"
    spread: str = "std"
    #: how derived values were computed, printed under the table
    legend: str = ""
    #: some value or average lacks seeds or datasets (listed in ``notes``)
    partial: bool = False
    #: average row -> the rows it averages over (for a method, those of them it has values for)
    averages: Dict[str, List[str]] = field(default_factory=dict)
    #: method -> (trainer, config name, run tag): a variant of a sweep is its run tag ("" for none)
    origins: Dict[str, Tuple[str, str, str]] = field(default_factory=dict)
    #: method -> the settings its runs recorded (result.json; every run of a method has the same)
    settings: Dict[str, Dict[str, object]] = field(default_factory=dict)
    #: (method, row, column) -> {seed: value} behind each cell filled from runs
    seed_values: Dict[Tuple[str, str, str], Dict[int, float]] = field(default_factory=dict)

    def gap(self, note: str) -> None:
        """Record something missing: a note, and the summary becomes partial."""
        self.notes.append(note)
        self.partial = True

    def get(self, method: str, row: str, column: str) -> Optional[Stat]:
        return self.cells.get((method, row, column))


def harmonic_mean(base: float, new: float) -> float:
    return 0.0 if base + new == 0 else 2 * base * new / (base + new)


def seed_stat(values: Dict[int, float], ci95: bool = False) -> Stat:
    """Mean and std (ddof 0) over seeds; with ``ci95`` the spread is 1.96 std / sqrt(n)."""
    array = np.array([values[s] for s in sorted(values)], dtype=float)
    spread = float(np.std(array))
    if ci95:
        spread = 1.96 * spread / np.sqrt(len(array))
    return Stat(float(np.mean(array)), spread, tuple(sorted(values)))


def method_labels(runs: Iterable[Run]) -> Dict[tuple, str]:
    """Label methods by trainer name, adding the config name only where a trainer ran with several."""
    methods = sorted({r.method for r in runs})
    configs_per_trainer = defaultdict(set)
    for trainer, cfg in methods:
        configs_per_trainer[trainer].add(cfg)
    return {(t, c): t if len(configs_per_trainer[t]) == 1 else f"{t} ({c})" for t, c in methods}


#: the Variant column's entry for runs without a run tag (the config's own settings)
NO_VARIANT = "-"


def variant_names(summary: Summary) -> Dict[str, Tuple[str, str]]:
    """method -> (its name without the run tag, its variant), when some method has a run tag (a
    sweep's variant, ``TAG=``): the name is the trainer, with its config name where the trainer ran
    with several; empty when no method has a tag."""
    if not any(tag for _, _, tag in summary.origins.values()):
        return {}
    configs = defaultdict(set)
    for trainer, cfg, _ in summary.origins.values():
        configs[trainer].add(cfg)
    return {method: (trainer if len(configs[trainer]) == 1 else f"{trainer} ({cfg})", tag or NO_VARIANT)
            for method, (trainer, cfg, tag) in summary.origins.items()}


def _refuse_pooling(cell: tuple, runs: Sequence[Run]) -> None:
    """Seeds of one table cell must share their settings: a mean over two settings means nothing."""
    first = runs[0]
    for other in runs[1:]:
        if not same_records(first.record, other.record):
            changes = differences(first.record.get(SETTINGS_KEY) or {}, other.record.get(SETTINGS_KEY) or {})
            shown = "; ".join(f"{k}: {a!r} vs {b!r}" for k, a, b in changes[:6]) or "their config hashes differ"
            raise ValueError(
                f"{', '.join(cell)}: {first.path} (seed {first.key.seed}) and {other.path} (seed {other.key.seed}) "
                f"were made with different settings ({shown}); a table never averages them. Rerun one with the "
                f"other's settings (OVERWRITE=1 / --overwrite), or give each setting its own folder with a run tag "
                f"(TAG=name / --tag name)."
            )


def _seeds_text(seeds: Iterable[int]) -> str:
    seeds = sorted(seeds)
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


class _Builder:
    """Fills a Summary from runs: ``locate`` maps a run to its (row, column) or None to skip it."""

    def __init__(self, summary: Summary, runs: Sequence[Run], locate: Callable, metric: str,
                 seeds: Optional[Sequence[int]], ci95: bool):
        self.summary = summary
        labels = method_labels(runs)
        self.values = defaultdict(dict)  # (method, row, column) -> {seed: value}
        cell_runs = defaultdict(list)
        for run in runs:
            where = locate(run)
            if where is None or (seeds and run.key.seed not in seeds):
                continue
            if metric not in run.record:
                raise ValueError(f"{run.path}/result.json has no {metric!r}; metrics there: {sorted(run.record)}")
            self.values[(labels[run.method], *where)][run.key.seed] = run.record[metric]
            cell_runs[(labels[run.method], *where)].append(run)
            summary.origins[labels[run.method]] = (run.key.trainer, run.key.cfg, run.key.tag)
            summary.settings.setdefault(labels[run.method], run.record.get(SETTINGS_KEY) or {})
        for cell, members in cell_runs.items():
            _refuse_pooling(cell, members)
        self.expected_seeds = sorted(seeds or {s for v in self.values.values() for s in v})
        self.ci95 = ci95
        summary.spread = "ci95" if ci95 else "std"
        summary.methods = sorted({m for m, _, _ in self.values})

    def fill(self, rows: List[str], columns: List[str], paired: bool) -> None:
        """Cells for ``rows`` x ``columns``; ``paired``: a row's columns use only the seeds all of them have."""
        summary = self.summary
        summary.rows += rows
        for method in summary.methods:
            absent = [row for row in rows if not any((method, row, c) in self.values for c in columns)]
            if absent:
                summary.gap(f"{method}: no results for {', '.join(absent)}")
            for row in rows:
                if row not in absent:
                    self._fill_row(method, row, columns, paired)

    def _fill_row(self, method: str, row: str, columns: List[str], paired: bool) -> None:
        by_column = {c: self.values.get((method, row, c), {}) for c in columns}
        common = set.intersection(*(set(v) for v in by_column.values()))
        for column, values in by_column.items():
            missing = [s for s in self.expected_seeds if s not in values]
            if missing:
                self.summary.gap(f"{method}, {row}, {column}: {_seeds_text(missing)} missing")
            used = {s: v for s, v in values.items() if not paired or s in common}
            left_out = sorted(set(values) - set(used))
            if left_out:
                self.summary.gap(
                    f"{method}, {row}, {column}: {_seeds_text(left_out)} left out (not run for every column)"
                )
            if used:
                self.summary.seed_values[(method, row, column)] = used
                stat = seed_stat(used, self.ci95)
                partial = bool(missing or left_out)
                self.summary.cells[(method, row, column)] = Stat(stat.mean, stat.spread, stat.seeds, partial)

    def average(self, name: str, rows: Sequence[str], columns: Sequence[str]) -> None:
        """Row ``name``: per method and column, the mean over ``rows`` of the seed means."""
        summary = self.summary
        # the paper puts the Average first; group averages follow their targets
        if name == AVERAGE:
            summary.rows.insert(0, name)
        else:
            summary.rows.append(name)
        summary.averages[name] = list(rows)
        for method in summary.methods:
            for column in columns:
                stats = [summary.cells[(method, r, column)] for r in rows if (method, r, column) in summary.cells]
                if stats:
                    partial = len(stats) < len(rows) or any(s.partial for s in stats)
                    mean = float(np.mean([s.mean for s in stats]))
                    summary.cells[(method, name, column)] = Stat(mean, partial=partial)
            self._coverage_note(method, name, rows, columns)

    def _coverage_note(self, method: str, name: str, rows: Sequence[str], columns: Sequence[str]) -> None:
        """Say which datasets an average lacks: once if every column lacks the same ones."""
        absent = {c: [r for r in rows if (method, r, c) not in self.summary.cells] for c in columns}
        same_everywhere = len({tuple(a) for a in absent.values()}) == 1
        for column, missing in absent.items():
            if missing:
                where = name if same_everywhere else f"{name}, {column}"
                self.summary.gap(
                    f"{method}, {where}: over {len(rows) - len(missing)} of {len(rows)} datasets "
                    f"(missing: {', '.join(missing)})"
                )
                if same_everywhere:
                    return


def _benchmark_note(summary: Summary, datasets: Sequence[str]) -> None:
    missing = [d for d in BASE2NEW_DATASETS if d not in datasets]
    if missing and set(datasets) <= set(BASE2NEW_DATASETS):
        summary.notes.append(
            f"{AVERAGE} covers {len(datasets)} of the paper's {len(BASE2NEW_DATASETS)} datasets "
            f"(not run: {', '.join(missing)})"
        )


def _datasets(runs: Sequence[Run], datasets: Optional[Sequence[str]]) -> List[str]:
    return paper_order(datasets or {r.key.dataset for r in runs})


def _single_shots(runs: Sequence[Run], shots: Optional[Sequence[int]], what: str) -> List[Run]:
    runs = [r for r in runs if not shots or r.key.shots in shots]
    found = sorted({r.key.shots for r in runs})
    if len(found) > 1:
        raise ValueError(f"{what} runs with several shot counts {found}: choose one (--shots K)")
    return runs


def base2new_summary(runs: Sequence[Run], metric: str = "accuracy", datasets=None, seeds=None,
                     shots: Optional[Sequence[int]] = None, ci95: bool = False) -> Summary:
    """Table 1: per dataset Base, Novel (mean +- spread over seeds) and HM, plus the Average row."""
    runs = _single_shots([r for r in runs if r.key.kind in ("base2new_train", "base2new_test")], shots, "Base-to-novel")
    summary = Summary("base2new", "Base-to-novel generalisation", ["Base", "Novel", "HM"], legend=(
        "HM = 2BN/(B+N) of the seed-averaged Base and Novel; "
        f"{AVERAGE}: Base and Novel averaged over datasets, HM of those averages."
    ))
    split = {"base2new_train": "Base", "base2new_test": "Novel"}
    builder = _Builder(summary, runs, lambda r: (r.key.dataset, split[r.key.kind]), metric, seeds, ci95)
    rows = _datasets(runs, datasets)
    builder.fill(rows, ["Base", "Novel"], paired=True)
    builder.average(AVERAGE, rows, ["Base", "Novel"])
    for method in summary.methods:
        for row in summary.rows:
            base, new = summary.get(method, row, "Base"), summary.get(method, row, "Novel")
            if base and new:
                summary.cells[(method, row, "HM")] = Stat(harmonic_mean(base.mean, new.mean),
                                                          partial=base.partial or new.partial)
    _benchmark_note(summary, rows)
    return summary


def evaluated_source(run: Run) -> str:
    """The dataset an xd evaluation's model was trained on: the folder before ``<Trainer>`` in the
    ``model_dir`` its record names (the source training's upstream folder,
    ``<source>/<Trainer>/<cfg>_<K>shots/seed<S>``); for an evaluation without a model (zero-shot CLIP)
    or an upstream log, the source whose targets include the run's dataset, else ImageNet."""
    parts = str(run.record.get("model_dir") or "").replace("\\", "/").rstrip("/").split("/")
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == run.key.trainer and parts[i + 1].startswith(f"{run.key.cfg}_{run.key.shots}shots"):
            return parts[i - 1]
    return next((source for source, groups in XD_TARGET_GROUPS.items()
                 if any(run.key.dataset in members for members in groups.values())), XD_SOURCE)


def xd_source(runs: Sequence[Run], source: Optional[str] = None) -> str:
    """The source of the cross-dataset table: ``source`` if given, else the one the evaluations found
    used (ImageNet when there are none); evaluations of models of several sources make no one table."""
    if source:
        return source
    found = sorted({evaluated_source(r) for r in runs if r.key.kind == "xd_test"})
    if len(found) > 1:
        raise ValueError(f"Cross-dataset evaluations of models trained on several sources ({', '.join(found)}): "
                         f"choose one (--source NAME)")
    return found[0] if found else XD_SOURCE


def xd_source_runs(runs: Sequence[Run], source: str = XD_SOURCE) -> List[Run]:
    """The trainings on ``source`` the cross-dataset evaluations used. They share their folder layout
    with few-shot runs (``layout.py``), so a run on the source counts when its trainer, setting and
    shot count have xd evaluations, or, with none yet, at the protocol's 16 shots. Folders of the
    xd template (this package's earlier layout; PromptKD's per-target students) are ImageNet's."""
    evaluated = {(r.method, r.key.shots) for r in runs if r.key.kind == "xd_test"}
    return [r for r in runs if (r.key.kind == "xd_train" and source == XD_SOURCE) or (
        r.key.kind == "few_shot" and r.key.dataset == source
        and ((r.method, r.key.shots) in evaluated or (not evaluated and r.key.shots == SHOTS)))]


def _target_groups(source: str, targets: Sequence[str]) -> Dict[str, Sequence[str]]:
    """The groups of targets that get an average row: the paper's for ImageNet, the testbed's for its
    source, else one group of every target."""
    return XD_TARGET_GROUPS.get(source) or {"targets": tuple(targets)}


def _group_coverage(summary: Summary, source: str, targets: Sequence[str]) -> None:
    """Like base-to-novel's benchmark note: which of a group's targets were not run at all."""
    whose = "the paper's" if source == XD_SOURCE else f"{source}'s"
    for group, members in _target_groups(source, targets).items():
        present = [t for t in targets if t in members]
        missing = [t for t in members if t not in present]
        if present and missing:
            summary.notes.append(f"{AVERAGE} ({group}) covers {len(present)} of {whose} {len(members)} "
                                 f"targets (not run: {', '.join(missing)})")


def xd_summary(runs: Sequence[Run], metric: str = "accuracy", datasets=None, seeds=None,
               shots: Optional[Sequence[int]] = None, ci95: bool = False, source: Optional[str] = None) -> Summary:
    """Table 2: the source (ImageNet unless ``source`` names another, or the evaluations found are of
    another's models) and every target, plus an average per target group."""
    source = xd_source(runs, source)
    tests = [r for r in runs if r.key.kind == "xd_test" and evaluated_source(r) == source]
    runs = _single_shots(xd_source_runs(runs, source) + tests, shots, "Cross-dataset")
    column = metric.replace("_", " ").capitalize()
    summary = Summary("xd", "Cross-dataset and domain generalisation", [column], legend=(
        f"Trained on {source} (all classes); {AVERAGE} rows average the targets of a group."
    ))
    builder = _Builder(summary, runs, lambda r: (r.key.dataset, column), metric, seeds, ci95)
    # targets: evaluated by xd_test, or trained on directly by hosts that train per target (PromptKD)
    evaluated = [r for r in runs if r.key.kind == "xd_test" or r.key.dataset != source]
    targets = [d for d in _datasets(evaluated, datasets) if d != source]
    builder.fill([source] + targets, [column], paired=False)
    for group, members in _target_groups(source, targets).items():
        present = [t for t in targets if t in members]
        if present:
            builder.average(f"{AVERAGE} ({group})", present, [column])
    _group_coverage(summary, source, targets)
    return summary


def few_shot_runs(runs: Sequence[Run], datasets: Optional[Sequence[str]]) -> Tuple[List[Run], Optional[str]]:
    """The few-shot runs, and a note if ImageNet ones were set aside. An ImageNet folder at one
    shot count only is most likely the cross-dataset source (same layout): it joins the few-shot
    table when ImageNet has runs at several shot counts or ``datasets`` names it."""
    runs = [r for r in runs if r.key.kind == "few_shot"]
    source_shots = {r.key.shots for r in runs if r.key.dataset == XD_SOURCE}
    if len(source_shots) != 1 or (datasets and XD_SOURCE in datasets):
        return runs, None
    note = (f"{XD_SOURCE} ({shots_column(min(source_shots))} only, the cross-dataset source's layout) left out; "
            f"name it in the datasets (--datasets ... {XD_SOURCE}) to include it")
    return [r for r in runs if r.key.dataset != XD_SOURCE], note


def few_shot_summary(runs: Sequence[Run], metric: str = "accuracy", datasets=None, seeds=None,
                     shots: Optional[Sequence[int]] = None, ci95: bool = False) -> Summary:
    """Few-shot: per dataset one column per shot count, plus the Average row over datasets."""
    runs, source_note = few_shot_runs(runs, datasets)
    runs = [r for r in runs if not shots or r.key.shots in shots]
    counts = sorted(shots or {r.key.shots for r in runs})
    columns = [shots_column(k) for k in counts]
    summary = Summary("few_shot", "Few-shot learning", columns, legend=f"{AVERAGE}: mean over datasets.")
    label = dict(zip(counts, columns))
    builder = _Builder(summary, runs, lambda r: (r.key.dataset, label[r.key.shots]), metric, seeds, ci95)
    rows = _datasets(runs, datasets)
    builder.fill(rows, columns, paired=False)
    builder.average(AVERAGE, rows, columns)
    _benchmark_note(summary, rows)
    if source_note:
        summary.notes.append(source_note)
    return summary


def shots_column(shots: int) -> str:
    return f"{shots} shot{'s' if shots > 1 else ''}"


def column_shots(column: str) -> int:
    """Inverse of ``shots_column``."""
    return int(column.split()[0])


#: protocol name -> summary function, for the command lines
SUMMARIES = {"base2new": base2new_summary, "xd": xd_summary, "few_shot": few_shot_summary}


def protocol_summary(output_root: str, protocol: str, trainers: Optional[Sequence[str]] = None,
                     cfg: Optional[str] = None, variants: Optional[Sequence[str]] = None, **options) -> Summary:
    """The ``protocol`` table of every finished run under ``output_root`` (optionally only the
    given trainers, trainer config and variants, i.e. run tags); ``options`` go to the protocol's
    summary function."""
    runs = [
        r for r in collect_runs(output_root)
        if (not trainers or r.key.trainer in trainers) and (not cfg or r.key.cfg == cfg)
        and (not variants or r.key.tag in variants)
    ]
    summary = SUMMARIES[protocol](runs, **options)
    if not summary.methods:
        raise FileNotFoundError(
            f"No finished {protocol} runs (folders with result.json or a finished log.txt, laid out as in "
            f"textrefiner/results/layout.py) under {output_root}; pass the output root the launchers wrote into"
        )
    return summary
