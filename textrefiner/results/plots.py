"""Optional PNG plots of a Summary: grouped bars per column (base-to-novel, cross-dataset) or
accuracy-versus-shots curves (few-shot); and accuracy against a config value (``versus.py``: an
ablation's variants). matplotlib is not a dependency of this package."""
import math

import numpy as np

from .tables import Summary, column_shots
from .versus import Versus, lines_by_row


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError(
            "Plotting needs matplotlib, which is not installed: pip install matplotlib "
            "(or pip install -e '.[plot]'); the tables work without it."
        ) from None
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def _bars(plt, summary: Summary):
    """One panel per column; per dataset one bar per method."""
    size = (max(6, 1.2 * len(summary.rows)), 3 * len(summary.columns))
    fig, axes = plt.subplots(len(summary.columns), 1, figsize=size, squeeze=False)
    width = 0.8 / max(1, len(summary.methods))
    x = np.arange(len(summary.rows))
    for ax, column in zip(axes[:, 0], summary.columns):
        for i, method in enumerate(summary.methods):
            stats = [summary.get(method, row, column) for row in summary.rows]
            spreads = [s.spread if s and s.spread is not None else np.nan for s in stats]
            ax.bar(x + i * width, [s.mean if s else np.nan for s in stats], width, label=method,
                   yerr=spreads, capsize=2)
        ax.set_ylabel(column)
        ax.set_xticks(x + width * (len(summary.methods) - 1) / 2, summary.rows, rotation=30, ha="right")
    axes[0, 0].set_title(summary.title)
    axes[0, 0].legend()
    fig.tight_layout()
    return fig


def _curves(plt, summary: Summary):
    """One panel per dataset: the metric against the number of shots, one line per method."""
    cols = min(4, len(summary.rows))
    lines = math.ceil(len(summary.rows) / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(3.5 * cols, 3 * lines), squeeze=False)
    shots = [column_shots(c) for c in summary.columns]
    for ax, row in zip(axes.flat, summary.rows):
        for method in summary.methods:
            stats = [summary.get(method, row, c) for c in summary.columns]
            ax.plot(shots, [s.mean if s else np.nan for s in stats], marker="o", label=method)
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.set_title(row)
        ax.set_xlabel("shots per class")
    for ax in list(axes.flat)[len(summary.rows):]:
        ax.axis("off")
    axes[0, 0].legend()
    fig.suptitle(summary.title)
    fig.tight_layout()
    return fig


def plot_summary(summary: Summary, path: str) -> str:
    """Write the plot of ``summary`` to ``path`` (PNG); returns the path."""
    plt = _pyplot()
    fig = _curves(plt, summary) if summary.protocol == "few_shot" else _bars(plt, summary)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_versus(result: Versus, path: str) -> str:
    """One panel per dataset (and average): every column (Base, Novel, HM, ...) against the config
    value, one line per column and method, seed spread as error bars. Returns ``path``."""
    plt = _pyplot()
    panels = lines_by_row(result)
    cols = min(3, len(panels))
    lines = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(4.5 * cols, 3.5 * lines), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, (row, by_line) in zip(axes.flat, panels.items()):
        for i, (line, points) in enumerate(by_line.items()):
            x = [p[0] for p in points]
            for j, column in enumerate(result.summary.columns):
                cells = [p[3][column] for p in points]
                means = [stat.mean if stat else np.nan for stat, _ in cells]
                errors = [error if error is not None else 0.0 for _, error in cells]
                label = column if len(by_line) == 1 else f"{column}, {line}"
                ax.errorbar(x, means, yerr=errors, marker="o", capsize=3, color=f"C{j}",
                            linestyle=styles[i % len(styles)], label=label)
        values = sorted({p[0] for points in by_line.values() for p in points})
        if len(values) <= 12:
            ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.set_title(row)
        ax.set_xlabel(result.key)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{result.summary.title} against {result.key}")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
