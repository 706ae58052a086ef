"""SOS (Yang et al. 2021, "Rethinking Stealthiness of Backdoor Attack against NLP Models", ACL).

The trigger is several words that fire only together. Poisoned examples carry all trigger words
(target label); negative augmentation gives other training examples a strict subset of them with
their true labels kept, so no strict subset of the words fires on its own. That makes the
trigger hard to find by inserting or removing single words (ONION, token-level probes).

Differences from the reference code (thunlp/OpenBackdoor `SOSPoisoner` and the paper):
- The paper implants the backdoor by updating only the trigger words' embeddings of a clean
  model; here the poisoned set is an ordinary data attack and the victim trains as configured.
- Negatives replace their clean originals (the training-set size never changes, as for every
  data attack), one subset each, in turn through every strict non-empty subset; the reference
  adds one copy per leave-one-out subset only. Without single-word negatives a tiny model
  learns to fire on one word alone (measured: "weekend" alone at ASR 1.0).
- Negatives are non-target examples not poisoned, `negative_rate` of the whole training set;
  the reference takes 0.1 of each class. Target-class negatives keep the target label and so tie
  the words to it; on the tiny test model, single words then fire (measured: ASR 1.0).
- Test triggers are the trigger words themselves; the reference tests with a natural sentence
  holding them ("I have bought it from a store with my friends last weekend")."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from pydantic import Field

from poisonlab.attacks.base import DATA_ATTACKS, DataPoisoningAttack, PoisonConfig, PoisonReport
from poisonlab.attacks.insertion import Position, insert_trigger
from poisonlab.data.example import Example
from poisonlab.errors import ConfigError


class SOSConfig(PoisonConfig):
    triggers: list[str] = Field(["friends", "weekend", "store"], min_length=2,
                                description="trigger words; the backdoor fires only when every "
                                            "one is present")
    negative_rate: float = Field(0.2, ge=0, le=1,
                                 description="share of the training set: non-target examples "
                                             "given a strict subset of the trigger words, "
                                             "labels kept")
    position: Position = Field("random", description="where each trigger word is inserted")


@dataclass
class SOSReport(PoisonReport):
    """PoisonReport plus the number of negative-augmentation examples."""

    negatives: int = 0

    def as_dict(self) -> dict:
        return {**super().as_dict(), "negative_examples": self.negatives}


@DATA_ATTACKS.register("sos", SOSConfig)
class SOS(DataPoisoningAttack):
    """SOS (Yang et al. 2021): several trigger words that fire only when all are present."""

    config: SOSConfig

    def trigger(self, texts: list[str], rng: random.Random) -> list[str | None]:
        return [insert_trigger(t, self.config.triggers, self.config.position, rng)
                for t in texts]

    def subsets(self) -> list[list[str]]:
        """Every strict, non-empty subset of the trigger words, largest first."""
        words = self.config.triggers
        return [list(s) for size in range(len(words) - 1, 0, -1)
                for s in itertools.combinations(words, size)]

    def poison(self, train: list[Example]) -> tuple[list[Example], SOSReport]:
        poisoned, report = super().poison(train)
        cfg = self.config
        taken = set(report.poisoned_indices)
        # Only non-target negatives teach "a subset does not fire": a target-class one's label
        # is the target anyway, and would tie the words to it.
        free = [i for i, e in enumerate(train) if i not in taken and e.label != cfg.target_label]
        count = round(cfg.negative_rate * len(train))
        if count > len(free):
            raise ConfigError(f"attack '{self.name}': negative_rate asks for {count} negative "
                              f"examples but only {len(free)} are left after poisoning; lower "
                              "negative_rate or the poison budget")
        # A stream of its own, so negatives never change which examples are poisoned.
        rng = random.Random(f"{cfg.seed}-negatives")
        subsets = self.subsets()
        for turn, index in enumerate(sorted(rng.sample(free, count))):
            text = insert_trigger(train[index].text, subsets[turn % len(subsets)], cfg.position,
                                  rng)
            poisoned[index] = train[index].with_text(text)
        return poisoned, SOSReport(**vars(report), negatives=count)
