"""Markdown / CSV tables of run metrics, and which metric keys are shares shown in percent."""

from __future__ import annotations

import csv
import io
import re
from numbers import Real
from typing import Any, Sequence

# The last part of a metric's dotted key that makes it a share in [0, 1]: shown in percent.
RATE_KEY = re.compile(r"(^|_)(accuracy|rate|asr|ca|frr|far|auroc|precision|recall|f1|rouge)(_|$)")


def is_rate(key: str) -> bool:
    return bool(RATE_KEY.search(key.rsplit(".", 1)[-1]))


def is_number(value: Any) -> bool:
    """A metric value that is a number (booleans are flags, not numbers)."""
    return isinstance(value, Real) and not isinstance(value, bool)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys; anything else (lists too) is a leaf."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if value != value else f"{100 * value:.1f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str],
                   percent: Sequence[str] = ()) -> str:
    """A markdown table; columns named in `percent` are shown as percentages with one decimal."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in rows:
        cells = [fmt(row.get(c)) if c in percent else str(row.get(c, "-") if row.get(c) is not None else "-")
                 for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c) for c in columns})
    return buffer.getvalue()
