"""Render a Summary as a terminal table, Markdown or CSV; alone or as two methods side by side."""
import csv
import io
import os
from typing import List, Optional, Sequence, Tuple

from tabulate import tabulate

from .paper import PAPER, TABLES, paper_comparison
from .tables import AVERAGE, Stat, Summary, variant_names
from .versus import Versus, versus_table

FORMATS = ("terminal", "markdown", "csv")
#: after a value averaged over an incomplete set of seeds or datasets
PARTIAL_MARK = " (partial)"
_TABLEFMT = {"terminal": "simple", "markdown": "github"}


def long_table(summary: Summary) -> Tuple[List[str], List[list]]:
    """One line per (dataset, method): every column as a Stat, and the seeds behind it; with run
    tags (variants) the method's variant in a column of its own."""
    variants = variant_names(summary)
    headers = ["Dataset", "Method", *(["Variant"] if variants else []), *summary.columns, "Seeds"]
    rows = []
    for row in summary.rows:
        for method in summary.methods:
            stats = [summary.get(method, row, c) for c in summary.columns]
            if any(stats):
                seeds = sorted({s for stat in stats if stat for s in stat.seeds})
                names = list(variants[method]) if variants else [method]
                rows.append([row, *names, *stats, ",".join(map(str, seeds))])
    return headers, rows


def compare_table(summary: Summary, a: str, b: str) -> Tuple[List[str], List[list]]:
    """One line per dataset: for every column the means of A and B and their difference B - A."""
    for method in (a, b):
        if method not in summary.methods:
            raise ValueError(
                f"--compare: no results for {method!r}; methods found: {', '.join(summary.methods)}. A trainer run "
                f"with several settings is labelled 'Trainer (cfg)' or 'Trainer (cfg/tag)': pass that label, or "
                f"keep one config with --cfg NAME"
            )
    headers = ["Dataset"] + [f"{c} {x}" for c in summary.columns for x in ("(A)", "(B)", "B-A")]
    rows = []
    for row in summary.rows:
        line, partial = [row], False
        for column in summary.columns:
            stat_a, stat_b = summary.get(a, row, column), summary.get(b, row, column)
            delta = stat_b.mean - stat_a.mean if stat_a and stat_b else None
            line += [stat_a and stat_a.mean, stat_b and stat_b.mean, delta]
            partial = partial or any(s.partial for s in (stat_a, stat_b) if s)
        if partial and row.startswith(AVERAGE):  # per-dataset gaps are in the notes; averages say so here
            line[0] += PARTIAL_MARK
        rows.append(line)
    return headers, rows


def _text(value, signed: bool = False, spread: bool = True) -> str:
    if value is None:
        return "-"
    if isinstance(value, Stat):
        text = f"{value.mean:.2f}" if value.spread is None or not spread else f"{value.mean:.2f} +- {value.spread:.2f}"
        return text + PARTIAL_MARK if value.partial else text
    if isinstance(value, float):
        return f"{value:+.2f}" if signed else f"{value:.2f}"
    return str(value)


def _number(value) -> str:
    if isinstance(value, Stat):
        value = value.mean
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _csv(headers: Sequence[str], rows: Sequence[list], spread: str) -> str:
    """Plain numbers: a Stat column with a spread becomes ``<name>`` and ``<name>_<spread>``."""
    stat_columns = {i for row in rows for i, v in enumerate(row) if isinstance(v, Stat) and v.spread is not None}
    out_headers = []
    for i, h in enumerate(headers):
        out_headers += [h, f"{h}_{spread}"] if i in stat_columns else [h]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(out_headers)
    for row in rows:
        line = []
        for i, v in enumerate(row):
            if i in stat_columns:
                line += ["", ""] if v is None else [f"{v.mean:.4f}", "" if v.spread is None else f"{v.spread:.4f}"]
            else:
                line.append(_number(v))
        writer.writerow(line)
    return buffer.getvalue()


