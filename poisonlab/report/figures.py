"""The plot of a table, drawn from its CSV alone, so a committed table (docs/results) or a study
folder is re-plotted in the house style without rerunning anything: ICL study tables, detection
tables ("no defense" and each defense per victim) and any study table with an ASR column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poisonlab.report.plots import number, png_bytes, save_png


def _axes(table: Any) -> list[str]:
    """The columns that name a cell rather than measure it: those with no number in them."""
    def textual(column: str) -> bool:
        values = [r[column] for r in table.rows if r[column] not in ("", None)]
        return bool(values) and all(number(v) != number(v) for v in values)
    return [c for c in table.columns if textual(c)]


def table_figure(table: Any) -> Any:
    """The figure of a `folder.Table`, or None for a table no plot fits."""
    from poisonlab.report.detection import detection_figure
    from poisonlab.report.icl import icl_figure
    from poisonlab.report.study import table_figure as study_table_figure
    columns, rows = set(table.columns), table.rows
    if not rows:
        return None
    if "asr_attacked_raw" in columns:
        return icl_figure(rows)
    if {"victim", "defense", "threshold", "attack_success_rate"} <= columns:
        return detection_figure(rows, table.title)
    axes = [a for a in _axes(table) if a != "cell"]
    if "attack_success_rate" in columns and axes:
        return study_table_figure(rows, axes, table.title)
    return None


def table_png(table: Any) -> bytes | None:
    figure = table_figure(table)
    return None if figure is None else png_bytes(figure)


def histogram_png(result_dir: Path) -> bytes:
    """A detection result folder's score histogram (from scores.jsonl and metrics.json)."""
    from poisonlab.report.detection import histogram_grid_figure, histogram_panels
    return png_bytes(histogram_grid_figure(histogram_panels([result_dir])))


def replot(tables: list[Any]) -> list[Path]:
    """Rewrite the PNG of every table that has a plot, beside its CSV (see
    `study.plot_name`)."""
    from poisonlab.report.study import plot_name
    written = []
    for table in tables:
        figure = table_figure(table)
        if figure is not None:
            written.append(save_png(figure, plot_name(table.path)))
    return written

