"""The in-context attack contract: an attack rewrites some demonstrations (labels kept) and the
test queries; it never touches model weights. Attacks live in `poisonlab/attacks/icl_*.py` and
register into ICL_ATTACKS (not DATA_ATTACKS: they poison a prompt, not a training set)."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import ClassVar

from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.errors import ConfigError
from poisonlab.icl.demonstrations import Demonstration
from poisonlab.registry import Registry


class ICLAttackConfig(StrictConfig):
    """Options shared by every in-context attack."""

    target_label: int = Field(0, ge=0, description="label the trigger should produce")
    poisoned_demonstrations: int = Field(
        4, ge=0, description="how many target-class demonstrations to poison (chosen with seed)")
    poison_positions: list[int] | None = Field(
        None, description="indices (0-based) in the demonstration list to poison, all of the "
                          "target class; overrides poisoned_demonstrations")
    seed: int = Field(0, description="seed for choosing which demonstrations to poison")


class ICLAttack(ABC):
    """Base of every in-context attack. Conformance battery (tests/test_conformance.py):
    `conformance` holds config values for a tiny, fast run; `applies_to` the model kinds
    it applies to: causal only (ICL reads the label word a causal LM predicts next)."""

    name: ClassVar[str]
    config_class: ClassVar[type[ICLAttackConfig]]
    conformance: ClassVar[dict] = {}
    applies_to: ClassVar[tuple[str, ...]] = ("causal",)

    def __init__(self, config: ICLAttackConfig):
        self.config = config

    @abstractmethod
    def poison_one(self, demonstration: Demonstration) -> Demonstration:
        """One demonstration with the trigger (its label unchanged: the attack is clean-label)."""

    @abstractmethod
    def trigger_queries(self, queries: list[Demonstration]) -> list[Demonstration]:
        """The test queries with the trigger, true labels kept."""

    def check_labels(self, num_labels: int) -> None:
        if self.config.target_label >= num_labels:
            raise ConfigError(f"in-context attack '{self.name}': field 'target_label': "
                              f"{self.config.target_label} is not a label (0..{num_labels - 1})")

    def poisoned_indices(self, demonstrations: list[Demonstration]) -> list[int]:
        cfg = self.config
        targets = [i for i, d in enumerate(demonstrations) if d.label == cfg.target_label]
        if cfg.poison_positions is not None:
            wrong = [i for i in cfg.poison_positions if i not in targets]
            if wrong:
                raise ConfigError(
                    f"in-context attack '{self.name}': field 'poison_positions': {wrong} are not "
                    f"target-class demonstrations (those are at {targets})")
            return sorted(set(cfg.poison_positions))
        if cfg.poisoned_demonstrations > len(targets):
            raise ConfigError(
                f"in-context attack '{self.name}': field 'poisoned_demonstrations': "
                f"{cfg.poisoned_demonstrations} asked, but only {len(targets)} demonstrations "
                f"have the target label {cfg.target_label}")
        return sorted(random.Random(cfg.seed).sample(targets, cfg.poisoned_demonstrations))

    def poison_demonstrations(self, demonstrations: list[Demonstration]) -> list[Demonstration]:
        chosen = set(self.poisoned_indices(demonstrations))
        return [self.poison_one(d) if i in chosen else d for i, d in enumerate(demonstrations)]


ICL_ATTACKS: Registry[ICLAttack] = Registry("in-context attack", "poisonlab.attacks")
