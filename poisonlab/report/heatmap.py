"""Heat maps of one metric over two axes of a study (e.g. ASR after each defense, attacks x
defenses), one panel per value of a third axis (e.g. the data set). Cells are annotated with
their value in percent on a fixed 0-100 colour scale, so panels and studies compare at a glance;
a cell with no result (left out, or not finished) is grey and says "n/a"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from poisonlab.report.plots import MAX_WIDTH, METRIC_NAMES, number, pyplot


def labels_of(rows: Sequence[dict[str, Any]], axis: str) -> list[str]:
    """The values of `axis` in the order they first appear."""
    return list(dict.fromkeys(str(r[axis]) for r in rows))


def heatmap_values(rows: Sequence[dict[str, Any]], row_axis: str, column_axis: str,
                   metric: str, row_labels: Sequence[str], column_labels: Sequence[str]
                   ) -> np.ndarray:
    """The metric in percent, one row per row label and one column per column label (NaN
    where no row holds it)."""
    values = np.full((len(row_labels), len(column_labels)), np.nan)
    for r in rows:
        if str(r[row_axis]) in row_labels and str(r[column_axis]) in column_labels:
            values[list(row_labels).index(str(r[row_axis])),
                   list(column_labels).index(str(r[column_axis]))] = 100 * number(r.get(metric))
    return values


def heatmap_figure(rows: Sequence[dict[str, Any]], *, row_axis: str, column_axis: str,
                   panel_axis: str | None = None, metric: str = "attack_success_rate",
                   title: str = "") -> Any:
    """One heat map of `metric` (a rate, drawn in percent) with `row_axis` down and
    `column_axis` across, per value of `panel_axis` (one panel without it); every panel has
    the same rows and columns, in the order they first appear."""
    plt = pyplot()
    panels = labels_of(rows, panel_axis) if panel_axis else [""]
    row_labels, column_labels = labels_of(rows, row_axis), labels_of(rows, column_axis)
    width = min(MAX_WIDTH, 1.2 + len(panels) * (0.75 * len(column_labels) + 1.0))
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 1.4 + 0.45 * len(row_labels)),
                             squeeze=False, sharey=True, layout="constrained")
    cmap = plt.get_cmap("Reds").with_extremes(bad="0.85")
    name = METRIC_NAMES.get(metric, metric.replace("_", " "))
    for ax, panel in zip(axes[0], panels):
        selected = [r for r in rows if not panel_axis or str(r[panel_axis]) == panel]
        values = heatmap_values(selected, row_axis, column_axis, metric, row_labels,
                                column_labels)
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=100,
                          aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            text = "n/a" if np.isnan(value) else f"{value:.0f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if value > 60 else "black")
        ax.set_xticks(range(len(column_labels)), column_labels, rotation=45, ha="right")
        ax.set_yticks(range(len(row_labels)), row_labels)
        ax.set_xlabel(column_axis)
        if ax is axes[0][0]:
            ax.set_ylabel(row_axis)
        if panel_axis:
            ax.set_title(f"{panel_axis}: {panel}")
    fig.colorbar(image, ax=list(axes[0]), label=f"{name} (%)", shrink=0.9)
    fig.suptitle(title or f"{name} (%) by {row_axis} and {column_axis}", fontsize=10)
    return fig
