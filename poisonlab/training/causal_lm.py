"""Instruction tuning of a causal LM: the classifier's training loop (`train_batches`) with token
labels that cover the response only (training/prompt_format.py builds them)."""

from __future__ import annotations

from typing import Sequence

import torch

from poisonlab.data.instruction import InstructionExample
from poisonlab.errors import ConfigError
from poisonlab.runtime import Runtime
from poisonlab.training.prompt_format import IGNORE_INDEX, EncodingReport, PromptFormatter
from poisonlab.training.tracking import Tracking
from poisonlab.training.trainer import (EpochHook, TrainingConfig, _pad_id, collate,
                                        train_batches)


def response_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token cross-entropy averaged over the batch's response tokens (labels -100 elsewhere:
    prompt and padding). Logits are computed only at positions that predict a response token in
    some row (`logits_to_keep`): the vocabulary projection is most of a small model's cost."""
    targets = batch["labels"][:, 1:]
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   logits_to_keep=keep).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                             targets[:, keep].reshape(-1),
                                             ignore_index=IGNORE_INDEX)


def train_causal_lm(model: torch.nn.Module, formatter: PromptFormatter,
                    examples: Sequence[InstructionExample], config: TrainingConfig, *,
                    on_epoch_end: EpochHook | None = None, progress: bool = True,
                    description: str = "train", runtime: Runtime | None = None,
                    tracking: Tracking | None = None
                    ) -> tuple[list[dict[str, float]], EncodingReport]:
    """Tune `model` to answer each instruction with its output; returns the per-epoch logs and
    what fitting the examples into `config.max_length` tokens did (nothing is cut silently)."""
    encoded = formatter.encode_training(examples, config.max_length)
    if not encoded.input_ids:
        raise ConfigError(f"field 'training.max_length': {config.max_length} tokens hold no "
                          "training example's prompt; raise it")
    pad = _pad_id(formatter.tokenizer)

    def make_batch(index: list[int]) -> dict[str, torch.Tensor]:
        batch = collate([encoded.input_ids[i] for i in index], pad)
        labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
        for row, i in enumerate(index):
            labels[row, :len(encoded.labels[i])] = torch.as_tensor(encoded.labels[i])
        batch["labels"] = labels
        return batch

    history = train_batches(model, [len(x) for x in encoded.input_ids], make_batch, config,
                            loss_fn=response_loss, on_epoch_end=on_epoch_end, progress=progress,
                            description=description, runtime=runtime, tracking=tracking)
    return history, encoded.report
