"""The house style of every poisonlab plot, and the grouped-bar chart of a study table.

Percentages are drawn on one 0-100 scale; every axis names its unit; a cell that is a baseline
(no attack, no defense) is drawn hatched and named as such in the legend, so a reader compares
against it at a glance. Figures are never wider than `MAX_WIDTH` inches: a large grid gets
narrower bars, not a 3,000-pixel strip."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from poisonlab.io import atomic_write
from poisonlab.report.tables import is_rate

# Axis value labels that mean "nothing was done", and what they are the baseline of.
BASELINES = {"clean": "no attack", "none": "no defense", "poisoned": "no defense"}
METRIC_NAMES = {"attack_success_rate": "attack success rate", "clean_accuracy": "clean accuracy",
                "false_trigger_rate": "false-trigger rate", "rouge_l": "ROUGE-L of clean answers"}
GRAYS = ("0.85", "0.65", "0.75", "0.55")
MAX_WIDTH = 12.0
DPI = 100


def pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8,
                         "ytick.labelsize": 8, "legend.fontsize": 8})
    return plt


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes (and closed): what an HTML page embeds."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    pyplot().close(fig)
    return buffer.getvalue()


def save_png(fig: Any, path: str | Path) -> Path:
    """Write the figure atomically (and close it)."""
    data = png_bytes(fig)
    return atomic_write(path, lambda p: p.write_bytes(data))


def baseline_of(label: str) -> str | None:
    """'no attack' / 'no defense' when any part of a series label ("clean / sst2") is a
    baseline value."""
    for part in label.split(" / "):
        if part in BASELINES:
            return BASELINES[part]
    return None


def number(value: Any) -> float:
    """A table cell as a float; empty or missing cells are NaN (drawn as no bar)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def grouped_bars(rows: Sequence[dict[str, Any]], group_axis: str, series_axes: Sequence[str],
                 metrics: Sequence[str], title: str) -> Any:
    """One panel per metric (stacked), one group of bars per value of `group_axis`, one bar per
    combination of `series_axes`; each bar is labelled with its value when there is room, and
    carries an error bar when its row has `<metric>_sd`. Returns the figure."""
    import numpy as np
    plt = pyplot()

    def series_of(row: dict[str, Any]) -> str:
        return " / ".join(str(row[a]) for a in series_axes) or "all"

    groups = list(dict.fromkeys(str(r[group_axis]) for r in rows))
    series = list(dict.fromkeys(series_of(r) for r in rows))
    series.sort(key=lambda s: baseline_of(s) is None)  # baselines first, else in table order
    bars = len(groups) * len(series)
    width = min(MAX_WIDTH, max(5.0, 2.5 + 0.3 * bars))
    labelled = (width - 2.5) / bars >= 0.25  # room for a value above every bar
    fig, axes = plt.subplots(len(metrics), 1, figsize=(width, 0.4 + 2.6 * len(metrics)),
                             squeeze=False, sharex=True)
    bar_width = min(0.8 / len(series), 0.4)
    colors = plt.get_cmap("tab10" if len(series) <= 10 else "tab20").colors
    for ax, metric in zip(axes[:, 0], metrics):
        scale = 100 if is_rate(metric) else 1
        for j, name in enumerate(series):
            members = {str(r[group_axis]): r for r in rows if series_of(r) == name}
            heights = [number(members[g].get(metric)) * scale if g in members else np.nan
                       for g in groups]
            # a replicate summary's sample standard deviation, as an error bar
            spread = [number(members[g].get(f"{metric}_sd")) * scale if g in members else np.nan
                      for g in groups]
            x = np.arange(len(groups)) + (j - (len(series) - 1) / 2) * bar_width
            baseline = baseline_of(name)
            label = f"{name} ({baseline})" if baseline else name
            color = GRAYS[j % len(GRAYS)] if baseline else colors[j % len(colors)]
            drawn = ax.bar(x, heights, bar_width * 0.95, label=label, color=color,
                           edgecolor="0.3" if baseline else "none",
                           hatch="//" if baseline else None,
                           yerr=spread if not np.isnan(spread).all() else None,
                           error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "0.2"})
            # every value when there is room, else only zeros (a zero bar is otherwise invisible)
            ax.bar_label(drawn, [f"{h:.0f}" if labelled or h == 0 else "" for h in heights],
                         fontsize=6, padding=1)
        name = METRIC_NAMES.get(metric, metric.replace("_", " "))
        ax.set_ylabel(f"{name} (%)" if scale == 100 else name)
        if scale == 100:
            ax.set_ylim(0, 110)
            ax.set_yticks(range(0, 101, 20))
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    last = axes[-1, 0]
    last.set_xlim(-0.6, len(groups) - 0.4)  # a lone group keeps its bar width
    last.set_xticks(np.arange(len(groups)), groups, rotation=20 if len(groups) > 6 else 0,
                    ha="right" if len(groups) > 6 else "center")
    last.set_xlabel(group_axis)
    axes[0, 0].set_title(title)
    if series_axes:
        axes[0, 0].legend(title=" / ".join(series_axes), loc="upper left",
                          bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return fig
