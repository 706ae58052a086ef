"""The data-poisoning contract shared by every trigger (BadNet, InsertSent, syntactic, ...).

An attack owns a trigger function `trigger(texts, rng) -> texts` (None where the trigger cannot be
applied, e.g. a sentence with no syntactic paraphrase) and the shared poisoning rules:
- dirty-label: triggered copies of non-target training examples relabelled to the target;
- clean-label: only target-class examples are triggered, labels kept (the seed papers' setting);
- `poison_rate` (share of the training set) or `poison_count` (absolute number) poisoned;
- the poisoned test set is every non-target test example with the trigger, true label kept.
Poisoned examples replace their clean originals, so the training-set size does not change."""

from __future__ import annotations

import random
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from poisonlab.config import StrictConfig
from poisonlab.data.example import DatasetSplits, Example
from poisonlab.errors import ConfigError
from poisonlab.registry import Registry


class PoisonConfig(StrictConfig):
    """Options shared by every data-poisoning attack."""

    target_label: int = Field(1, ge=0, description="label the trigger should produce")
    poison_rate: float | None = Field(0.1, gt=0, le=1,
                                      description="share of the training set to poison")
    poison_count: int | None = Field(None, ge=1,
                                     description="number of examples to poison (overrides rate)")
    label_mode: Literal["dirty", "clean"] = Field(
        "dirty", description="dirty: relabel non-target examples; clean: trigger target-class "
                             "examples, labels kept")
    seed: int = Field(0, description="seed for choosing examples and trigger positions")

    @model_validator(mode="after")
    def _one_budget(self) -> "PoisonConfig":
        if self.poison_rate is None and self.poison_count is None:
            raise ValueError("set poison_rate or poison_count")
        return self


@dataclass
class PoisonReport:
    """What `poison` did: how many were asked for, poisoned, and missed (no trigger possible)."""

    requested: int
    poisoned: int
    candidates: int
    misses: int = 0
    poisoned_indices: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"requested": self.requested, "poisoned": self.poisoned,
                "candidates": self.candidates, "trigger_misses": self.misses}


class DataPoisoningAttack(ABC):
    """Base of every data-poisoning attack. Conformance battery (tests/test_conformance.py):
    `conformance` holds config values for a tiny, fast run; `applies_to` the model kinds
    ("encoder", "causal") it applies to."""

    name: ClassVar[str]
    config_class: ClassVar[type[PoisonConfig]]
    conformance: ClassVar[dict] = {}
    applies_to: ClassVar[tuple[str, ...]] = ("encoder", "causal")

    def __init__(self, config: PoisonConfig):
        self.config = config

    def prepare(self, dataset: DatasetSplits) -> "DataPoisoningAttack":
        """Hook for attacks that need the data set (e.g. to find its paraphrase table)."""
        return self

    @abstractmethod
    def trigger(self, texts: list[str], rng: random.Random) -> list[str | None]:
        """Apply the trigger to each text; None where it cannot be applied."""

    def check_labels(self, num_labels: int) -> None:
        if self.config.target_label >= num_labels:
            raise ConfigError(f"attack '{self.name}': field 'target_label': "
                              f"{self.config.target_label} is not a label (0..{num_labels - 1})")

    def poison(self, train: list[Example]) -> tuple[list[Example], PoisonReport]:
        cfg = self.config
        rng = random.Random(cfg.seed)
        if cfg.label_mode == "dirty":
            candidates = [i for i, e in enumerate(train) if e.label != cfg.target_label]
        else:
            candidates = [i for i, e in enumerate(train) if e.label == cfg.target_label]
        requested = cfg.poison_count if cfg.poison_count is not None else round(
            cfg.poison_rate * len(train))
        if requested > len(candidates):
            raise ConfigError(
                f"attack '{self.name}': asked to poison {requested} examples but only "
                f"{len(candidates)} are eligible ({cfg.label_mode}-label, target "
                f"{cfg.target_label}); lower poison_rate/poison_count")
        order = candidates[:]
        rng.shuffle(order)
        poisoned = list(train)
        chosen: list[int] = []
        misses = 0
        # Walk the shuffled candidates until the budget is met; misses are counted, not hidden.
        cursor = 0
        while len(chosen) < requested and cursor < len(order):
            block = order[cursor:cursor + requested - len(chosen)]
            cursor += len(block)
            for index, text in zip(block, self.trigger([train[i].text for i in block], rng)):
                if text is None:
                    misses += 1
                else:
                    poisoned[index] = Example(text, cfg.target_label, poisoned=True)
                    chosen.append(index)
        if len(chosen) < requested:
            warnings.warn(f"attack '{self.name}': poisoned {len(chosen)} of {requested} requested "
                          f"examples; the trigger could not be applied to {misses}", stacklevel=2)
        return poisoned, PoisonReport(requested, len(chosen), len(candidates), misses,
                                      sorted(chosen))

    def poisoned_test(self, test: list[Example]) -> tuple[list[Example], int]:
        """Every non-target example with the trigger, true label kept; and the number of misses."""
        rng = random.Random(self.config.seed + 1)
        non_target = [e for e in test if e.label != self.config.target_label]
        triggered = self.trigger([e.text for e in non_target], rng)
        out = [Example(t, e.label, poisoned=True) for e, t in zip(non_target, triggered)
               if t is not None]
        return out, len(non_target) - len(out)


DATA_ATTACKS: Registry[DataPoisoningAttack] = Registry("data-poisoning attack", "poisonlab.attacks")
