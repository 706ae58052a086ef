"""The training loop and batched prediction.

A small hand-written loop rather than the Hugging Face Trainer: it is as fast as a minimal PyTorch
loop (see bench/training_throughput.py), deterministic under a seed, and takes a pluggable loss
(`loss_fn(model, batch) -> loss`) so distillation and unlearning reuse it. Texts are tokenized once;
batches are padded dynamically; prediction sorts by length so padding is minimal."""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Sequence

import numpy as np
import torch
from pydantic import Field
from tqdm.auto import tqdm

from poisonlab.config import StrictConfig
from poisonlab.data.example import Example
from poisonlab.training.schedule import linear_warmup_decay

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
EpochHook = Callable[[int, float], dict[str, float] | None]


class TrainingConfig(StrictConfig):
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, le=1)
    max_length: int = Field(128, ge=8, description="tokens kept per text (longer ones truncated)")
    grad_clip: float | None = Field(1.0, gt=0)
    eval_batch_size: int = Field(64, ge=1)
    seed: int = 0


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated, unpadded (one fast-tokenizer call for the whole list)."""
    return tokenizer(list(texts), truncation=True, max_length=max_length,
                     add_special_tokens=True)["input_ids"]


def collate(ids: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, :len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, :len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def cross_entropy_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.nn.functional.cross_entropy(logits, batch["labels"])


def train_classifier(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Example],
                     config: TrainingConfig, *, loss_fn: LossFn = cross_entropy_loss,
                     on_epoch_end: EpochHook | None = None, progress: bool = True,
                     description: str = "train") -> list[dict[str, float]]:
    """Train the parameters of `model` that require grad; returns per-epoch logs."""
    if not examples:
        raise ValueError("no training examples")
    torch.manual_seed(config.seed)
    order_rng = random.Random(config.seed)
    ids = encode_texts(tokenizer, [e.text for e in examples], config.max_length)
    labels = torch.tensor([e.label for e in examples], dtype=torch.long)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = linear_warmup_decay(optimizer, int(config.warmup_ratio * total), total)
    pad = _pad_id(tokenizer)
    history = []
    bar = tqdm(total=total, desc=description, disable=not progress, leave=False)
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = list(range(len(examples)))
        order_rng.shuffle(order)
        running = 0.0
        for start in range(0, len(order), config.batch_size):
            index = order[start:start + config.batch_size]
            batch = collate([ids[i] for i in index], pad)
            batch["labels"] = labels[index]
            batch["index"] = torch.tensor(index)
            loss = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            running += loss.item()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
        log = {"epoch": epoch, "loss": running / steps_per_epoch}
        model.eval()
        if on_epoch_end is not None:
            log.update(on_epoch_end(epoch, log["loss"]) or {})
        history.append(log)
    bar.close()
    model.eval()
    return history


@torch.no_grad()
def predict_logits(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], *,
                   batch_size: int = 64, max_length: int = 128) -> np.ndarray:
    """Logits for every text, batched in length order (little padding), returned in input order."""
    if len(texts) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    model.eval()
    ids = encode_texts(tokenizer, texts, max_length)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    pad = _pad_id(tokenizer)
    out: list[np.ndarray | None] = [None] * len(ids)
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        logits = model(**collate([ids[i] for i in index], pad)).logits.float().cpu().numpy()
        for row, i in enumerate(index):
            out[i] = logits[row]
    return np.stack(out)  # type: ignore[arg-type]


def predict_labels(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str],
                   **kwargs: Any) -> np.ndarray:
    return predict_logits(model, tokenizer, texts, **kwargs).argmax(axis=-1)
