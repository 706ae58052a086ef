"""Detection results as a reader sees them: score histograms (one result folder, or a grid of
several) and a detection study's table with "no defense" and each defense per victim. Everything
is read from result folders (metrics.json, scores.jsonl)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from poisonlab.errors import ConfigError


def load_scores(result_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(result_dir) / "scores.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@dataclass
class HistogramPanel:
    """One detection result as a histogram: its title, scores.jsonl rows, what its score
    measures, and each threshold with its (FRR, FAR), when recorded."""

    title: str
    rows: list[dict[str, Any]]
    meaning: str
    thresholds: dict[str, tuple[float | None, tuple[float, float] | None]]


def score_meaning(defense: str | None) -> str:
    """What a defense's score measures, from its `score` docstring (the one definition), e.g.
    "maximum class probability of the PSIM module"; "detector score" when unknown."""
    from poisonlab.defenses.base import DETECTORS
    if defense not in DETECTORS.names():
        return "detector score"
    doc = (DETECTORS.entry(defense).component.score.__doc__ or "").strip()
    sentence = re.split(r"\.\s|\s\(|\n\n", doc)[0].rstrip(".").replace("\n", " ")
    sentence = re.sub(r"\s+", " ", sentence)
    return sentence[:1].lower() + sentence[1:] if sentence else "detector score"


THRESHOLD_STYLES = {"fixed": "--", "calibrated": ":"}
SPLIT_COLORS = {"clean": "tab:blue", "poisoned": "tab:red"}


def _panel_note(panel: HistogramPanel) -> str:
    """Each split's size and each threshold with its FRR and FAR: a panel's numbers at a
    glance (the line styles are in the figure legend)."""
    sizes = ", ".join(f"{split} n={sum(r['split'] == split for r in panel.rows)}"
                      for split in SPLIT_COLORS)
    lines = [sizes]
    for name, (threshold, rates) in panel.thresholds.items():
        if threshold is None or not np.isfinite(threshold):
            lines.append(f"{name}: none (purify only)")
        else:
            line = f"{name} {threshold:.3g}"
            lines.append(line if rates is None else
                         f"{line}: FRR {rates[0]:.1%}, FAR {rates[1]:.1%}")
    return "\n".join(lines)


def _draw_histogram(ax: Any, panel: HistogramPanel, bins: Any) -> None:
    """Each split's share of its inputs per score bin (clean and poisoned sets differ in size,
    so shares, not counts, compare them), and the thresholds."""
    for split, color in SPLIT_COLORS.items():
        scores = [r["score"] for r in panel.rows if r["split"] == split]
        if scores:
            ax.hist(scores, bins=bins, weights=np.full(len(scores), 100 / len(scores)),
                    alpha=0.55, color=color)
    for name, (threshold, _) in panel.thresholds.items():
        if threshold is not None and np.isfinite(threshold):
            ax.axvline(threshold, color="black", linestyle=THRESHOLD_STYLES[name],
                       linewidth=1.4)
    ax.set_title(panel.title)
    ax.grid(axis="y", color="0.9")
    ax.text(0.02, 0.97, _panel_note(panel), transform=ax.transAxes, va="top", fontsize=7,
            bbox={"facecolor": "white", "edgecolor": "0.8", "alpha": 0.85})


def histogram_grid_figure(panels: Sequence[HistogramPanel], columns: int = 4) -> Any:
    """One histogram panel per detection result, on one score range and one 0-100 % scale,
    with one legend for the figure."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from poisonlab.report.plots import MAX_WIDTH, pyplot
    plt = pyplot()
    columns = min(columns, len(panels))
    lines = -(-len(panels) // columns)
    width = min(MAX_WIDTH, max(3.2 * columns, 7.0))
    size = (width, 1.6 + 0.75 * (width / columns) * lines)
    fig, axes = plt.subplots(lines, columns, figsize=size, squeeze=False, sharex=True,
                             sharey=True)
    scores = np.asarray([r["score"] for p in panels for r in p.rows], dtype=float)
    scores = scores[np.isfinite(scores)]
    bins = np.linspace(scores.min(), scores.max() + 1e-9, 31) if len(scores) else 10
    for ax, panel in zip(axes.flat, panels):
        _draw_histogram(ax, panel, bins)
    tallest = max(ax.get_ylim()[1] for ax in axes.flat)
    axes[0, 0].set_ylim(0, min(100.0, tallest * 1.5))  # shared; room for each panel's note
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    meanings = " / ".join(dict.fromkeys(p.meaning for p in panels))
    fig.supxlabel(f"score: {meanings} (higher = more suspicious)", fontsize=9)
    fig.supylabel("share of the split's test inputs (%)", fontsize=9)
    used = {name for p in panels for name, (value, _) in p.thresholds.items()
            if value is not None and np.isfinite(value)}
    handles = [Patch(color=color, alpha=0.55, label=f"{split} test inputs")
               for split, color in SPLIT_COLORS.items()]
    handles += [Line2D([], [], color="black", linestyle=style,
                       label=f"{name} threshold" + (" (set on clean held-out inputs)"
                                                    if name == "calibrated" else
                                                    " (the defense's own)"))
                for name, style in THRESHOLD_STYLES.items() if name in used]
    legend_rows = 1 if width >= 10 else 2
    header = 0.55 + 0.2 * legend_rows  # inches above the panels: title, then legend
    fig.tight_layout(rect=(0, 0, 1, 1 - header / size[1]))
    fig.suptitle("Detector scores of clean and poisoned test inputs; inputs above a threshold "
                 "are rejected\n(FRR: clean inputs rejected; FAR: poisoned inputs accepted)",
                 fontsize=10, y=1 - 0.05 / size[1], va="top")
    fig.legend(handles=handles, loc="upper center", ncol=-(-len(handles) // legend_rows),
               fontsize=8, bbox_to_anchor=(0.5, 1 - 0.5 / size[1]), frameon=False)
    return fig


def histogram_grid_of(result_dirs: Sequence[str | Path], path: str | Path) -> None:
    """One panel per finished defense result folder (e.g. every PSIM cell of a study);
    unfinished ones are skipped."""
    from poisonlab.report.plots import save_png
    save_png(histogram_grid_figure(histogram_panels(result_dirs)), path)


def histogram_panels(result_dirs: Sequence[str | Path]) -> list[HistogramPanel]:
    """A panel for every finished result folder; none is an error."""
    panels = []
    for folder in result_dirs:
        if not (Path(folder) / "metrics.json").exists():
            continue
        metrics = json.loads((Path(folder) / "metrics.json").read_text(encoding="utf-8"))
        fixed = (metrics.get("calibration") or {}).get("fixed", True)
        thresholds = {}
        for suffix, name in (("", "fixed" if fixed else "calibrated"),
                             ("_calibrated", "calibrated")):
            if f"threshold{suffix}" in metrics:
                rates = (metrics.get(f"false_rejection_rate{suffix}"),
                         metrics.get(f"false_acceptance_rate{suffix}"))
                thresholds[name] = (metrics[f"threshold{suffix}"],
                                    None if None in rates else rates)
        panels.append(HistogramPanel(Path(folder).name, load_scores(folder),
                                     score_meaning(metrics.get("defense")), thresholds))
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
