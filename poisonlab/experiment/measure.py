"""CA and ASR of a model on a clean test set and its triggered twin: the one measurement every
job kind (runs, releases, victims, repairs) reports, with metrics from poisonlab.metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from poisonlab.data import Example
from poisonlab.metrics import attack_success_rate, clean_accuracy, per_class_accuracy
from poisonlab.runtime import Runtime
from poisonlab.training import predict_logits


@dataclass
class EvaluationSets:
    clean_test: list[Example]
    poisoned_test: list[Example]
    target_label: int | None


def evaluate(model: torch.nn.Module, tokenizer: Any, sets: EvaluationSets, num_labels: int, *,
             batch_size: int = 64, max_length: int = 128, runtime: Runtime | None = None,
             progress: bool = False) -> tuple[dict[str, Any], dict]:
    """CA on the clean test set, ASR on the poisoned one; returns metrics and raw predictions.
    With a multi-process `runtime` every process scores a shard and gets every prediction.
    `progress`: a bar per test set."""
    options = {"batch_size": batch_size, "max_length": max_length, "runtime": runtime,
               "progress": progress}
    clean_pred = predict_logits(model, tokenizer, [e.text for e in sets.clean_test],
                                description="evaluate clean", **options).argmax(-1)
    gold = [e.label for e in sets.clean_test]
    metrics: dict[str, Any] = {
        "clean_accuracy": clean_accuracy(clean_pred, gold),
        "per_class_accuracy": per_class_accuracy(clean_pred, gold, num_labels)}
    predictions = {"clean": clean_pred}
    if sets.target_label is not None and sets.poisoned_test:
        poisoned_pred = predict_logits(model, tokenizer, [e.text for e in sets.poisoned_test],
                                       description="evaluate triggered", **options).argmax(-1)
        metrics["attack_success_rate"] = attack_success_rate(
            poisoned_pred, [e.label for e in sets.poisoned_test], sets.target_label)
        predictions["poisoned"] = poisoned_pred
    else:
        metrics["attack_success_rate"] = None
    return metrics, predictions
