"""Optional PNG plots of a Summary: grouped bars per column (base-to-novel, cross-dataset) or
accuracy-versus-shots curves (few-shot). matplotlib is not a dependency of this package."""
import math

import numpy as np

from .tables import Summary, column_shots


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
