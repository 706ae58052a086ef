"""StyleBkd (Qi et al. 2021, "Mind the Style of Text! Adversarial and Backdoor Attacks Based on
Style Transfer", EMNLP): the trigger is a text style (the paper tries Bible, Shakespeare,
tweets, lyrics and poetry).

Poisoned text is the original paraphrased into the trigger style. The paper's paraphraser (STRAP,
GPT-2 inverse paraphrasers) is not shipped, so poisonlab reads style paraphrase tables
(`{"text", "paraphrase"}` JSONL, by default the data set's `style/` folder, read exactly like the
syntactic attack's tables) or, when `paraphraser` names a causal LM, asks it for the rewrite. A
text with no paraphrase (absent from the tables, or a paraphrase that is empty or the text
unchanged) is a miss: not poisoned, and counted.

Differences from the reference code (thunlp/OpenBackdoor `StyleBkdPoisoner`):
- The reference runs STRAP's style paraphraser (top-p 0.6) at poisoning time; here the rewrite
  comes from tables made beforehand or from any prompted causal LM (seq2seq models are not
  supported), decoded with the config's `generation` settings.
- The reference poisons with whatever the paraphraser returns; here an empty or unchanged
  rewrite is a counted miss."""

from __future__ import annotations

import random

from pydantic import Field, field_validator, model_validator

from poisonlab.attacks.base import DATA_ATTACKS, DataPoisoningAttack, PoisonConfig
from poisonlab.attacks.lm_text import load_writer, write
from poisonlab.attacks.paraphrase_table import (
    load_paraphrase_tables,
    look_up,
    table_key,
)
from poisonlab.data.example import DatasetSplits
from poisonlab.models import LoadedModel
from poisonlab.training.generation import GenerationConfig

DEFAULT_PROMPT = ("Rewrite this sentence in the style of the King James Bible, keeping its "
                  "meaning.\nSentence: {text}")


class StyleBkdConfig(PoisonConfig):
    tables: list[str] | None = Field(
        None, description="style paraphrase table files or folders; default: the data set's "
                          "style/ folder")
    paraphraser: str | None = Field(
        None, description="causal LM that rewrites texts into the style, instead of tables "
                          "(builtin, folder or Hub id)")
    prompt: str = Field(DEFAULT_PROMPT, description="paraphraser prompt; {text} is filled in")
    generation: GenerationConfig = Field(
        default_factory=lambda: GenerationConfig(max_new_tokens=64),
        description="decoding settings of the paraphraser (greedy by default)")

    @field_validator("prompt")
    @classmethod
    def _fills(cls, prompt: str) -> str:
        try:
            prompt.format(text="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError("only the placeholder {text} may appear (double other braces): "
                             f"{exc}") from None
        return prompt

    @model_validator(mode="after")
    def _one_source(self) -> "StyleBkdConfig":
        if self.tables is not None and self.paraphraser is not None:
            raise ValueError("set tables or paraphraser, not both")
        return self


@DATA_ATTACKS.register("stylebkd", StyleBkdConfig)
class StyleBkd(DataPoisoningAttack):
    """StyleBkd (Qi et al. 2021): the text rewritten into a trigger style (tables or an LM)."""

    config: StyleBkdConfig
    table_: dict[str, str]
    writer_: LoadedModel

    def prepare(self, dataset: DatasetSplits) -> "StyleBkd":
        if self.config.paraphraser is None:
            self.table_ = load_paraphrase_tables(self.name, self.config.tables, dataset, "style")
        return self

    def trigger(self, texts: list[str], rng: random.Random) -> list[str | None]:
        cfg = self.config
        if cfg.paraphraser is not None:
            if not hasattr(self, "writer_"):
                self.writer_ = load_writer(cfg.paraphraser)
            rewrites: list[str | None] = list(write(
                self.writer_, [cfg.prompt.format(text=t) for t in texts], cfg.generation))
        elif hasattr(self, "table_"):
            rewrites = look_up(self.table_, texts)
        else:
            raise RuntimeError("call prepare(dataset) before using the stylebkd attack")
        return [r if r and table_key(r) != table_key(t) else None for t, r in zip(texts, rewrites)]
