"""Run a study: the cartesian product of its axes, each cell a run folder under the study folder.

A study YAML has `name`, `pipeline` (default data-poisoning), `base` (a run config), and `axes`:
an ordered mapping of axis name -> {value label -> config fragment merged into base}. Cells whose
metrics.json exists are skipped, so a killed study resumes where it stopped."""

from __future__ import annotations

import copy
import json
import itertools
import time
from pathlib import Path
from typing import Any

from pydantic import Field
from tqdm.auto import tqdm

from poisonlab.config import StrictConfig, read_yaml, set_dotted
from poisonlab.errors import ConfigError
from poisonlab.registry import validate_config
from poisonlab.studies.pipelines import PIPELINES


class StudyConfig(StrictConfig):
    name: str
    description: str = ""
    pipeline: str = Field("data-poisoning", description="pipeline each cell runs")
    output_dir: str = Field("studies_out", description="the study folder goes here")
    base: dict[str, Any] = Field(description="run config shared by every cell")
    axes: dict[str, dict[str, dict[str, Any]]] = Field(
        description="axis -> value label -> config fragment; cells are their product")
    columns: list[str] = Field(["clean_accuracy", "attack_success_rate"],
                               description="metrics shown in the table")

    @property
    def folder(self) -> Path:
        return Path(self.output_dir) / self.name


def deep_merge(base: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and "name" not in value:
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_study(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    raw = read_yaml(path)
    for assignment in overrides:
        set_dotted(raw, assignment)
    study = validate_config(StudyConfig, raw, where=str(path))
    if study.pipeline not in PIPELINES:
        raise ConfigError(f"{path}: field 'pipeline': unknown pipeline '{study.pipeline}' "
                          f"(valid: {', '.join(PIPELINES)})")
    if not study.axes or any(not values for values in study.axes.values()):
        raise ConfigError(f"{path}: field 'axes': every axis needs at least one value")
    return study


def cells(study: StudyConfig) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """(axis labels, merged run config) for every cell, in a stable order."""
    out = []
    axes = list(study.axes.items())
    for choice in itertools.product(*[list(values.items()) for _, values in axes]):
        labels = {axis: label for (axis, _), (label, _) in zip(axes, choice)}
        config = copy.deepcopy(study.base)
        for _, fragment in choice:
            config = deep_merge(config, fragment)
        config["name"] = "__".join(labels.values())
        config["output_dir"] = str(study.folder / "cells")
        out.append((labels, config))
    return out


def run_study(study: StudyConfig, *, force: bool = False, progress: bool = True,
              only: list[str] | None = None) -> list[dict[str, Any]]:
    """Run every unfinished cell (or those whose name contains a string of `only`); return the
    rows of every finished cell, so a partial rerun still reports the whole study."""
    run = PIPELINES[study.pipeline]
    rows = []
    selected = lambda config: not only or any(o in config["name"] for o in only)
    todo = [(labels, config) for labels, config in cells(study) if selected(config)]
    bar = tqdm(todo, desc=study.name, disable=not progress, unit="cell")
    for labels, config in bar:
        bar.set_postfix_str(config["name"])
        started = time.time()
        metrics = run(config, force, progress)
        rows.append({**metrics, **labels, "cell": config["name"],
                     "cell_seconds": round(time.time() - started, 1)})
    for labels, config in cells(study):
        finished = Path(config["output_dir"]) / config["name"] / "metrics.json"
        if not selected(config) and finished.exists():
            rows.append({**json.loads(finished.read_text(encoding="utf-8")), **labels,
                         "cell": config["name"]})
    order = [config["name"] for _, config in cells(study)]
    rows.sort(key=lambda row: order.index(row["cell"]))
    from poisonlab.studies.report import write_report
    write_report(study, rows)
    return rows
