"""Batched generation from a causal LM: prompts sorted by length and left-padded into batches,
one prefill, then one token per step from the KV cache, on the model's device.

A hand-written loop rather than `model.generate`, so every tuning strategy's module generates the
same way (a prefix-tuned model is a plain module; peft and transformers models need nothing
more than `forward` with a `cache`). Greedy by default; with `temperature > 0` it samples (top-p),
from a generator seeded per batch, so a seed gives the same outputs whatever else ran before.
A row stops at a stop token (EOS) and is padded after it; the batch stops when every row has
stopped or after `max_new_tokens`."""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch
from pydantic import Field
from tqdm.auto import tqdm

from poisonlab.config import StrictConfig
from poisonlab.runtime import Runtime, model_device


class GenerationConfig(StrictConfig):
    max_new_tokens: int = Field(64, ge=1, description="tokens generated per prompt at most")
    batch_size: int = Field(32, ge=1, description="prompts per batch (sorted by length)")
    temperature: float = Field(0.0, ge=0, description="0: greedy; above 0: sample at this "
                                                      "temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass (when sampling)")
    seed: int = Field(0, description="seed of sampling")


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.as_tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
    return ids, mask


def _next_tokens(logits: torch.Tensor, config: GenerationConfig,
                 generator: torch.Generator | None) -> torch.Tensor:
    if config.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / config.temperature, dim=-1)
    if config.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # keep the smallest set of tokens whose mass reaches top_p (the top token always stays)
        outside = sorted_probs.cumsum(-1) - sorted_probs >= config.top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate_batch(model: torch.nn.Module, prompts: Sequence[Sequence[int]],
                   config: GenerationConfig, *, pad_id: int, stop_ids: Sequence[int],
                   generator: torch.Generator | None = None) -> list[list[int]]:
    """The new tokens of each prompt of one batch (stop token excluded)."""
    device = model_device(model)
    ids, mask = _left_pad(prompts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    stops = torch.as_tensor(list(stop_ids) or [-1], device=device)
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    produced: list[torch.Tensor] = []
    output = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                   logits_to_keep=1)
    for step in range(config.max_new_tokens):
        tokens = _next_tokens(output.logits[:, -1], config, generator)
        tokens = tokens.masked_fill(done, pad_id)
        produced.append(tokens)
        done |= torch.isin(tokens, stops)
        if bool(done.all()) or step == config.max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones(len(prompts), 1)], dim=1)
        positions = positions[:, -1:] + 1
        output = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions,
                       cache=output.cache, use_cache=True)
    generated = torch.stack(produced, dim=1).tolist()
    stop_set = set(stop_ids)
    out = []
    for row in generated:
        end = next((i for i, token in enumerate(row) if token in stop_set), len(row))
        out.append(row[:end])
    return out


def generate(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[Sequence[int]],
             config: GenerationConfig, *, stop_ids: Sequence[int],
             runtime: Runtime | None = None, progress: bool = False) -> list[str]:
    """Decoded responses to token-id prompts, in input order (batches of similar length).
    `progress`: a bar over the prompts, advanced batch by batch, gone when done."""
    if not prompts:
        return []
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    autocast = runtime.autocast if runtime is not None else contextlib.nullcontext
    results: list[list[int]] = [[] for _ in prompts]
    with tqdm(total=len(prompts), desc="generate", unit="prompt", disable=not progress,
              leave=False) as bar:
        for number, start in enumerate(range(0, len(order), config.batch_size)):
            index = order[start:start + config.batch_size]
            generator = None
            if config.temperature > 0:
                generator = torch.Generator(model_device(model)).manual_seed(config.seed + number)
            with autocast():
                new = generate_batch(model, [prompts[i] for i in index], config, pad_id=pad_id,
                                     stop_ids=stop_ids, generator=generator)
            for i, tokens in zip(index, new):
                results[i] = tokens
            bar.update(len(index))
    return tokenizer.batch_decode(results, skip_special_tokens=True)