def render(summary: Summary, fmt: str = "terminal", compare: Optional[Sequence[str]] = None,
           paper: bool = False) -> str:
    """The table in ``fmt``; terminal and Markdown add a title, a legend and the notes (CSV: data only).
    ``paper``: our means beside the paper's figures (``paper.py``) instead."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    comparison = paper_comparison(summary) if paper else None
    if comparison and not comparison.rows:  # nothing in the paper to compare with: our table alone
        paper = False
    if paper:
        headers, rows = comparison.headers, comparison.rows
    else:
        headers, rows = compare_table(summary, *compare) if compare else long_table(summary)
    if fmt == "csv":
        return _csv(headers, rows, summary.spread)
    deltas = {i for i, h in enumerate(headers) if h.endswith(("B-A", " diff"))}
    cells = [[_text(v, signed=i in deltas, spread=not paper) for i, v in enumerate(row)] for row in rows]
    title = f"{summary.title}: {compare[0]} (A) vs {compare[1]} (B)" if compare else summary.title
    title = f"{summary.title}: ours vs the paper ({PAPER}, {TABLES[summary.protocol]})" if paper else title
    title = title if fmt == "terminal" else f"### {title}"
    lines = [title, "", tabulate(cells, headers=headers, tablefmt=_TABLEFMT[fmt], disable_numparse=True)]
    if comparison and not paper:  # nothing to compare: say so above the table alone
        lines[2:2] = comparison.notes + [""]
    if paper:
        lines.append("\nOurs: means over seeds; diff = ours - paper, in points, over the same datasets.")
    elif compare:
        lines.append("\nMeans over seeds; B-A in points.")
    else:
        spread = "95% confidence interval" if summary.spread == "ci95" else "std (ddof 0)"
        lines.append(f"\nMean +- {spread} over seeds.")
    if summary.legend:
        lines.append(summary.legend)
    if summary.partial:
        lines.append(f"PARTIAL: values marked{PARTIAL_MARK} average over an incomplete set (see below).")
    if paper and comparison.notes:
        lines += comparison.notes
    if summary.notes:
        lines += ["", "Missing or incomplete:"] + [f"- {note}" for note in summary.notes]
    return "\n".join(lines) + "\n"


def save(summary: Summary, path: str, compare: Optional[Sequence[str]] = None, paper: bool = False) -> str:
    """Write the table to ``path``, in the format its suffix names: .md, .csv, .txt or .png (plot);
    ``paper``: the comparison with the paper (a plot shows ours alone)."""
    suffix = path.rsplit(".", 1)[-1].lower()
    if suffix == "png":
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        from .plots import plot_summary

        return plot_summary(summary, path)
    formats = {"md": "markdown", "csv": "csv", "txt": "terminal"}
    if suffix not in formats:
        raise ValueError(f"Cannot tell the format of {path}: use a .md, .csv, .txt or .png file name")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(summary, formats[suffix], compare, paper=paper))
    return path


def render_versus(result: Versus, fmt: str = "terminal") -> str:
    """The table of ``versus.versus``: per dataset, each method's columns at its value of the key."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    summary = result.summary
    headers, rows = versus_table(result)
    if fmt == "csv":
        return _csv(headers, rows, summary.spread)
    title = f"{summary.title} against {result.key}"
    title = title if fmt == "terminal" else f"### {title}"
    cells = [[_text(v) for v in row] for row in rows]
    spread = "95% confidence interval" if summary.spread == "ci95" else "std (ddof 0)"
    lines = [title, "", tabulate(cells, headers=headers, tablefmt=_TABLEFMT[fmt], disable_numparse=True),
             f"\n{result.key}: the value each method's runs recorded (result.json). Mean +- {spread} over seeds "
             "(derived values: the table's value, +- the spread of the value computed seed by seed)."]
    if summary.legend:
        lines.append(summary.legend)
    notes = result.notes + summary.notes
    if notes:
        lines += ["", "Missing or incomplete:"] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def save_versus(result: Versus, path: str) -> str:
    """Write the table against a config value to ``path``: .md, .csv, .txt, or .png (accuracy vs the value)."""
    suffix = path.rsplit(".", 1)[-1].lower()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if suffix == "png":
        from .plots import plot_versus

        return plot_versus(result, path)
    formats = {"md": "markdown", "csv": "csv", "txt": "terminal"}
    if suffix not in formats:
        raise ValueError(f"Cannot tell the format of {path}: use a .md, .csv, .txt or .png file name")
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_versus(result, formats[suffix]))
    return path
