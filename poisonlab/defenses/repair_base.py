"""The repair-defense contract: take a suspect model and the defender's clean data, return a
repaired model that is evaluated like any victim (CA and ASR through the shared evaluation code).

Detection defenses (flag inputs at inference) live in `base.py`; this module is the other half of
the defenses package. A repair's typed config always carries the PEFT strategy it trains with
(`tuning`) and the training settings (`training`), so every repair of a study can share them.
`repair` wraps the suspect in place (peft injects adapter layers into the module it is given):
restore a fresh copy of the suspect for each repair. Models a repair may share with other repairs
(W2SDefense's teacher) go through the caller's `ModelCache`; without one nothing is shared."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import torch
from pydantic import Field, field_validator

from poisonlab.config import StrictConfig
from poisonlab.data import Example
from poisonlab.errors import ConfigError
from poisonlab.models import LoadedModel
from poisonlab.models.cache import ModelCache
from poisonlab.registry import Registry, component_field
from poisonlab.runtime import Runtime
from poisonlab.training import TrainingConfig
from poisonlab.tuning import TUNING_STRATEGIES, TuningStrategy


def tuning_field(default: dict[str, Any], description: str) -> Any:
    """The `tuning` field of a repair config (as a run's `tuning`), defaulting to `default`
    ({name: <strategy>, <field>: <value>})."""
    return Field(default_factory=lambda: TUNING_STRATEGIES.spec(default), description=description)


class RepairConfig(StrictConfig):
    """Options shared by every repair: the PEFT strategy the defender trains and how."""

    tuning: component_field(TUNING_STRATEGIES) = tuning_field(
        {"name": "lora", "r": 8, "alpha": 16},
        "PEFT strategy of the repair, {name: <strategy>, <field>: <value>}; without a name the "
        "fields change the default strategy (e.g. --set tuning.r=64)")
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(epochs=2, learning_rate=2e-4, max_length=64),
        description="training settings of the repair's fine-tuning")

    @field_validator("tuning", mode="before")
    @classmethod
    def _tuning(cls, value: Any) -> Any:
        """Fields given without a name change this repair's default strategy."""
        if value is None:
            raise ConfigError("tuning: a repair needs a PEFT strategy, e.g. "
                              "{name: lora, r: 8}; null is not allowed")
        if isinstance(value, dict) and "name" not in value:
            default = cls.model_fields["tuning"].get_default(call_default_factory=True)
            value = {**default.dump(), **value}
        return value


@dataclass
class RepairedModel:
    """What a repair returns: a model ready for inference and the tensors it changed."""

    model: torch.nn.Module
    tokenizer: Any
    trained_state: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)


class RepairDefense(ABC):
    """Base of every repair. Conformance battery (tests/test_conformance.py):
    `conformance` holds config values for a tiny, fast run; `applies_to` the model kinds
    ("encoder", "causal") it applies to."""

    name: ClassVar[str]
    config_class: ClassVar[type[RepairConfig]]
    conformance: ClassVar[dict] = {}
    applies_to: ClassVar[tuple[str, ...]] = ("encoder", "causal")

    def __init__(self, config: RepairConfig):
        self.config = config

    @abstractmethod
    def repair(self, suspect: LoadedModel, clean_train: Sequence[Example], *,
               progress: bool = False, cache: ModelCache | None = None,
               runtime: Runtime | None = None) -> RepairedModel:
        """Return the repaired model; `suspect.model` is modified in place. Models in `cache`
        are reused and new ones stored there; without it nothing is shared. Training runs
        through `runtime` (precision, accumulation, processes) when given."""

    def build_tuning(self) -> TuningStrategy:
        return self.config.tuning.build()

    def wrap(self, suspect: LoadedModel) -> tuple[TuningStrategy, torch.nn.Module]:
        """The suspect with this repair's PEFT strategy applied (base weights frozen)."""
        strategy = self.build_tuning()
        torch.manual_seed(self.config.training.seed)
        return strategy, strategy.apply(suspect)


REPAIRS: Registry[RepairDefense] = Registry("repair defense", "poisonlab.defenses")
