"""The tuning-strategy contract: how much of a model the victim (or defender) trains.

A strategy's constructor stores its typed config; `apply` freezes the base model and adds or
unfreezes what the strategy trains (the task head always trains). The returned module is called
as `model(input_ids=..., attention_mask=...)` and returns an object with `.logits` (and
`.hidden_states` when `output_hidden_states=True` is passed)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from poisonlab.config import StrictConfig
from poisonlab.models import LoadedModel
from poisonlab.registry import Registry


class TuningStrategy(ABC):
    """Base of every tuning strategy. Conformance battery (tests/test_conformance.py):
    `conformance` holds config values for a tiny, fast run; `applies_to` the model kinds
    ("encoder", "causal") it applies to; `generates` whether it also tunes a causal language
    model for generation (instruction tuning: experiment/generative.py)."""

    name: ClassVar[str]
    config_class: ClassVar[type[StrictConfig]]
    conformance: ClassVar[dict] = {}
    applies_to: ClassVar[tuple[str, ...]] = ("encoder", "causal")
    generates: ClassVar[bool] = False

    def __init__(self, config: StrictConfig):
        self.config = config

    @abstractmethod
    def apply(self, loaded: LoadedModel) -> torch.nn.Module:
        """Prepare `loaded.model` for training with this strategy and return the trainable module."""

    def trainable_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The tensors this strategy trained (what a run saves as its adapter)."""
        return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
                if p.requires_grad}

    def load_trainable_state(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        missing = set(state) - {n for n, _ in model.named_parameters()}
        if missing:
            raise ValueError(f"adapter tensors not in the model: {sorted(missing)[:5]}")
        model.load_state_dict(state, strict=False)


TUNING_STRATEGIES: Registry[TuningStrategy] = Registry("tuning strategy", "poisonlab.tuning")


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
