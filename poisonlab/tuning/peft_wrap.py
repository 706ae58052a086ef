"""Wrapping a model with a peft tuner (used by the lora and ia3 strategies).

Not a strategy itself (no registration here)."""

from __future__ import annotations

from typing import Any

import torch

from poisonlab.models.architecture import has_task_head
from poisonlab.seeding import seeded


def peft_task_type(model: torch.nn.Module) -> Any:
    """peft's task type for a model: SEQ_CLS for a sequence classifier (which keeps its task head
    trainable), CAUSAL_LM for a language model (its vocabulary head stays frozen)."""
    from peft import TaskType
    return TaskType.SEQ_CLS if has_task_head(model) else TaskType.CAUSAL_LM


def peft_classifier(model: torch.nn.Module, peft_config: Any, seed: int) -> torch.nn.Module:
    """Wrap a model with peft as `peft_config.task_type` says (see `peft_task_type`)."""
    from peft import get_peft_model
    with seeded(seed):
        return get_peft_model(model, peft_config)
