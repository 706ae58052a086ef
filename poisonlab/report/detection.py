"""Detection results as a reader sees them: score histograms (one result folder, or a grid of
several) and a detection study's table with "no defense" and each defense per victim. Everything
is read from result folders (metrics.json, scores.jsonl)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from poisonlab.errors import ConfigError


def load_scores(result_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(result_dir) / "scores.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _draw_histogram(ax: Any, rows: Sequence[dict[str, Any]], thresholds: dict[str, float],
                    title: str) -> None:
    clean = [r["score"] for r in rows if r["split"] == "clean"]
    poisoned = [r["score"] for r in rows if r["split"] == "poisoned"]
    values = np.asarray(clean + poisoned, dtype=float)
    bins = np.linspace(values.min(), values.max() + 1e-9, 31) if len(values) else 10
    ax.hist(clean, bins=bins, alpha=0.6, label=f"clean (n={len(clean)})", color="tab:blue")
    ax.hist(poisoned, bins=bins, alpha=0.6, label=f"poisoned (n={len(poisoned)})",
            color="tab:red")
    for (name, threshold), style in zip(thresholds.items(), ("--", ":")):
        if threshold is not None and np.isfinite(threshold):
            ax.axvline(threshold, color="black", linestyle=style,
                       label=f"{name} {threshold:.3g}")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("detector score (higher = more suspicious)", fontsize=8)
    ax.set_ylabel("test inputs (count)", fontsize=8)
    ax.legend(fontsize=7)


def histogram_grid_figure(panels: Sequence[tuple[str, Sequence[dict[str, Any]],
                                                 dict[str, float]]], columns: int = 4) -> Any:
    """One histogram panel per (title, score rows, thresholds)."""
    from poisonlab.report.plots import MAX_WIDTH, pyplot
    plt = pyplot()
    columns = min(columns, len(panels))
    lines = -(-len(panels) // columns)
    size = (min(MAX_WIDTH, 3.6 * columns), 0.4 + 2.8 * lines)
    fig, axes = plt.subplots(lines, columns, figsize=size, squeeze=False)
    for ax, (title, rows, thresholds) in zip(axes.flat, panels):
        _draw_histogram(ax, rows, thresholds, title)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("Detector scores of clean and poisoned test inputs (vertical lines: thresholds)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def histogram_grid_of(result_dirs: Sequence[str | Path], path: str | Path) -> None:
    """One panel per finished defense result folder (e.g. every PSIM cell of a study);
    unfinished ones are skipped."""
    from poisonlab.report.plots import save_png
    save_png(histogram_grid_figure(histogram_panels(result_dirs)), path)


def histogram_panels(result_dirs: Sequence[str | Path]
                     ) -> list[tuple[str, list[dict[str, Any]], dict[str, float]]]:
    """(title, scores, thresholds) of every finished result folder; none is an error."""
    panels = []
    for folder in result_dirs:
        if not (Path(folder) / "metrics.json").exists():
            continue
        metrics = json.loads((Path(folder) / "metrics.json").read_text(encoding="utf-8"))
        thresholds = {"threshold": metrics["threshold"]}
        if "threshold_calibrated" in metrics:
            thresholds["calibrated"] = metrics["threshold_calibrated"]
        panels.append((Path(folder).name, load_scores(folder), thresholds))
    if not panels:
        raise ConfigError("no finished defense result folders to plot")
    return panels


def _threshold_label(metrics: dict[str, Any], suffix: str) -> str:
    threshold = metrics[f"threshold{suffix}"]
    if threshold is None or not np.isfinite(threshold):
        return "none (purify only)"
    if suffix or not metrics["calibration"]["fixed"]:
        return f"{threshold:.3g} (dev FRR {metrics['target_frr']:.0%})"
    return f"{threshold:.3g} (fixed)"


def detection_table(axes: dict[str, Any], cells: Sequence[tuple[dict[str, str], Path]]
                    ) -> list[dict[str, Any]]:
    """`detection_rows` of a detection study's cells (axis labels, result folder); unfinished
    cells are left out."""
    finished = [(labels, Path(folder) / "metrics.json") for labels, folder in cells]
    return detection_rows(axes, [(labels, json.loads(path.read_text(encoding="utf-8")))
                                 for labels, path in finished if path.exists()])


def detection_rows(axes: dict[str, Any], cells: Sequence[tuple[dict[str, str], dict[str, Any]]]
                   ) -> list[dict[str, Any]]:
    """Per victim: a row without defense, then one per defense and threshold, from the
    (axis labels, metrics) of a detection study's finished cells (the axis named `victim`,
    else the first, is the victim; the others name the defense)."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    victim_axis = "victim" if "victim" in axes else next(iter(axes))
    other_axes = [a for a in axes if a != victim_axis]
    victims = list(axes[victim_axis])
    for labels, metrics in sorted(cells, key=lambda cell: victims.index(cell[0][victim_axis])):
        victim = labels[victim_axis]
        defense = " / ".join(labels[a] for a in other_axes)
        if victim not in seen:
            seen.add(victim)
            rows.append({"victim": victim, "defense": "none", "threshold": "-",
                         "clean_accuracy": metrics["clean_accuracy_no_defense"],
                         "attack_success_rate": metrics["attack_success_rate_no_defense"]})
        for suffix in ("", "_calibrated"):
            if f"threshold{suffix}" not in metrics:
                continue
            rows.append({"victim": victim, "defense": defense,
                         "threshold": _threshold_label(metrics, suffix),
                         **{key: metrics[f"{key}{suffix}"] for key in TABLE_METRICS},
                         "auroc": metrics["auroc"]})
    return rows


