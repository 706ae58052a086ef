"""Wrapping a model with a peft tuner (used by the lora and ia3 strategies).

Not a strategy itself (no registration here)."""

from __future__ import annotations

from typing import Any

import torch

from poisonlab.seeding import seeded


def peft_classifier(model: torch.nn.Module, peft_config: Any, seed: int) -> torch.nn.Module:
    """Wrap a model with peft: a sequence classifier as SEQ_CLS (which keeps the task head
    trainable), a causal language model as CAUSAL_LM (`peft_config.task_type` says which)."""
    from peft import get_peft_model
    with seeded(seed):
        return get_peft_model(model, peft_config)
