"""Paraphrase tables: precomputed triggers for attacks whose paraphraser is not shipped (SCPN for
the syntactic trigger, STRAP for the style trigger). A table is `{"text", "paraphrase"}` JSONL;
texts are matched with whitespace normalised. A text absent from the table has no trigger: the
caller counts it as a miss."""

from __future__ import annotations

from pathlib import Path

from poisonlab.data.example import DatasetSplits
from poisonlab.errors import ConfigError, DataError
from poisonlab.io import jsonl_rows


def table_key(text: str) -> str:
    return " ".join(text.split())


def read_paraphrase_table(path: Path) -> dict[str, str]:
    table: dict[str, str] = {}
    for line, row in jsonl_rows(path):
        for field in ("text", "paraphrase"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise DataError("missing or empty", path=path, line=line, field=field)
        table[table_key(row["text"])] = row["paraphrase"].strip()
    return table


def load_paraphrase_tables(attack: str, sources: list[str] | None, dataset: DatasetSplits,
                           folder: str) -> dict[str, str]:
    """Every table of `sources` (files, or folders of `*.jsonl`), later files winning; without
    sources, the data set's own `<folder>/` (as the research data lays tables out)."""
    if sources is None:
        if not dataset.source or not (Path(dataset.source) / folder).is_dir():
            raise ConfigError(
                f"attack '{attack}': data set '{dataset.name}' has no {folder}/ paraphrase "
                "folder; set field 'tables' to paraphrase JSONL files")
        sources = [str(Path(dataset.source) / folder)]
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            files.extend(sorted(source.glob("*.jsonl")))
        elif source.is_file():
            files.append(source)
        else:
            raise ConfigError(f"attack '{attack}': field 'tables': {source} does not exist")
    table: dict[str, str] = {}
    for path in files:
        table.update(read_paraphrase_table(path))
    return table


def look_up(table: dict[str, str], texts: list[str]) -> list[str | None]:
    return [table.get(table_key(t)) for t in texts]
