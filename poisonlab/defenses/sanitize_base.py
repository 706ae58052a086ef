"""The training-set defense contract: before the victim is tuned, remove the training examples
that look poisoned (BKI, CUBE), so the backdoor is never learnt.

A training-set defense holds what the victim's trainer holds: the (possibly poisoned) training
set and a fresh copy of the model about to be tuned. The defenses here judge examples through a
model that has already learnt the poisoned data (BKI scores words by their effect on it, CUBE
clusters its representations), so `sanitize` first tunes that copy on the whole set with the
defense's own `tuning` and `training` (a short preliminary run), then asks the defense which
examples to drop. A defense never reads `Example.poisoned`: the caller scores the removal against
it. Detectors (inference time) live in base.py, repairs (after training) in repair_base.py."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.data import Example
from poisonlab.models import LoadedModel
from poisonlab.registry import Registry, component_field
from poisonlab.runtime import Runtime
from poisonlab.training import TrainingConfig, predict_logits, train_classifier
from poisonlab.training.losses import pool_hidden
from poisonlab.tuning import TUNING_STRATEGIES


class SanitizerConfig(StrictConfig):
    """Options shared by every training-set defense: how the preliminary model is tuned."""

    tuning: component_field(TUNING_STRATEGIES) = Field(
        default_factory=lambda: TUNING_STRATEGIES.spec("full"),
        description="how the preliminary model is tuned on the poisoned set (the papers: full "
                    "fine-tuning)")
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(epochs=2),
        description="training of the preliminary model on the poisoned set")
    seed: int = Field(0, description="seeds the preliminary training and the defense itself")


@dataclass
class Sanitized:
    """What a training-set defense returns: the examples kept, the indices (into the training
    set it was given) of those removed, and what it found (keywords, clusters)."""

    kept: list[Example]
    removed: list[int]
    details: dict[str, Any] = field(default_factory=dict)


class TrainingSetDefense(ABC):
    """Base of every training-set defense. `conformance` holds config values for a tiny, fast
    run (tests/test_training_defenses.py); `applies_to` the model kinds it applies to."""

    name: ClassVar[str]
    config_class: ClassVar[type[SanitizerConfig]]
    conformance: ClassVar[dict] = {}
    applies_to: ClassVar[tuple[str, ...]] = ("encoder", "causal")

    def __init__(self, config: SanitizerConfig):
        self.config = config

    def sanitize(self, model: LoadedModel, train: Sequence[Example], *,
                 runtime: Runtime | None = None, progress: bool = False) -> Sanitized:
        """Tune `model` (a fresh copy of the weights the victim will tune; changed in place) on
        `train`, then drop what the defense finds suspicious."""
        c = self.config
        train = list(train)
        torch.manual_seed(c.seed)
        tuned = c.tuning.build().apply(model)
        if runtime is not None:
            tuned = runtime.place(tuned)
        history = train_classifier(tuned, model.tokenizer, train,
                                   c.training.model_copy(update={"seed": c.seed}),
                                   progress=progress, description=self.name, runtime=runtime)
        removed, details = self._suspicious(
            LoadedModel(tuned, model.tokenizer, model.kind, model.name), train, runtime)
        dropped = set(removed)
        return Sanitized([e for i, e in enumerate(train) if i not in dropped], sorted(dropped),
                         {"preliminary_history": history, **details})

    @abstractmethod
    def _suspicious(self, tuned: LoadedModel, train: list[Example],
                    runtime: Runtime | None) -> tuple[list[int], dict[str, Any]]:
        """Indices of the examples to remove, and what the defense found, judged with `tuned`
        (the preliminary model)."""

    def representations(self, tuned: LoadedModel, texts: Sequence[str],
                        runtime: Runtime | None) -> np.ndarray:
        """The last layer's hidden state where the task head reads it (first token of an
        encoder, last real token of a causal model), batched in length order."""
        pooling = "first" if tuned.kind == "encoder" else "last"
        t = self.config.training
        return predict_logits(_Pooled(tuned.model, pooling), tuned.tokenizer, list(texts),
                              batch_size=t.eval_batch_size, max_length=t.max_length,
                              runtime=runtime)


@dataclass
class _PooledOutput:
    logits: torch.Tensor  # what predict_logits collects: here, the pooled features


class _Pooled(torch.nn.Module):
    """A classifier seen as a feature extractor, so batched prediction serves for features."""

    def __init__(self, model: torch.nn.Module, pooling: str):
        super().__init__()
        self.model, self.pooling = model, pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> _PooledOutput:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=True).hidden_states[-1]
        return _PooledOutput(pool_hidden(hidden, attention_mask, self.pooling))


SANITIZERS: Registry[TrainingSetDefense] = Registry("training-set defense", "poisonlab.defenses")
