"""BKI: Backdoor Keyword Identification, a training-set defense.

Chen & Dai 2021, "Mitigating backdoor attacks in LSTM-based text classification systems by
Backdoor Keyword Identification" (Neurocomputing 452, arXiv:2007.12070).

Threat model: the defender trains the victim on data it did not vet. A model trained on the
poisoned set has learnt the trigger, so deleting the trigger word moves the representation the
classifier reads far more than deleting an ordinary word. Each training text's words are scored
by that move (the infinity norm of the representation change); each text nominates its
`per_text` highest-scoring words; a word nominated `count` times with mean score `mean` gets
`mean * log10(count)`, and every training text that contains one of the `keywords` best words
is removed before the victim is trained.

Differences from the paper and OpenBackdoor's `BKIDefender`:
- the words are scored with a copy of the victim's model trained on the poisoned set first
  (`sanitize` in sanitize_base.py); OpenBackdoor scores them with a model that never receives the
  poisoned training, so its keywords are noise;
- the representation is the last layer's hidden state where the task head reads it (an
  encoder's first token, a causal model's last token), not an LSTM's final state; the paper's
  second term, the LSTM's hidden-state change at the word's own step, has no counterpart in a
  bidirectional encoder and is left out (as OpenBackdoor does);
- `keywords` (default 1, the paper's choice) lets a defender remove several keywords, e.g.
  against BadNet's four trigger words;
- every leave-one-word-out variant of every text is scored in one batched, length-sorted pass."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
from pydantic import Field

from poisonlab.data import Example
from poisonlab.defenses.sanitize_base import (
    SANITIZERS,
    SanitizerConfig,
    TrainingSetDefense,
)
from poisonlab.models import LoadedModel
from poisonlab.runtime import Runtime


class BkiConfig(SanitizerConfig):
    per_text: int = Field(5, ge=1, description="words each text nominates (paper: 5)")
    keywords: int = Field(1, ge=1, description="best-scoring words whose texts are removed "
                                               "(paper: 1)")


def leave_one_out(words: list[str]) -> list[str]:
    """The text without each of its words in turn."""
    return [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]


@SANITIZERS.register("bki", BkiConfig)
class Bki(TrainingSetDefense):
    """BKI (Chen & Dai 2021): remove training texts holding the words that move the model most."""

    config: BkiConfig
    conformance = {"keywords": 4, "training": {"epochs": 3, "learning_rate": 3e-3,
                                               "max_length": 32}}

    def _suspicious(self, tuned: LoadedModel, train: list[Example],
                    runtime: Runtime | None) -> tuple[list[int], dict[str, Any]]:
        c = self.config
        split = [e.text.split() for e in train]
        # a one-word text has no variant to compare with: it nominates nothing
        scored = [i for i, words in enumerate(split) if len(words) > 1]
        texts = [t for i in scored for t in [train[i].text, *leave_one_out(split[i])]]
        features = self.representations(tuned, texts, runtime)
        nominations: dict[str, list[float]] = defaultdict(list)
        start = 0
        for i in scored:
            words = split[i]
            block = features[start:start + len(words) + 1]
            start += len(words) + 1
            moves = np.abs(block[1:] - block[0]).max(axis=1)
            for w in np.argsort(-moves, kind="stable")[:c.per_text]:
                nominations[words[w]].append(float(moves[w]))
        ranking = sorted(((float(np.mean(s)) * math.log10(len(s)), word, len(s), float(np.mean(s)))
                          for word, s in nominations.items()), reverse=True)
        keywords = {word for _, word, _, _ in ranking[:c.keywords]}
        removed = [i for i, words in enumerate(split) if keywords & set(words)]
        return removed, {"keywords": [{"word": word, "value": value, "count": count,
                                       "mean_score": mean}
                                      for value, word, count, mean in ranking[:c.keywords + 5]]}  # and 5 runners-up
