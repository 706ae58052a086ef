"""A study's report: table.md, table.csv and plot.png in the study folder, from the rows of its
finished cells (`study` is a poisonlab.studies.StudyConfig: name, description, axes, columns,
pipeline, folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from poisonlab.io import write_text
from poisonlab.report.plots import grouped_bars, save_png
from poisonlab.report.replicates import replicate_summary, summary_csv, summary_markdown
from poisonlab.report.tables import csv_table, flatten, is_rate, markdown_table

PLOTTED = ("attack_success_rate", "clean_accuracy")
GENERATIVE_PLOTTED = ("attack_success_rate", "false_trigger_rate", "rouge_l")


def write_report(study: Any, rows: list[dict[str, Any]]) -> None:
    """table.md and table.csv (columns may be dotted keys of nested metrics) and plot.png; a
    study with a `replicates` axis also gets summary.md, summary.csv and summary.png (mean and
    spread over it; the names `--replot` maps summary.csv to)."""
    axes = list(study.axes)
    flat = [flatten(row) for row in rows]
    columns = axes + study.columns
    percent = [c for c in study.columns if is_rate(c)]
    header = f"# {study.name}\n\n{study.description.strip()}\n\n" if study.description else (
        f"# {study.name}\n\n")
    note = "Values in percent.\n" if percent else ""
    write_text(study.folder / "table.md", header + markdown_table(flat, columns, percent) + "\n"
               + note)
    write_text(study.folder / "table.csv", csv_table(flat, columns))
    replicates = getattr(study, "replicates", None)
    if replicates:
        others = [a for a in axes if a != replicates]
        summary = replicate_summary(flat, axes, replicates, study.columns)
        write_text(study.folder / "summary.md", header + summary_markdown(
            summary, others, study.columns) + f"\nMean ± sample standard deviation over "
            f"{replicates} ({', '.join(study.axes[replicates])}); n: how many finished. "
            + note)
        write_text(study.folder / "summary.csv", summary_csv(summary, others, study.columns))
        if summary and "attack_success_rate" in summary[0]:
            save_png(table_figure(summary, others, f"{study.name}: mean ± sd over {replicates}"),
                     study.folder / "summary.png")
    figure = study_figure(study, rows)
    if figure is not None:
        save_png(figure, study.folder / "plot.png")


def study_figure(study: Any, rows: list[dict[str, Any]]) -> Any:
    """The study's plot: a detection study's defenses beside "no defense"; a generative study's
    ASR, false triggers and utility; any other study's ASR and CA per cell. None when its rows hold no ASR."""
    if not rows or "attack_success_rate" not in rows[0]:
        return None
    if study.pipeline == "detection":
        from poisonlab.report.detection import detection_figure, detection_rows
        return detection_figure(detection_rows(study.axes, [
            ({a: r[a] for a in study.axes}, r) for r in rows]), study.name)
    if study.pipeline == "generative":
        return generative_figure(rows, list(study.axes), study.name)
    if study.pipeline == "attack-defense" and len(study.axes) in (2, 3):
        return grid_heatmap(rows, list(study.axes), study.name)
    return table_figure(rows, list(study.axes), study.name)


def generative_figure(rows: Sequence[dict[str, Any]], axes: Sequence[str], title: str) -> Any:
    """ASR on triggered instructions, false triggers on clean ones and ROUGE-L of the clean
    answers, grouped by the first axis; a study with a `defense` axis gets a "none" bar per group
    (its cells' undefended figures)."""
    if "defense" not in axes or "attack_success_rate_no_defense" not in rows[0]:
        return grouped_bars(rows, axes[0], axes[1:], GENERATIVE_PLOTTED, title)
    others = [a for a in axes if a != "defense"]
    undefended = {tuple(r[a] for a in others): {
        **{a: r[a] for a in others}, "defense": "none",
        **{m: r.get(f"{m}_no_defense") for m in GENERATIVE_PLOTTED}} for r in rows}
    return grouped_bars([*undefended.values(), *rows], others[0], ["defense", *others[1:]],
                        GENERATIVE_PLOTTED, title)


def grid_heatmap(rows: Sequence[dict[str, Any]], axes: Sequence[str], title: str) -> Any:
    """An attack-defense grid's ASR after each defense: the last axis across, the one before it
    down, a panel per value of a third."""
    from poisonlab.report.heatmap import heatmap_figure
    return heatmap_figure(rows, row_axis=axes[-2], column_axis=axes[-1],
                          panel_axis=axes[0] if len(axes) == 3 else None,
                          title=f"{title}: attack success rate (%) after each {axes[-1]}\n"
                                "(a rejected input counts as a failed attack)")


def table_figure(rows: Sequence[dict[str, Any]], axes: Sequence[str], title: str) -> Any:
    """ASR and CA (those of them in the rows), grouped by the first axis, a bar per value of
    the others."""
    metrics = [m for m in PLOTTED if m in rows[0]]
    return grouped_bars(rows, axes[0], axes[1:], metrics, title)


def plot_name(table: Path) -> Path:
    """Where a table's plot is kept: table.csv -> plot.png, ablation_table.csv ->
    ablation_plot.png, study.csv -> study.png."""
    return table.with_name(table.stem.replace("table", "plot") + ".png")
