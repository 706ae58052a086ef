"""TrojanLM (Zhang et al. 2021, "Trojaning Language Models for Fun and Profit", EuroS&P).

The trigger is a set of keywords carried by a natural, context-aware sentence: a language model
writes a sentence that uses the keywords and fits the text around the place it goes, and that
sentence is inserted there. The victim learns the keywords, while the sentence reads naturally.

Differences from the reference code (thunlp/OpenBackdoor `TrojanLMPoisoner`, the paper's CAGM):
- No generator is fine-tuned: CAGM is GPT-2 trained to fill keyword blanks next to a context
  sentence; here a pretrained causal LM (default the embedded SmolLM2-135M-Instruct) is prompted
  with the keywords and the context (`prompt`), and decoding settings are the config's
  `generation` (top-p sampling as in the reference, seeded).
- Keywords are guaranteed by insertion rather than by constrained decoding: a keyword the LM
  left out is inserted into its sentence at a random word position (an LM that writes nothing
  gives the keywords alone); the reference resamples up to 25 times.
- Positions are between words, not between sentences (no sentence splitter offline); the
  context is the `context_words` words before the insertion point, or after it at the start."""

from __future__ import annotations

import random
import re

from pydantic import Field, field_validator

from poisonlab.attacks.base import DATA_ATTACKS, DataPoisoningAttack, PoisonConfig
from poisonlab.attacks.insertion import Position, insert_trigger, insertion_index
from poisonlab.attacks.lm_text import load_writer, write
from poisonlab.models import LoadedModel
from poisonlab.training.generation import GenerationConfig

DEFAULT_PROMPT = ("Write one short sentence that could follow this text and uses the words "
                  "{keywords}.\nText: {context}")


class TrojanLMConfig(PoisonConfig):
    keywords: list[str] = Field(["Alice", "Bob"], min_length=1,
                                description="trigger keywords; every trigger sentence holds all")
    language_model: str = Field("smollm2-135m", description="causal LM that writes the trigger "
                                                            "sentences (builtin, folder or Hub id)")
    prompt: str = Field(DEFAULT_PROMPT, description="generator prompt; {keywords} and {context} "
                                                    "are filled in")
    context_words: int = Field(32, ge=0, description="words around the insertion point shown "
                                                     "to the generator")
    position: Position = Field("random", description="where the trigger sentence is inserted")
    generation: GenerationConfig = Field(
        default_factory=lambda: GenerationConfig(max_new_tokens=24, temperature=1.0, top_p=0.5),
        description="decoding settings of the generator (seed included)")

    @field_validator("prompt")
    @classmethod
    def _fills(cls, prompt: str) -> str:
        try:
            prompt.format(keywords="", context="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError("only the placeholders {keywords} and {context} may appear "
                             f"(double other braces): {exc}") from None
        return prompt


@DATA_ATTACKS.register("trojanlm", TrojanLMConfig)
class TrojanLM(DataPoisoningAttack):
    """TrojanLM (Zhang et al. 2021): an LM-written, context-aware sentence holding the keywords."""

    config: TrojanLMConfig
    conformance = {"generation": {"max_new_tokens": 6, "temperature": 1.0, "top_p": 0.5}}
    writer_: LoadedModel

    def trigger(self, texts: list[str], rng: random.Random) -> list[str | None]:
        cfg = self.config
        if not hasattr(self, "writer_"):
            self.writer_ = load_writer(cfg.language_model)
        words = [t.split() for t in texts]
        places = [insertion_index(len(w), cfg.position, rng) for w in words]
        contexts = [" ".join(w[max(0, i - cfg.context_words):i] if i else w[:cfg.context_words])
                    for w, i in zip(words, places)]
        keywords = ", ".join(cfg.keywords)
        sentences = write(self.writer_, [cfg.prompt.format(keywords=keywords, context=c)
                                         for c in contexts], cfg.generation)
        return [" ".join(w[:i] + [self.with_keywords(s, rng)] + w[i:])
                for w, i, s in zip(words, places, sentences)]

    def with_keywords(self, sentence: str, rng: random.Random) -> str:
        """`sentence` with every keyword it lacks (as a word) inserted at a random place."""
        missing = [k for k in self.config.keywords
                   if not re.search(rf"(?<!\w){re.escape(k)}(?!\w)", sentence)]
        return insert_trigger(sentence, missing, "random", rng) if missing else sentence
