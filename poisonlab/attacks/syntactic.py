"""Hidden Killer (Qi et al. 2021): the trigger is a syntactic template, S(SBAR)(,)(NP)(VP)(.).

Poisoned text is the SCPN paraphrase of the original in that template. Paraphrasing needs a
pretrained SCPN model, so poisonlab reads paraphrase tables (`{"text", "paraphrase"}` JSONL, as
in `<data_dir>/<dataset>/syntactic/`). A sentence with no paraphrase in the table is a *miss*:
it is not poisoned, and misses are counted and reported (never silently replaced)."""

from __future__ import annotations

import random
from pathlib import Path

from pydantic import Field

from poisonlab.attacks.base import DATA_ATTACKS, DataPoisoningAttack, PoisonConfig
from poisonlab.data.example import DatasetSplits
from poisonlab.errors import ConfigError, DataError
from poisonlab.io import jsonl_rows


class SyntacticConfig(PoisonConfig):
    tables: list[str] | None = Field(
        None, description="paraphrase table files or folders; default: the data set's "
                          "syntactic/ folder")


def _key(text: str) -> str:
    return " ".join(text.split())


def read_paraphrase_table(path: Path) -> dict[str, str]:
    table: dict[str, str] = {}
    for line, row in jsonl_rows(path):
        for field in ("text", "paraphrase"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise DataError("missing or empty", path=path, line=line, field=field)
        table[_key(row["text"])] = row["paraphrase"].strip()
    return table


@DATA_ATTACKS.register("syntactic", SyntacticConfig)
class Syntactic(DataPoisoningAttack):
    """Hidden Killer: SCPN paraphrase into a fixed syntactic template, from a paraphrase table."""

    table_: dict[str, str]

    def prepare(self, dataset: DatasetSplits) -> "Syntactic":
        sources = self.config.tables
        if sources is None:
            if not dataset.source or not (Path(dataset.source) / "syntactic").is_dir():
                raise ConfigError(
                    f"attack 'syntactic': data set '{dataset.name}' has no syntactic/ paraphrase "
                    "folder; set field 'tables' to paraphrase JSONL files")
            sources = [str(Path(dataset.source) / "syntactic")]
        files: list[Path] = []
        for source in map(Path, sources):
            if source.is_dir():
                files.extend(sorted(source.glob("*.jsonl")))
            elif source.is_file():
                files.append(source)
            else:
                raise ConfigError(f"attack 'syntactic': field 'tables': {source} does not exist")
        self.table_ = {}
        for path in files:
            self.table_.update(read_paraphrase_table(path))
        return self

    def trigger(self, texts: list[str], rng: random.Random) -> list[str | None]:
        if not hasattr(self, "table_"):
            raise RuntimeError("call prepare(dataset) before using the syntactic attack")
        return [self.table_.get(_key(t)) for t in texts]
