"""Run a study: the cartesian product of its axes, each cell a run folder under the study folder.

A study YAML has `name`, `pipeline` (default data-poisoning), `base` (a run config), and `axes`:
an ordered mapping of axis name -> {value label -> config fragment merged into base}. Cells whose
metrics.json exists (with the same config) are reused, so a killed study resumes where it
stopped. Every cell is validated before the first one runs."""

from __future__ import annotations

import copy
import json
import itertools
import time
from pathlib import Path
from typing import Any

from dataclasses import dataclass

from pydantic import Field
from tqdm.auto import tqdm

from poisonlab.config import StrictConfig, deep_merge, read_yaml, set_dotted
from poisonlab.errors import ConfigError, PoisonlabError
from poisonlab.config import check_run_name
from poisonlab.experiment.rundir import RunSlot, StaleRunError
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
    check_run_name(study.name)
    for axis, values in study.axes.items():
        for label in values:
            check_run_name(str(label), where=f"axes.{axis}")
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


@dataclass
class Cell:
    labels: dict[str, str]
    config: Any          # the pipeline's validated config
    folder: Path
    status: str          # finished | stale | to run

    @property
    def name(self) -> str:
        return self.folder.name


def validate_cells(study: StudyConfig) -> list[Cell]:
    """Every cell's config validated (schema, component names and fields) before any runs; an
    error names the cell."""
    pipeline = PIPELINES[study.pipeline]()
    out = []
    for labels, raw in cells(study):
        try:
            check_run_name(raw["name"], where="cell name")
            config = pipeline.load(raw)
            resolved = pipeline.resolved(config)
        except PoisonlabError as exc:
            raise ConfigError(f"study '{study.name}', cell '{raw['name']}': {exc}") from None
        folder = pipeline.folder(config)
        if resolved is not None:
            status = RunSlot(folder, resolved, kind=study.pipeline).status()
        else:
            status = "finished" if (folder / "metrics.json").is_file() else "to run"
        out.append(Cell(labels, config, folder, status))
    return out


def run_study(study: StudyConfig, *, force: bool = False, progress: bool = True,
              only: list[str] | None = None, allow_pickle: bool = False,
              trust_remote_code: bool = False) -> list[dict[str, Any]]:
    """Validate every cell, then run every unfinished one (or those whose name contains a
    string of `only`); return the rows of every finished cell, so a partial rerun still reports
    the whole study."""
    pipeline = PIPELINES[study.pipeline]()
    all_cells = validate_cells(study)
    selected = [c for c in all_cells if not only or any(o in c.name for o in only)]
    stale = [c.name for c in selected if c.status == "stale" and not force]
    if stale:
        raise StaleRunError(f"study '{study.name}': {len(stale)} finished cells hold results of "
                            f"a different config ({', '.join(stale[:5])}); pass --force to "
                            "rerun them")
    rows = {}
    bar = tqdm(selected, desc=study.name, disable=not progress, unit="cell")
    for cell in bar:
        bar.set_postfix_str(cell.name)
        started = time.time()
        metrics = pipeline.run(cell.config, force=force, progress=progress,
                               allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        rows[cell.name] = {**metrics, **cell.labels, "cell": cell.name,
                           "cell_seconds": round(time.time() - started, 1)}
    for cell in all_cells:
        finished = cell.folder / "metrics.json"
        if cell.name not in rows and finished.is_file():
            rows[cell.name] = {**json.loads(finished.read_text(encoding="utf-8")),
                               **cell.labels, "cell": cell.name}
    ordered = [rows[c.name] for c in all_cells if c.name in rows]
    from poisonlab.report.study import write_report
    write_report(study, ordered)
    return ordered
