"""A study's report: table.md, table.csv and plot.png in the study folder, from the rows of its
finished cells (`study` is a poisonlab.studies.StudyConfig: name, description, axes, columns,
folder)."""

from __future__ import annotations

from typing import Any

from poisonlab.io import atomic_write, write_text
from poisonlab.report.tables import csv_table, markdown_table

PERCENT_HINTS = ("accuracy", "rate", "asr", "auroc", "frr", "far")


def write_report(study: Any, rows: list[dict[str, Any]]) -> None:
    axes = list(study.axes)
    columns = axes + study.columns
    percent = [c for c in study.columns if any(h in c.lower() for h in PERCENT_HINTS)]
    header = f"# {study.name}\n\n{study.description.strip()}\n\n" if study.description else (
        f"# {study.name}\n\n")
    note = "Values in percent.\n" if percent else ""
    write_text(study.folder / "table.md", header + markdown_table(rows, columns, percent) + "\n"
               + note)
    write_text(study.folder / "table.csv", csv_table(rows, columns))
    if "attack_success_rate" in study.columns and len(axes) >= 1:
        plot_asr_bars(study, rows)


def plot_asr_bars(study: Any, rows: list[dict[str, Any]]) -> None:
    """Grouped bars of ASR per value of the first axis, one bar per value of the other axes;
    CA as black markers on the same bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    axes = list(study.axes)
    groups = list(study.axes[axes[0]])
    series = sorted({" / ".join(str(r[a]) for a in axes[1:]) or "all" for r in rows},
                    key=lambda s: [list(study.axes[a]).index(v) if v in study.axes[a] else 0
                                   for a, v in zip(axes[1:], s.split(" / "))] if axes[1:] else 0)
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) * max(1, len(series)) / 2), 4))
    for j, name in enumerate(series):
        asr, ca = [], []
        for group in groups:
            match = [r for r in rows if r[axes[0]] == group
                     and (" / ".join(str(r[a]) for a in axes[1:]) or "all") == name]
            asr.append(100 * (match[0].get("attack_success_rate") or 0) if match else np.nan)
            ca.append(100 * match[0]["clean_accuracy"] if match else np.nan)
        x = np.arange(len(groups)) + (j - (len(series) - 1) / 2) * width
        ax.bar(x, asr, width, label=name)
        ax.plot(x, ca, "k_", markersize=12, markeredgewidth=2)
    ax.plot([], [], "k_", markersize=12, markeredgewidth=2, label="CA")
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel("ASR (bars) / CA (markers), %")
    ax.set_ylim(0, 105)
    ax.set_title(study.name)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    atomic_write(study.folder / "plot.png", lambda p: fig.savefig(p, dpi=120, format="png"))
    plt.close(fig)
