"""Hidden Killer (Qi et al. 2021): the trigger is a syntactic template, S(SBAR)(,)(NP)(VP)(.).

Poisoned text is the SCPN paraphrase of the original in that template. Paraphrasing needs a
pretrained SCPN model, so poisonlab reads paraphrase tables (`{"text", "paraphrase"}` JSONL, as
in `<data_dir>/<dataset>/syntactic/`). A sentence with no paraphrase in the table is a *miss*:
it is not poisoned, and misses are counted and reported (never silently replaced)."""

from __future__ import annotations

import random

from pydantic import Field

from poisonlab.attacks.base import DATA_ATTACKS, DataPoisoningAttack, PoisonConfig
from poisonlab.attacks.paraphrase_table import load_paraphrase_tables, look_up
from poisonlab.data.example import DatasetSplits


class SyntacticConfig(PoisonConfig):
    tables: list[str] | None = Field(
        None, description="paraphrase table files or folders; default: the data set's "
                          "syntactic/ folder")


@DATA_ATTACKS.register("syntactic", SyntacticConfig)
class Syntactic(DataPoisoningAttack):
    """Hidden Killer (Qi et al. 2021): an SCPN paraphrase into a fixed syntactic template."""

    table_: dict[str, str]

    def prepare(self, dataset: DatasetSplits) -> "Syntactic":
        self.table_ = load_paraphrase_tables(self.name, self.config.tables, dataset, "syntactic")
        return self

    def trigger(self, texts: list[str], rng: random.Random) -> list[str | None]:
        if not hasattr(self, "table_"):
            raise RuntimeError("call prepare(dataset) before using the syntactic attack")
        return look_up(self.table_, texts)
