"""Run a study: the cartesian product of its axes, each cell a run folder under the study folder.

A study YAML has `name`, `pipeline` (default data-poisoning), `base` (a run config), and `axes`:
an ordered mapping of axis name -> {value label -> config fragment merged into base}; `exclude`
leaves out cells no config can make (e.g. a trigger with no paraphrase table). Cells whose
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

from poisonlab.config import StrictConfig, deep_merge, load_config
from poisonlab.errors import ConfigError, PoisonlabError
from poisonlab.config import check_run_name
from poisonlab.experiment.rundir import RunSlot, StaleRunError
from poisonlab.models.cache import ModelCache
from poisonlab.runtime import main_process
from poisonlab.studies.pipelines import PIPELINES


class StudyConfig(StrictConfig):
    name: str
    description: str = ""
    pipeline: str = Field("data-poisoning", description="pipeline each cell runs")
    output_dir: str = Field("studies_out", description="the study folder goes here")
    base: dict[str, Any] = Field(description="run config shared by every cell")
    axes: dict[str, dict[str, dict[str, Any]]] = Field(
        description="axis -> value label -> config fragment; cells are their product")
    exclude: list[dict[str, str]] = Field(
        [], description="cells left out: each entry {axis: label, ...} drops every cell with all "
                        "those labels (e.g. an attack one data set cannot take)")
    columns: list[str] = Field(["clean_accuracy", "attack_success_rate"],
                               description="metrics shown in the table (dotted keys reach "
                                           "nested metrics, e.g. sanitize.removal_recall)")
    replicates: str | None = Field(
        None, description="an axis whose values repeat the same cell (e.g. seeds): the report "
                          "adds summary.md / summary.csv with the mean and spread over it")

    @property
    def folder(self) -> Path:
        return Path(self.output_dir) / self.name


def load_study(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    study = load_config(StudyConfig, path, overrides)
    if study.pipeline not in PIPELINES:
        raise ConfigError(f"{path}: field 'pipeline': unknown pipeline '{study.pipeline}' "
                          f"(valid: {', '.join(PIPELINES)})")
    if not study.axes or any(not values for values in study.axes.values()):
        raise ConfigError(f"{path}: field 'axes': every axis needs at least one value")
    check_run_name(study.name)
    for axis, values in study.axes.items():
        for label in values:
            check_run_name(str(label), where=f"axes.{axis}")
    if study.replicates is not None and study.replicates not in study.axes:
        raise ConfigError(f"{path}: field 'replicates': no axis '{study.replicates}' (axes: "
                          f"{', '.join(study.axes)})")
    for number, excluded in enumerate(study.exclude):
        for axis, label in excluded.items():
            if label not in study.axes.get(axis, {}):
                raise ConfigError(f"{path}: field 'exclude.{number}': no axis '{axis}' with a "
                                  f"value '{label}' (axes: {', '.join(study.axes)})")
    return study


def resolve_study_path(name: str | Path) -> Path:
    """A study YAML path, or a bare study name looked up in ./studies (peft-susceptibility ->
    studies/peft_susceptibility.yaml)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = Path("studies") / f"{str(name).replace('-', '_')}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(p.stem.replace("_", "-") for p in Path("studies").glob("*.yaml"))
    raise ConfigError(f"unknown study '{name}': not a YAML file, and not one of "
                      f"{', '.join(known) or '(no studies/ folder here)'}")


@dataclass(frozen=True)
class Upstream:
    """Another study's cell that a cell depends on (`{study: NAME, cell: CELL}` in its config)."""

    study: str
    cell: str

    def load(self) -> StudyConfig:
        return load_study(resolve_study_path(self.study))

    def folder(self) -> Path:
        return self.load().folder / "cells" / self.cell


def resolve_upstream(value: Any, found: list[Upstream]) -> Any:
    """`value` with every `{study: NAME, cell: CELL}` mapping replaced by that cell's folder
    (collected in `found`), so a study names the upstream result it needs instead of a path."""
    if isinstance(value, dict):
        if set(value) == {"study", "cell"}:
            upstream = Upstream(str(value["study"]), str(value["cell"]))
            found.append(upstream)
            return str(upstream.folder())
        return {key: resolve_upstream(item, found) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_upstream(item, found) for item in value]
    return value


def cells(study: StudyConfig) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """(axis labels, merged run config) for every cell not excluded, in a stable order;
    upstream references are left in place (`validate_cells` resolves them)."""
    out = []
    axes = list(study.axes.items())
    for choice in itertools.product(*[list(values.items()) for _, values in axes]):
        labels = {axis: label for (axis, _), (label, _) in zip(axes, choice)}
        if any(all(labels[a] == v for a, v in excluded.items()) for excluded in study.exclude):
            continue
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
    upstream: list[Upstream]

    @property
    def name(self) -> str:
        return self.folder.name


def validate_cells(study: StudyConfig) -> list[Cell]:
    """Every cell's config validated (schema, component names and fields) before any runs; an
    error names the cell."""
    pipeline = PIPELINES[study.pipeline]()
    out = []
    for labels, raw in cells(study):
        upstream: list[Upstream] = []
        try:
            check_run_name(raw["name"], where="cell name")
            config = pipeline.load(resolve_upstream(raw, upstream))
            resolved = pipeline.resolved(config)
        except PoisonlabError as exc:
            raise ConfigError(f"study '{study.name}', cell '{raw['name']}': {exc}") from None
        folder = pipeline.folder(config)
        if resolved is not None:
            status = RunSlot(folder, resolved, kind=study.pipeline).status()
        else:
            status = "finished" if (folder / "metrics.json").is_file() else "to run"
        out.append(Cell(labels, config, folder, status, upstream))
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
    missing = [o for o in only or [] if not any(o in c.name for c in all_cells)]
    if missing:
        raise ConfigError(f"study '{study.name}': no cell name contains {', '.join(missing)}")
    stale = [c.name for c in selected if c.status == "stale" and not force]
    if stale:
        raise StaleRunError(f"study '{study.name}': {len(stale)} finished cells hold results of "
                            f"a different config ({', '.join(stale[:5])}); pass --force to "
                            "rerun them")
    rows = {}
    cache = ModelCache()  # what cells of this run share: PSIM modules, ONION LMs, W2S teachers
    bar = tqdm(selected, desc=study.name, disable=not progress or not main_process(),
               unit="cell")
    for cell in bar:
        bar.set_postfix_str(cell.name)
        for upstream in cell.upstream:  # build what the cell needs first (resumes if finished)
            if not (upstream.folder() / "metrics.json").is_file():
                run_study(upstream.load(), force=False, progress=progress, only=[upstream.cell],
                          allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        started = time.time()
        metrics = pipeline.run(cell.config, force=force, progress=progress,
                               allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
                               cache=cache)
        rows[cell.name] = {**metrics, **cell.labels, "cell": cell.name,
                           "cell_seconds": round(time.time() - started, 1)}
    for cell in all_cells:
        finished = cell.folder / "metrics.json"
        if cell.name not in rows and finished.is_file():
            rows[cell.name] = {**json.loads(finished.read_text(encoding="utf-8")),
                               **cell.labels, "cell": cell.name}
    ordered = [rows[c.name] for c in all_cells if c.name in rows]
    if main_process():  # one writer of the study's table and plot in a launched job
        from poisonlab.report.study import write_report
        write_report(study, ordered)
    return ordered
