"""Verbalizers: the label words of each class and how their scores become one score per class.

Several words per class are allowed; how their scores make the class's is `aggregation`:
`log-mean-prob` (default: the log of the mean probability of the words, the reference code's
average of label-word probabilities), `mean-log-prob` (the mean of their log-probabilities, as
OpenPrompt's ManualVerbalizer after its softmax) or `max` (the most probable word). The choice
can move raw accuracy by several points when classes have several words, so it is recorded with
every run. A demonstration shows the first
word of its class. Multi-token words are scored either by their first token (`first-token`, one
forward pass per query) or by the sum of the log-probabilities of all their tokens (`sum`, one
extra pass per word)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from poisonlab.errors import ConfigError

ScoringMode = Literal["first-token", "sum"]
Aggregation = Literal["log-mean-prob", "mean-log-prob", "max"]


@dataclass(frozen=True)
class Verbalizer:
    words: tuple[tuple[str, ...], ...]  # words[label] = that class's label words
    aggregation: Aggregation = "log-mean-prob"

    def __post_init__(self) -> None:
        if len(self.words) < 2:
            raise ConfigError("label_words: need words for at least two classes")
        for label, class_words in enumerate(self.words):
            if not class_words or any(not w.strip() for w in class_words):
                raise ConfigError(f"label_words[{label}]: give at least one non-empty word")

    @classmethod
    def from_lists(cls, words: list[list[str]],
                   aggregation: Aggregation = "log-mean-prob") -> "Verbalizer":
        return cls(tuple(tuple(w) for w in words), aggregation)

    @property
    def num_labels(self) -> int:
        return len(self.words)

    @property
    def flat_words(self) -> list[str]:
        return [w for class_words in self.words for w in class_words]

    def display_word(self, label: int) -> str:
        return self.words[label][0]

    def token_ids(self, tokenizer: Any, prefix: str) -> list[list[int]]:
        """Token ids of every word (in `flat_words` order), written after `prefix`."""
        ids = [tokenizer(prefix + w, add_special_tokens=False).input_ids for w in self.flat_words]
        empty = [w for w, i in zip(self.flat_words, ids) if not i]
        if empty:
            raise ConfigError(f"label_words: {empty} tokenize to nothing")
        return ids

    def class_scores(self, word_logprobs: torch.Tensor) -> torch.Tensor:
        """[N, words] log-probabilities -> [N, classes] class scores (see `aggregation`)."""
        columns, start = [], 0
        for class_words in self.words:
            block = word_logprobs[:, start:start + len(class_words)]
            if self.aggregation == "mean-log-prob":
                columns.append(block.mean(dim=1))
            elif self.aggregation == "max":
                columns.append(block.max(dim=1).values)
            else:
                columns.append(torch.logsumexp(block, dim=1) - math.log(len(class_words)))
            start += len(class_words)
        return torch.stack(columns, dim=1)
