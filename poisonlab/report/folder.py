"""What a results folder holds, read once for the HTML report: a run folder (any job kind:
config.yaml, environment.json, metrics.json and the job's own records) or a study folder
(tables, plots and the run folders of its cells). Nothing here knows a job kind by name: a
folder is described by the files poisonlab writes into it."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from poisonlab.errors import PoisonlabError
from poisonlab.report.tables import flatten

RUN_MARKERS = ("config.yaml", "metrics.json", "release.json")
STUDY_TABLE_FOLDERS = (".", "report")   # an ICL study keeps its tables in <output_dir>/report
LOG_LINES = 40
MAX_CELL_DEPTH = 2                      # cells/<cell>, <dataset>/<cell>, released/<release>


@dataclass
class Table:
    path: Path
    title: str
    columns: list[str]
    rows: list[dict[str, str]]


@dataclass
class Plot:
    title: str
    png: bytes


@dataclass
class Cell:
    path: Path
    name: str            # path relative to the study folder
    finished: bool
    differs: dict[str, Any]


@dataclass
class ResultFolder:
    path: Path
    kind: str            # "run" or "study"
    title: str
    description: str
    config: dict[str, Any] | None
    config_source: str   # what `config` is, in words
    environment: dict[str, Any] | None
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # metrics.json, run.json...
    tables: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    log_tail: str = ""


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PoisonlabError(f"{path}: unreadable JSON ({exc})") from None


def _yaml(path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PoisonlabError(f"{path}: unreadable YAML ({exc})") from None


def _is_run(folder: Path) -> bool:
    return any((folder / name).is_file() for name in RUN_MARKERS)


def _markdown_intro(path: Path) -> tuple[str, str]:
    """(title, description) of a table.md: its '# ' heading and the paragraphs before the first
    table or sub-heading."""
    if not path.is_file():
        return "", ""
    title, text = "", []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# ") and not title:
            title = line[2:].strip()
        elif line.startswith(("|", "#")):
            break
        else:
            text.append(line)
    return title, "\n".join(text).strip()


def read_table(path: Path) -> Table:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        columns = list(reader.fieldnames or [])
    title = _markdown_intro(path.with_suffix(".md"))[0] or path.stem.replace("_", " ")
    return Table(path, title, columns, rows)


def _common(mappings: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The dotted keys every mapping shares with one value, and what is left of each."""
    flat = [flatten(m) for m in mappings]
    shared = {k: v for k, v in flat[0].items() if all(k in f and f[k] == v for f in flat)}
    return shared, [{k: v for k, v in f.items() if k not in shared} for f in flat]


def find_cells(study: Path) -> list[Path]:
    """Run folders below a study folder (up to MAX_CELL_DEPTH levels), hidden ones skipped."""
    found, level = [], [study]
    for _ in range(MAX_CELL_DEPTH):
        level = sorted(p for parent in level for p in parent.iterdir()
                       if p.is_dir() and not p.name.startswith("."))
        found += [p for p in level if _is_run(p)]
        level = [p for p in level if not _is_run(p)]
    return found


def _read_cells(study: Path) -> tuple[list[Cell], dict | None, dict | None]:
    """The cells, each with the config keys that set it apart; the config and environment the
    cells share."""
    folders = find_cells(study)
    configs = [_yaml(f / "config.yaml") if (f / "config.yaml").is_file() else {}
               for f in folders]
    environments = [_json(f / "environment.json") for f in folders
                    if (f / "environment.json").is_file()]
    if not folders:
        return [], None, None
    shared, differs = _common(configs)
    environment = _common(environments)[0] if environments else None
    cells = [Cell(f, f.relative_to(study).as_posix(), (f / "metrics.json").is_file()
                  or (f / "release.json").is_file(), d)
             for f, d in zip(folders, differs)]
    return cells, shared, environment


def _plots(folder: Path, tables: list[Table]) -> list[Plot]:
    """Each table's plot drawn afresh from its CSV, then every other PNG of the folder, and a
    detection run's score histogram when it has scores but no drawn histogram."""
    from poisonlab.report.figures import histogram_png, table_png
    from poisonlab.report.study import plot_name
    plots, redrawn = [], set()
    for table in tables:
        png = table_png(table)
        if png is not None:
            plots.append(Plot(f"{table.title} ({table.path.name})", png))
            redrawn.add(plot_name(table.path))
    for path in sorted(folder.glob("*.png")):
        if path not in redrawn:
            plots.append(Plot(path.name, path.read_bytes()))
    if (folder / "scores.jsonl").is_file() and not (folder / "histogram.png").is_file():
        plots.append(Plot("score histogram (scores.jsonl)", histogram_png(folder)))
    return plots


def _main_first(path: Path) -> tuple[bool, str]:
    """The study's own table (table.csv, study.csv) before its ablations and sweeps."""
    return path.name not in ("table.csv", "study.csv"), path.name


def read_folder(path: str | Path, study_config: dict[str, Any] | None = None,
                config_source: str = "the study's config") -> ResultFolder:
    """Everything the report shows of a run or study folder; `study_config` is the study's
    resolved config when the caller knows it (a study folder does not keep its YAML), and
    `config_source` says where it came from."""
    folder = Path(path)
    if not folder.is_dir():
        raise PoisonlabError(f"{folder}: no such folder")
    if _is_run(folder):
        return _read_run(folder)
    tables = [read_table(p) for sub in STUDY_TABLE_FOLDERS
              for p in sorted((folder / sub).glob("*.csv"), key=_main_first)]
    cells, shared, environment = _read_cells(folder)
    if not tables and not cells:
        raise PoisonlabError(f"{folder}: neither a run folder (no config.yaml or metrics.json) "
                             "nor a study folder (no table CSV, no run folders inside)")
    title, description = next((_markdown_intro(t.path.with_suffix(".md")) for t in tables),
                              (folder.name, ""))
    plot_folders = [folder / sub for sub in STUDY_TABLE_FOLDERS if (folder / sub).is_dir()]
    plots = [p for sub in plot_folders
             for p in _plots(sub, [t for t in tables if t.path.parent == sub])]
    source = config_source if study_config else "the config every cell shares (dotted keys)"
    return ResultFolder(folder, "study", title or folder.name, description,
                        study_config or shared, source, environment, tables=tables,
                        plots=plots, cells=cells)


def _read_run(folder: Path) -> ResultFolder:
    records = {p.name: _json(p) for p in sorted(folder.glob("*.json"))
               if p.name != "environment.json"}
    config = _yaml(folder / "config.yaml") if (folder / "config.yaml").is_file() else None
    environment = (_json(folder / "environment.json")
                   if (folder / "environment.json").is_file() else None)
    tables = [read_table(p) for p in sorted(folder.glob("*.csv"))]
    log = folder / "log.txt"
    tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_LINES:]
                     ) if log.is_file() else ""
    return ResultFolder(folder, "run", folder.name, "", config,
                        "config.yaml, resolved: defaults and seeds filled in", environment,
                        records, tables,
                        _plots(folder, tables), log_tail=tail)
