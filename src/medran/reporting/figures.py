"""Line figures of the report as PNG (matplotlib's Agg canvas, no pyplot and no display):
accuracy vs noise level, robust accuracy vs eps, upstream retrieval vs noise level.

Missing values are NaN and simply leave a gap. PNGs carry no software or date metadata, so
the same numbers give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medran.contracts import ZERO_SHOT_ACCURACY, recall_key
from medran.reporting.inputs import Expected
from medran.reporting.results import Downstream

PANEL = (3.2, 2.6)  # inches per subplot


def save(figure: Figure, path: Path, dpi: int) -> Path:
    FigureCanvasAgg(figure)  # the raster canvas, whatever matplotlib's default backend
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, format="png", metadata={"Software": None})
    return path


def panels(n: int) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(PANEL[0] * n, PANEL[1]))
    return figure, list(figure.subplots(1, n, squeeze=False)[0])


def accuracy_vs_noise(
    rows: Sequence[Downstream], task: str, expected: Expected, path: Path, dpi: int
) -> Path:
    """One panel for clean accuracy and one per eps; a line per method over noise levels."""
    figure, axes = panels(1 + len(expected.eps))
    levels = [float(level) for level in expected.level_names]
    mine = [r for r in rows if r.task == task]
    titles = ["clean"] + [f"robust, eps {e:g}/255" for e in expected.eps]
    for i, (ax, title) in enumerate(zip(axes, titles, strict=True)):
        for method in expected.methods:
            by_level = {r.level: r for r in mine if r.method == method}
            ys = [_value(by_level.get(level), i, expected.eps) for level in expected.level_names]
            ax.plot(levels, ys, marker="o", label=method)
        _style(ax, f"{task}: {title}", "noise level", "accuracy")
    axes[-1].legend(fontsize=7)
    figure.suptitle(f"{task}: accuracy vs upstream noise level", fontsize=9)
    return save(figure, path, dpi)


def _value(row: Downstream | None, panel: int, eps: Sequence[float]) -> float:
    if row is None:
        return math.nan
    return row.clean.mean if panel == 0 else row.robust[eps[panel - 1]].mean


def robust_vs_eps(
    rows: Sequence[Downstream], task: str, expected: Expected, path: Path, dpi: int
) -> Path:
    """One panel per noise level; a line per method from eps 0 (the attacked subset, clean)
    through every configured eps."""
    figure, axes = panels(len(expected.levels))
    xs = [0.0, *expected.eps]
    mine = {(r.level, r.method): r for r in rows if r.task == task}
    for ax, level in zip(axes, expected.level_names, strict=True):
        for method in expected.methods:
            row = mine[(level, method)]
            ys = [row.attacked_clean.mean] + [row.robust[e].mean for e in expected.eps]
            ax.plot(xs, ys, marker="o", label=method)
        _style(ax, f"{task}, noise level {level}", "eps (/255)", "accuracy")
    axes[-1].legend(fontsize=7)
    figure.suptitle(f"{task}: robust accuracy vs attack budget", fontsize=9)
    return save(figure, path, dpi)


def retrieval_vs_noise(
    table: dict[str, dict[str, float]], expected: Expected, path: Path, dpi: int
) -> Path:
    """Retrieval recall both ways (solid: image->text, dashed: text->image) and zero-shot
    accuracy over noise levels."""
    figure, (recall, zero_shot) = panels(2)
    levels = [float(level) for level in table]
    for i, k in enumerate(expected.recall_at):  # a colour per k, a line style per direction
        for direction, style in (("i2t", "-"), ("t2i", "--")):
            ys = [row[recall_key(direction, k)] for row in table.values()]
            recall.plot(levels, ys, style, color=f"C{i}", marker="o", label=f"{direction} R@{k}")
    _style(recall, "retrieval (clean test pairs)", "noise level", "recall")
    recall.legend(fontsize=7, ncol=2)
    zero_shot.plot(levels, [row[ZERO_SHOT_ACCURACY] for row in table.values()], marker="o")
    _style(zero_shot, "zero-shot classification", "noise level", "accuracy")
    return save(figure, path, dpi)


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