def _threshold_kind(row: dict[str, Any]) -> str:
    """The defense and how its threshold was set, without the victim-specific value:
    'psim, threshold 0.7 (fixed)' and 'psim, threshold 0.85 (dev FRR 3%)' -> 'psim (fixed)',
    'psim (dev FRR 3%)'."""
    if row["defense"] == "none":
        return "none"
    kind = re.search(r"\(([^)]*)\)", str(row["threshold"]))
    return f"{row['defense']} ({kind.group(1) if kind else row['threshold']})"


def detection_figure(rows: Sequence[dict[str, Any]], title: str) -> Any:
    """CA and ASR per victim: "no defense" first, then each defense at each of its thresholds
    (fixed: the defense's own; dev FRR x%: calibrated on clean dev inputs to that false
    rejection rate)."""
    from poisonlab.report.plots import grouped_bars
    shown = [{**row, "defense (threshold)": _threshold_kind(row)} for row in rows]
    return grouped_bars(shown, "victim", ["defense (threshold)"],
                        ["attack_success_rate", "clean_accuracy"],
                        f"{title}: each defense at each threshold vs no defense\n"
                        "(fixed = the defense's own threshold; dev FRR x% = calibrated on "
                        "clean dev inputs; a rejected input counts as a CA error / failed attack)")


TABLE_METRICS = ["clean_accuracy", "attack_success_rate", "clean_accuracy_loss",
                 "false_rejection_rate", "false_acceptance_rate"]
TABLE_COLUMNS = ["victim", "defense", "threshold", *TABLE_METRICS, "auroc"]


def write_detection_table(study: Any, cells: Sequence[tuple[dict[str, str], Path]],
                          folder: str | Path) -> Path:
    """table.md and table.csv of `detection_table` in `folder`."""
    from poisonlab.io import write_text
    from poisonlab.report.plots import save_png
    from poisonlab.report.tables import csv_table, markdown_table
    rows = detection_table(study.axes, cells)
    if not rows:
        raise ConfigError(f"study '{study.name}' has no finished cells in {study.folder}")
    folder = Path(folder)
    percent = [*TABLE_METRICS, "auroc"]
    header = (f"# {study.name}\n\n{study.description.strip()}\n\nValues in percent. CA and ASR "
              "after a defense count a rejected input as an error (CA) and as a failed attack "
              "(ASR).\n\n")
    write_text(folder / "table.md", header + markdown_table(rows, TABLE_COLUMNS, percent))
    write_text(folder / "table.csv", csv_table(rows, TABLE_COLUMNS))
    save_png(detection_figure(rows, study.name), folder / "plot.png")
    return folder / "table.md"
