"""Mean and spread over replicates: a study whose `replicates` axis repeats every cell (e.g. at
several seeds) is reported per replicate and, here, once per remaining combination of axes, so a
difference of a few points can be read against the spread it has to beat."""

from __future__ import annotations

import statistics
from numbers import Real
from typing import Any, Sequence

from poisonlab.report.tables import csv_table, fmt, is_rate


def _numbers(rows: Sequence[dict[str, Any]], column: str) -> list[float]:
    return [float(r[column]) for r in rows
            if isinstance(r.get(column), Real) and not isinstance(r.get(column), bool)]


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


def mean_sd(mean: float | None, sd: float | None, percent: bool) -> str:
    """'84.0 ± 1.2' (percent: one decimal of 100x), the mean alone without a spread, '-' when
    there is no value."""
    if mean is None:
        return "-"
    text = fmt(mean) if percent else f"{mean:.4g}"
    if sd is None:
        return text
    return f"{text} ± {fmt(sd) if percent else f'{sd:.4g}'}"


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
