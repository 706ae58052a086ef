"""Side-by-side comparison of finished run folders: the config fields that differ and every
numeric metric, with each run's difference to the first.

Works for every job kind that writes `config.yaml` and `metrics.json` (train runs, victims,
detection, repair, ICL, MNER). Configs are compared by what a run is (`config_identity` of the
run protocol), so a field added later at its default or a different output folder is no
difference. Nested metrics (ICL's `raw` / `calibrated`, MNER's per-split scores) become dotted
keys; rates (CA, ASR, FRR, F1, ...) are shown as percentages and their differences in points."""

from __future__ import annotations

import json
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any, Sequence

from poisonlab.errors import PoisonlabError
from poisonlab.experiment.rundir import METRICS, RunDir, config_identity
from poisonlab.report.tables import csv_table, flatten, is_number, is_rate, markdown_table

FORMATS = ("markdown", "csv")


@dataclass
class ComparedRun:
    label: str
    config: dict[str, Any]    # dotted path -> value, of the run's identity
    metrics: dict[str, Real]  # dotted key -> number


def read_run(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, metrics) of a finished run folder; anything else is a one-line error."""
    run = RunDir(path)
    for required in ("config.yaml", METRICS):
        if not (run.path / required).is_file():
            raise PoisonlabError(f"{run.path}: not a finished run folder (no {required})")
    try:
        return run.read_config(), run.read_metrics()
    except (json.JSONDecodeError, ValueError) as exc:
        raise PoisonlabError(f"{run.path}: unreadable run folder ({exc})") from None


def load_runs(paths: Sequence[str | Path]) -> list[ComparedRun]:
    """The runs to compare, labelled by folder name (by path where two names collide)."""
    folders = [Path(p) for p in paths]
    names = [f.name for f in folders]
    runs = []
    for folder in folders:
        config, metrics = read_run(folder)
        label = folder.name if names.count(folder.name) == 1 else str(folder)
        numbers = {k: v for k, v in flatten(metrics).items() if is_number(v)}
        runs.append(ComparedRun(label, flatten(config_identity(config)), numbers))
    return runs


def _union(keyed: list[dict[str, Any]]) -> list[str]:
    """Every key, in first-seen order."""
    return list(dict.fromkeys(key for mapping in keyed for key in mapping))


def _number(value: Real, rate: bool, sign: str = "") -> str:
    return f"{100 * value:{sign}.1f}" if rate else f"{value:{sign}.4g}"


def comparison_rows(runs: list[ComparedRun]) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of the comparison: config rows for the differing fields, then one row per
    metric; a `Δ <run>` column after every run but the first."""
    columns = ["section", "field", runs[0].label]
    for run in runs[1:]:
        columns += [run.label, f"Δ {run.label}"]
    missing = object()
    rows = []
    for key in _union([run.config for run in runs]):
        values = [run.config.get(key, missing) for run in runs]
        if all(value == values[0] for value in values):
            continue
        row = {"section": "config", "field": key}
        for run, value in zip(runs, values):
            row[run.label] = "-" if value is missing else json.dumps(value, default=str)
        rows.append(row)
    for key in _union([run.metrics for run in runs]):
        rate = is_rate(key)
        first = runs[0].metrics.get(key)
        row = {"section": "metric", "field": f"{key} (%)" if rate else key}
        for index, run in enumerate(runs):
            value = run.metrics.get(key)
            row[run.label] = "-" if value is None else _number(value, rate)
            if index:
                row[f"Δ {run.label}"] = ("-" if value is None or first is None
                                         else _number(value - first, rate, "+"))
        rows.append(row)
    return columns, rows


def compare_table(paths: Sequence[str | Path], fmt: str = "markdown") -> str:
    """The comparison of the run folders at `paths` as a markdown or CSV table."""
    if fmt not in FORMATS:
        raise PoisonlabError(f"unknown format '{fmt}' (use {', '.join(FORMATS)})")
    columns, rows = comparison_rows(load_runs(paths))
    return markdown_table(rows, columns) if fmt == "markdown" else csv_table(rows, columns)
