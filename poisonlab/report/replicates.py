"""Mean and spread over replicates: a study whose `replicates` axis repeats every cell (e.g. at
several seeds) is reported per replicate and, here, once per remaining combination of axes, so a
difference of a few points can be read against the spread it has to beat."""

from __future__ import annotations

import statistics
from typing import Any, Sequence

from poisonlab.report.tables import csv_table, is_number, is_rate


def _numbers(rows: Sequence[dict[str, Any]], column: str) -> list[float]:
    return [float(r[column]) for r in rows if is_number(r.get(column))]


def replicate_summary(rows: Sequence[dict[str, Any]], axes: Sequence[str], replicate_axis: str,
                      columns: Sequence[str]) -> list[dict[str, Any]]:
    """One row per combination of the other axes (in table order): its labels, `n` (replicates
    present) and, per column, the mean, the sample standard deviation (`<column>_sd`, None for a
    single replicate) and the range (`<column>_min`, `<column>_max`)."""
    others = [a for a in axes if a != replicate_axis]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[a] for a in others), []).append(row)
    summary = []
    for key, members in groups.items():
        out: dict[str, Any] = {**dict(zip(others, key)), "n": len(members)}
        for column in columns:
            values = _numbers(members, column)
            out[column] = statistics.fmean(values) if values else None
            out[f"{column}_sd"] = statistics.stdev(values) if len(values) > 1 else None
            out[f"{column}_min"] = min(values) if values else None
            out[f"{column}_max"] = max(values) if values else None
        summary.append(out)
    return summary


def mean_sd(mean: float | None, sd: float | None, percent: bool, decimals: int = 1) -> str:
    """'84.0 ± 1.2' (percent: 100x with `decimals` decimals; otherwise 4 significant digits),
    the mean alone without a spread, '-' when there is no value."""
    def show(value: float) -> str:
        return f"{100 * value:.{decimals}f}" if percent else f"{value:.4g}"
    if mean is None:
        return "-"
    return show(mean) if sd is None else f"{show(mean)} ± {show(sd)}"


def summary_markdown(summary: Sequence[dict[str, Any]], axes: Sequence[str],
                     columns: Sequence[str]) -> str:
    """The summary as a markdown table: labels, n, then mean ± sample sd per column."""
    header = [*axes, "n", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for row in summary:
        cells = [str(row[a]) for a in axes] + [str(row["n"])]
        cells += [mean_sd(row[c], row[f"{c}_sd"], is_rate(c)) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_csv(summary: Sequence[dict[str, Any]], axes: Sequence[str],
                columns: Sequence[str]) -> str:
    """The summary as CSV: labels, n, and mean, sd, min, max per column (raw values)."""
    stats = [f"{c}{s}" for c in columns for s in ("", "_sd", "_min", "_max")]
    return csv_table(summary, [*axes, "n", *stats])
